/**
 * The locked states of an encrypted notebook panel. Instead of a modal prompt, the panel
 * itself says what is missing; the tab can be closed.
 *
 * - No key: this browser has no key for the document (typically a tab restored from the
 *   shared default workspace): a field for the share link.
 * - Not a member (issue 11): the document has a membership log and the relay refused this
 *   browser's reader proof (722), or this browser was removed (725): "send your identity to
 *   its owner", a button that copies the identity string, and *Try again* (once added).
 */
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { User } from '@jupyterlab/services';
import type { TranslationBundle } from '@jupyterlab/translation';

import { encryptedNotebookIcon } from './icons';
import { copyText, myIdentity } from './myidentity';
import { IEncryptedSession, registry } from './registry';

type LockKind = 'key' | 'not-member' | 'removed' | 'link' | null;

function lockOf(session: IEncryptedSession | null): LockKind {
  if (!session) {
    return null;
  }
  if (session.status.linkError) {
    return 'link';
  }
  if (session.status.locked) {
    return 'key';
  }
  return session.status.access === 'member' ? null : session.status.access;
}

class LockedView {
  constructor(
    private _panel: NotebookPanel,
    private _trans: TranslationBundle,
    private _user: User.IManager | null
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
    const kind = lockOf(this._session);
    if (kind === this._kind) {
      return;
    }
    this._kind = kind;
    this._node?.remove();
    this._node = null;
    if (kind === 'key') {
      this._node = this._build();
    } else if (kind === 'link') {
      this._node = this._buildLinkError();
    } else if (kind) {
      this._node = this._buildNotMember(kind);
    }
    if (this._node) {
      this._panel.node.appendChild(this._node);
      (this._node.querySelector('input, button') as HTMLElement | null)?.focus();
    }
  }

  private _buildNotMember(kind: 'not-member' | 'removed'): HTMLElement {
    const trans = this._trans;
    const node = document.createElement('div');
    node.className = 'jp-secsync-Locked jp-secsync-NotMember';
    node.dataset.kind = kind;
    const box = document.createElement('div');
    box.className = 'jp-secsync-Locked-box';
    const title = document.createElement('h2');
    title.append(
      encryptedNotebookIcon.element({ tag: 'span', height: '24px', width: '24px' }),
      document.createTextNode(
        ' ' +
          (kind === 'removed'
            ? trans.__('You were removed from this notebook')
            : trans.__('You are not a member of this notebook'))
      )
    );
    const text = document.createElement('p');
    text.className = 'jp-secsync-NotMember-text';
    text.textContent =
      kind === 'removed'
        ? trans.__(
            'An owner or admin of %1 removed you: this browser receives nothing more of it. To get access again, send your identity to its owner.',
            this._panel.context.localPath
          )
        : trans.__(
            'You are not a member of this notebook: send your identity to its owner. Only members can open %1, even with its share link; an owner or admin adds you in its Members dialog, then choose Try again.',
            this._panel.context.localPath
          );
    const identity = document.createElement('input');
    identity.className = 'jp-mod-styled jp-secsync-NotMember-identity';
    identity.readOnly = true;
    identity.hidden = true;
    identity.addEventListener('focus', () => identity.select());
    const info = document.createElement('p');
    info.className = 'jp-secsync-NotMember-info';
    const copy = document.createElement('button');
    copy.className = 'jp-Dialog-button jp-mod-accept jp-mod-styled jp-secsync-NotMember-copy';
    copy.textContent = trans.__('Copy my identity');
    copy.addEventListener('click', async () => {
      const me = await myIdentity(this._user);
      copyText(me.text);
      identity.value = me.text;
      identity.hidden = false;
      info.textContent = trans.__(
        'Copied. Your fingerprint is %1: tell it to the owner by another channel so they can check it.',
        me.fingerprint
      );
    });
    const retry = document.createElement('button');
    retry.className = 'jp-Dialog-button jp-mod-styled jp-secsync-NotMember-retry';
    retry.textContent = trans.__('Try again');
    retry.addEventListener('click', () => this._session?.retryAccess());
    const close = document.createElement('button');
    close.className = 'jp-Dialog-button jp-mod-reject jp-mod-styled jp-secsync-Locked-close';
    close.textContent = trans.__('Close this tab');
    close.addEventListener('click', () => this._panel.close());
    const buttons = document.createElement('div');
    buttons.className = 'jp-secsync-Locked-buttons';
    buttons.append(close, retry, copy);
    box.append(title, text, identity, info, buttons);
    node.appendChild(box);
    return node;
  }

  /** Joining through an invitation link failed (issue 12): why, in words. */
  private _buildLinkError(): HTMLElement {
    const trans = this._trans;
    const node = document.createElement('div');
    node.className = 'jp-secsync-Locked jp-secsync-LinkError';
    const box = document.createElement('div');
    box.className = 'jp-secsync-Locked-box';
    const title = document.createElement('h2');
    title.append(
      encryptedNotebookIcon.element({ tag: 'span', height: '24px', width: '24px' }),
      document.createTextNode(' ' + trans.__('This invitation link cannot be used'))
    );
    const text = document.createElement('p');
    text.className = 'jp-secsync-LinkError-text';
    text.textContent = this._session?.status.linkError ?? '';
    const close = document.createElement('button');
    close.className = 'jp-Dialog-button jp-mod-reject jp-mod-styled jp-secsync-Locked-close';
    close.textContent = trans.__('Close this tab');
    close.addEventListener('click', () => this._panel.close());
    const buttons = document.createElement('div');
    buttons.className = 'jp-secsync-Locked-buttons';
    buttons.append(close);
    box.append(title, text, buttons);
    node.appendChild(box);
    return node;
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
  private _kind: LockKind = null;
}

/**
 * Shows the locked state inside `panel` whenever its encrypted session has no key, or this
 * browser is not (any more) a member of its document.
 */
export function showLockedState(
  panel: NotebookPanel,
  trans: TranslationBundle,
  user: User.IManager | null = null
): void {
  new LockedView(panel, trans, user);
}
