/**
 * A viewer's encrypted notebook is read-only (issue 11), live: the sync client sends no local
 * change while this browser is a viewer (it says so in `status.readOnly`), and the panel
 * makes no change to send —
 *
 * - every cell editor is read-only (without writing `editable: false` into the shared cells:
 *   the cells' `syncEditable` / `syncCollapse` are off while read-only);
 * - commands that would change the notebook (insert, delete, move, paste, run, clear outputs,
 *   change kernel, save = snapshot, …) are disabled for it, from menus, toolbar, palette and
 *   shortcuts alike (CommandRegistry.isEnabled / execute), and the cell executor runs nothing
 *   (factories.ts); cells cannot be dropped into it;
 * - no kernel is started for it (none is needed to read);
 * - the toolbar says "Viewer — read only".
 * A member promoted to editor gets the editable notebook back at once.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext, Notification } from '@jupyterlab/apputils';
import type { Cell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IEncryptedSession, registry } from './registry';

const READ_ONLY_CLASS = 'jp-secsync-mod-readOnly';

/** True when the session's panel must be read-only (a viewer of a document with a log). */
export function isReadOnly(session: IEncryptedSession | null | undefined): boolean {
  return !!session && session.status.readOnly && session.status.access === 'member';
}

/** Notebook commands that only read or move the view (allowed for viewers). */
const VIEW_COMMANDS = new Set([
  'notebook:move-cursor-up',
  'notebook:move-cursor-down',
  'notebook:move-cursor-heading-above-or-collapse',
  'notebook:move-cursor-heading-below-or-expand',
  'notebook:extend-marked-cells-above',
  'notebook:extend-marked-cells-below',
  'notebook:extend-marked-cells-top',
  'notebook:extend-marked-cells-bottom',
  'notebook:select-all',
  'notebook:deselect-all',
  'notebook:enter-command-mode',
  'notebook:enter-edit-mode',
  'notebook:copy-cell',
  'notebook:copy-to-clipboard',
  'notebook:toggle-all-cell-line-numbers',
  'notebook:interrupt-kernel',
  'notebook:create-console',
  'notebook:create-new',
  'notebook:create-output-view',
  'notebook:toggle-autoclosing-brackets',
  'notebook:show-all-cell-code',
  'notebook:toggle-virtual-scrollbar'
]);

/** Command families that change the current notebook. */
const WRITE_PREFIXES = ['notebook:', 'runmenu:', 'editmenu:', 'cell-toolbar:', 'toc:run'];
const WRITE_COMMANDS = new Set([
  'docmanager:save',
  'docmanager:save-all',
  'secsync:snapshot-now',
  'kernelmenu:restart-and-clear',
  'completer:invoke-notebook',
  'completer:select-notebook',
  'tooltip:launch-notebook'
]);

function changesNotebook(id: string): boolean {
  if (WRITE_COMMANDS.has(id)) {
    return true;
  }
  if (VIEW_COMMANDS.has(id)) {
    return false;
  }
  return WRITE_PREFIXES.some(prefix => id.startsWith(prefix));
}

/**
 * Disables the commands that change the current notebook while it is read-only (from every
 * place a command can start: menus, toolbar, palette, shortcuts).
 */
export function installReadOnlyGuard(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  trans: TranslationBundle
): void {
  const commands = app.commands;
  const readOnlyTarget = (id: string): boolean => {
    if (!changesNotebook(id)) {
      return false;
    }
    // notebook commands act on the notebook tracker's current panel; menu commands (Run,
    // Edit menus), save and snapshot on the shell's current widget
    const onTracker = ['notebook:', 'cell-toolbar:', 'toc:', 'completer:', 'tooltip:'].some(p =>
      id.startsWith(p)
    );
    const notebook = onTracker ? tracker.currentWidget : app.shell.currentWidget;
    const model = (notebook as NotebookPanel | null)?.context?.model?.sharedModel;
    return isReadOnly(registry.forModel(model as any));
  };
  const isEnabled = commands.isEnabled.bind(commands);
  commands.isEnabled = (id, args) => !readOnlyTarget(id) && isEnabled(id, args);
  const execute = commands.execute.bind(commands);
  let told = 0;
  commands.execute = (id, args) => {
    if (readOnlyTarget(id)) {
      const now = Date.now();
      if (now - told > 3000) {
        told = now;
        Notification.info(
          trans.__('Viewer — read only: you can read this notebook, not change or run it.'),
          { autoClose: 4000 }
        );
      }
      return Promise.resolve(undefined);
    }
    return execute(id, args);
  };
}

