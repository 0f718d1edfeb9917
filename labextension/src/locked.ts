/**
 * The locked state of an encrypted notebook panel: this browser has no key for the document
 * (typically a tab restored from the shared default workspace). Instead of a modal prompt,
 * the panel itself says what is missing and takes the share link; the tab can be closed.
 */
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';

import { encryptedNotebookIcon } from './icons';
import { IEncryptedSession, registry } from './registry';

class LockedView {
  constructor(
    private _panel: NotebookPanel,
    private _trans: TranslationBundle
  ) {
    registry.sessionsChanged.connect(this._findSession, this);
    _panel.disposed.connect(this._dispose, this);
    this._findSession();
  }

  private _findSession(): void {
    const session = registry.forModel(this._panel.context.model.sharedModel as any) ?? null;
    if (session === this._session) {
      return;
    }
    this._session?.statusChanged.disconnect(this._render, this);
    this._session = session;
    session?.statusChanged.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const locked = !!this._session?.status.locked;
    if (locked && !this._node) {
      this._node = this._build();
      this._panel.node.appendChild(this._node);
      this._node.querySelector('input')?.focus();
    } else if (!locked && this._node) {
      this._node.remove();
      this._node = null;
    }
  }

  private _build(): HTMLElement {
    const trans = this._trans;
    const node = document.createElement('div');
    node.className = 'jp-secsync-Locked';
    const box = document.createElement('div');
    box.className = 'jp-secsync-Locked-box';
    const title = document.createElement('h2');
    title.append(
      encryptedNotebookIcon.element({ tag: 'span', height: '24px', width: '24px' }),
      document.createTextNode(
        ' ' + trans.__('This encrypted notebook needs its share link or membership')
      )
    );
    const text = document.createElement('p');
    text.textContent = trans.__(
      'This browser has no key for %1. Paste the share link you received from someone working on it (the key stays in this browser), or close this tab.',
      this._panel.context.localPath
    );
    const input = document.createElement('input');
    input.className = 'jp-mod-styled jp-secsync-LinkInput';
    input.placeholder = 'https://…/secsync/open/…#key=…';
    input.spellcheck = false;
    const error = document.createElement('p');
    error.className = 'jp-secsync-Locked-error';
    const unlock = document.createElement('button');
    unlock.className = 'jp-Dialog-button jp-mod-accept jp-mod-styled jp-secsync-Locked-unlock';
    unlock.textContent = trans.__('Open');
    const close = document.createElement('button');
    close.className = 'jp-Dialog-button jp-mod-reject jp-mod-styled jp-secsync-Locked-close';
    close.textContent = trans.__('Close this tab');
    const submit = async () => {
      error.textContent = '';
      try {
        await this._session?.unlock(input.value);
      } catch (e) {
        error.textContent = (e as Error).message;
      }
    };
    unlock.addEventListener('click', () => void submit());
    input.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        event.preventDefault();
        void submit();
      }
    });
    close.addEventListener('click', () => this._panel.close());
    const buttons = document.createElement('div');
    buttons.className = 'jp-secsync-Locked-buttons';
    buttons.append(close, unlock);
    box.append(title, text, input, error, buttons);
    node.appendChild(box);
    return node;
  }

  private _dispose(): void {
    registry.sessionsChanged.disconnect(this._findSession, this);
    this._session?.statusChanged.disconnect(this._render, this);
    this._session = null;
  }

  private _session: IEncryptedSession | null = null;
  private _node: HTMLElement | null = null;
}

/** Shows the locked state inside `panel` whenever its encrypted session has no key. */
export function showLockedState(panel: NotebookPanel, trans: TranslationBundle): void {
  new LockedView(panel, trans);
}
