/**
 * What the Members dialog (members.ts) and the Share dialog (sharedialog.ts) share: a body
 * that re-renders whenever the session's membership changes, runs one admin action at a time
 * (busy while it runs, its error in words at a place of the dialog, a status line when done),
 * and a dialog with a single Close button that disposes the body when it closes.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IEncryptedSession } from './registry';

/** A new element with an optional class name and text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The number of a `SECSYNC_ERROR_<n>` code of an error (null: none). */
export function codeOf(error: unknown): number | null {
  const code = (error as { code?: unknown })?.code;
  const m = typeof code === 'string' ? /^SECSYNC_ERROR_(\d+)$/.exec(code) : null;
  return m ? Number(m[1]) : null;
}

/**
 * The body of a membership dialog. A subclass renders itself in `_render` (called whenever
 * the membership changes; its constructor calls it once its own fields are set) and says in
 * `_describe` what the user is told about a refused action. `P` names the places of the
 * dialog where an action's error is shown.
 */
export abstract class MembershipDialogBody<P extends string> extends Widget {
  constructor(
    protected _session: IEncryptedSession,
    protected _trans: TranslationBundle,
    className: string
  ) {
    super();
    this.addClass(className);
    _session.membershipChanged.connect(this._render, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._session.membershipChanged.disconnect(this._render, this);
    super.dispose();
  }

  protected abstract _render(): void;

  /** The words for a refused action (no codes). */
  protected abstract _describe(error: unknown): string;

  /**
   * Runs an admin action: busy meanwhile (re-rendered at once with `renderBusy`, so that
   * buttons can show it), then `done` as the status, or the error in words at `place`.
   */
  protected async _run(
    action: () => Promise<void>,
    place: P,
    done: string,
    renderBusy = false
  ): Promise<void> {
    this._error = null;
    this._busy = true;
    this.node.classList.add('jp-mod-busy');
    if (renderBusy) {
      this._render();
    }
    try {
      await action();
      this._status = done;
    } catch (e) {
      console.warn('secsync-jupyter: action failed', e);
      this._status = '';
      this._error = { place, text: this._describe(e) };
    } finally {
      this._busy = false;
      this.node.classList.remove('jp-mod-busy');
    }
    this._render();
  }

  protected _busy = false;
  protected _status = '';
  protected _error: { place: P; text: string } | null = null;
}

/** Shows `body` in a dialog titled `title` with a Close button; disposes it when closed. */
export async function showBodyDialog(
  title: string,
  body: Widget,
  trans: TranslationBundle
): Promise<void> {
  try {
    await showDialog({
      title,
      body,
      buttons: [Dialog.okButton({ label: trans.__('Close') })]
    });
  } finally {
    body.dispose();
  }
}