/** The cells' editable state while read-only, without touching the shared cell metadata. */
function setCellReadOnly(cell: Cell, readOnly: boolean): void {
  const c = cell as Cell & { __secsyncReadOnly?: boolean };
  if (readOnly) {
    if (!c.__secsyncReadOnly) {
      c.__secsyncReadOnly = true;
      cell.syncEditable = false;
      cell.syncCollapse = false;
    }
    cell.readOnly = true;
  } else if (c.__secsyncReadOnly) {
    c.__secsyncReadOnly = false;
    cell.readOnly = cell.model.sharedModel.getMetadata('editable') === false;
    // (turning the sync back on loads the shared state; it matches, nothing is written)
    cell.syncEditable = true;
    cell.syncCollapse = true;
  }
}

class ReadOnlyView {
  constructor(
    private _panel: NotebookPanel,
    private _trans: TranslationBundle
  ) {
    registry.sessionsChanged.connect(this._findSession, this);
    _panel.disposed.connect(this._dispose, this);
    _panel.content.modelContentChanged.connect(this._apply, this);
    _panel.node.addEventListener('lm-dragover', this._onDrag, true);
    _panel.node.addEventListener('lm-drop', this._onDrag, true);
    this._findSession();
  }

  private _onDrag = (event: Event): void => {
    if (this._readOnly) {
      event.preventDefault();
      event.stopPropagation();
      (event as Event & { dropAction?: string }).dropAction = 'none';
    }
  };

  private _findSession(): void {
    const session = registry.forModel(this._panel.context.model.sharedModel as any) ?? null;
    if (session === this._session) {
      return;
    }
    this._session?.statusChanged.disconnect(this._apply, this);
    this._session = session;
    session?.statusChanged.connect(this._apply, this);
    this._apply();
  }

  private _apply(): void {
    const readOnly = isReadOnly(this._session);
    const changed = readOnly !== this._readOnly;
    this._readOnly = readOnly;
    if (readOnly || changed) {
      for (const cell of this._panel.content.widgets) {
        setCellReadOnly(cell, readOnly);
      }
    }
    if (!changed) {
      return;
    }
    this._panel.toggleClass(READ_ONLY_CLASS, readOnly);
    this._panel.context.model.readOnly = readOnly;
    // a viewer starts no kernel (it runs nothing; no kernel prompt, no kernel metadata
    // written); a running kernel is left alone. Promoted: the preference is restored (the
    // kernel is started from the kernel menu or the toolbar).
    const sessionContext = this._panel.sessionContext;
    if (readOnly) {
      this._kernelPreference = sessionContext.kernelPreference;
      sessionContext.kernelPreference = {
        ...this._kernelPreference,
        shouldStart: false,
        canStart: false
      };
    } else if (this._kernelPreference) {
      sessionContext.kernelPreference = this._kernelPreference;
      this._kernelPreference = null;
    }
    if (readOnly) {
      this._panel.content.mode = 'command';
      if (!this._badge) {
        const node = document.createElement('div');
        node.className = 'jp-secsync-ReadOnlyBadge';
        node.textContent = this._trans.__('Viewer — read only');
        node.title = this._trans.__(
          'You are a viewer of this encrypted notebook: you can read it, not change or run it. An owner or admin can make you an editor.'
        );
        this._badge = new Widget({ node });
        this._panel.toolbar.insertItem(0, 'secsyncReadOnly', this._badge);
      }
    } else if (this._badge) {
      this._badge.dispose();
      this._badge = null;
    }
  }

  private _dispose(): void {
    registry.sessionsChanged.disconnect(this._findSession, this);
    this._session?.statusChanged.disconnect(this._apply, this);
    this._session = null;
  }

  private _session: IEncryptedSession | null = null;
  private _readOnly = false;
  private _badge: Widget | null = null;
  private _kernelPreference: ISessionContext.IKernelPreference | null = null;
}

/** Makes `panel` read-only whenever this browser is a viewer of its document (live). */
export function showReadOnlyState(panel: NotebookPanel, trans: TranslationBundle): void {
  new ReadOnlyView(panel, trans);
}
