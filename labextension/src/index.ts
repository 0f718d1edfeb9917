/**
 * secsync-jupyter: end-to-end encrypted notebooks in JupyterLab.
 *
 * Plugins (the first three in factories.ts):
 * - `secsync-jupyter:document-provider-factory` (IDocumentProviderFactory): `.secnb` notebooks
 *   get the encrypted Secsync provider, every other document the stock plaintext provider.
 * - `secsync-jupyter:awareness-provider-factory` (IAwarenessProviderFactory): the global
 *   (server-wide) awareness, unchanged from the stock one (user presence only, no content).
 * - `secsync-jupyter:cell-executor` (INotebookCellExecutor): encrypted notebooks always run
 *   cells from the browser (outputs are written by the executing browser into the encrypted
 *   document); other notebooks keep the stock behaviour (server-side execution if enabled).
 * - `secsync-jupyter:plugin`: file type, commands, menus, status bar, share links, settings.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import type * as nbformat from '@jupyterlab/nbformat';
import {
  INotebookTracker,
  INotebookWidgetFactory,
  NotebookPanel,
  NotebookWidgetFactory
} from '@jupyterlab/notebook';
import { Contents } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import { Signal } from '@lumino/signaling';

import type { YNotebook } from '@jupyter/ydoc';

import { getSigningKeyPair, knownPointerPath, newDocumentKey, setDocumentKey } from './keystore';
import { addMemberCommands, decorateEncryptedPanel, MemberCommandIDs } from './membercommands';
import { displayNameOf } from './myidentity';
import { createLogDocument } from './secsync/membershipClient';
import {
  IParsedLink,
  describeLinkError,
  parseLink,
  relayContext,
  shareLinkFor,
  takeLinkFromLocation
} from './links';
import {
  POINTER_EXTENSION,
  POINTER_FILE_TYPE,
  POINTER_MIME_TYPE,
  formatPointer,
  isPointerPath,
  isValidRelayBase,
  parsePointer
} from './pointer';
import { showLockedState } from './locked';
import { keepRemoteExecutionsUnmodified } from './executed';
import { askForShareLink, confirmRelay, showShareLink, storeKeyFromLink } from './prompts';
import { LOCK_NOTEBOOK_SVG, encryptedNotebookIcon } from './icons';
import { serverKey } from './provider';
import { IEncryptedSession, registry } from './registry';
import { relayRefusal } from './relaypolicy';
import { showShare } from './sharedialog';
import { EncryptedStatusItem, showCollaborators } from './status';
import { renderEncryptedNotebooksUntrusted } from './trust';
import {
  TRANSLATION_DOMAIN,
  awarenessProviderFactoryPlugin,
  cellExecutorPlugin,
  documentProviderFactoryPlugin
} from './factories';
import backupPlugin from './backup';
import stockCommandsPlugin from './stockcommands';

const PLUGIN_ID = 'secsync-jupyter:plugin';
const FACTORY_NAME = 'Encrypted Notebook';

export namespace CommandIDs {
  export const newNotebook = 'secsync:new-notebook';
  export const encryptCopy = 'secsync:encrypt-copy';
  export const copyShareLink = 'secsync:copy-share-link';
  export const openShareLink = 'secsync:open-share-link';
  export const downloadDecrypted = 'secsync:download-decrypted';
  export const showCollaborators = 'secsync:show-collaborators';
  export const snapshotNow = 'secsync:snapshot-now';
  export const duplicate = 'secsync:duplicate';
}

export { encryptedNotebookIcon };


// ---------------------------------------------------------------------------------------
// Main plugin
// ---------------------------------------------------------------------------------------

/**
 * A widget factory for `.secnb` files that *is* the notebook widget factory (same widgets,
 * same tracker, toolbar and commands) under its own name and file type.
 */
function encryptedNotebookFactory(
  notebookFactory: NotebookWidgetFactory.IFactory
): DocumentRegistry.IWidgetFactory<NotebookPanel, any> {
  const overrides: Record<string, unknown> = {
    name: FACTORY_NAME,
    label: FACTORY_NAME,
    fileTypes: [POINTER_FILE_TYPE],
    defaultFor: [POINTER_FILE_TYPE],
    defaultRendered: []
  };
  return new Proxy(notebookFactory as any, {
    get(target, prop, _receiver) {
      if (typeof prop === 'string' && prop in overrides) {
        return overrides[prop];
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    }
  });
}

const mainPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'End-to-end encrypted notebooks (Secsync): commands, status, share links.',
  autoStart: true,
  requires: [ITranslator, IDocumentManager, INotebookWidgetFactory, INotebookTracker],
  optional: [
    ISettingRegistry,
    IStatusBar,
    ICommandPalette,
    IDefaultFileBrowser,
    ILabShell,
    ILauncher
  ],
  activate: async (
    app: JupyterFrontEnd,
    translator: ITranslator,
    docManager: IDocumentManager,
    notebookFactory: NotebookWidgetFactory.IFactory,
    tracker: INotebookTracker,
    settingRegistry: ISettingRegistry | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    fileBrowser: IDefaultFileBrowser | null,
    labShell: ILabShell | null,
    launcher: ILauncher | null
  ) => {
    const trans = translator.load(TRANSLATION_DOMAIN);
    const contents = app.serviceManager.contents;
    const serverSettings = app.serviceManager.serverSettings;

    // Trust is local for encrypted notebooks: every notebook panel of a .secnb (whichever
    // factory makes it, restored tabs included) renders untrusted (trust.ts). Installed
    // before anything can open a notebook.
    renderEncryptedNotebooksUntrusted(
      notebookFactory,
      context =>
        isPointerPath(context.localPath || context.path) ||
        registry.isEncrypted(context.model?.sharedModel as any)
    );

    // File type + widget factory for pointer files.
    app.docRegistry.addFileType({
      name: POINTER_FILE_TYPE,
      displayName: trans.__('Encrypted Notebook'),
      extensions: [POINTER_EXTENSION],
      mimeTypes: [POINTER_MIME_TYPE],
      // On disk it is a small text file (the server lists it as 'file'); the widget factory
      // opens it as a notebook model.
      contentType: 'file',
      fileFormat: 'text',
      icon: encryptedNotebookIcon
    });
    app.docRegistry.addWidgetFactory(encryptedNotebookFactory(notebookFactory));
    // The tab of an encrypted notebook shows the lock icon (the notebook extension sets the
    // notebook icon on every notebook panel just before this runs).
    notebookFactory.widgetCreated.connect((_, panel) => {
      if (isPointerPath(panel.context.localPath)) {
        panel.title.icon = encryptedNotebookIcon;
        panel.addClass('jp-secsync-EncryptedNotebookPanel');
        // no key in this browser: the panel asks for the share link (no modal); not a
        // member: it says so and offers the identity string
        showLockedState(panel, trans, app.serviceManager.user);
        // the Members button; read-only while this browser is a viewer
        decorateEncryptedPanel(app, panel, trans);
        // executions arriving through the relay do not mark cells as modified
        keepRemoteExecutionsUnmodified(panel.context.model);
      }
    });

    // Settings.
    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        const apply = () => {
          const relay = String(settings.get('relayUrl').composite ?? '').trim();
          registry.settings.relayUrl = relay && isValidRelayBase(relay) ? relay : '';
          if (relay && !registry.settings.relayUrl) {
            Notification.warning(
              trans.__('Ignoring relay URL %1: it must start with ws:// or wss://', relay),
              { autoClose: 8000 }
            );
          }
          registry.settings.relaySessionKey = String(
            settings.get('relaySessionKey').composite ?? ''
          );
          registry.settings.allowInsecureRelay = !!settings.get('allowInsecureRelay').composite;
          registry.settings.relayIsHubService = !!settings.get('relayIsHubService').composite;
          const refusal = relayRefusal(registry.settings.relayUrl || null, relayContext());
          if (refusal) {
            Notification.warning(trans.__('Relay URL refused: %1 (use wss://)', refusal), {
              autoClose: 10000
            });
          }
          registry.settings.snapshotEveryUpdates = Number(
            settings.get('snapshotEveryUpdates').composite ?? 300
          );
        };
        apply();
        settings.changed.connect(apply);
      } catch (e) {
        console.warn('secsync-jupyter: could not load settings', e);
      }
    }

    const currentDocWidget = (): IDocumentWidget | null => {
      const w = app.shell.currentWidget as any;
      if (w && w.context && w.context.model) {
        return w as IDocumentWidget;
      }
      return tracker.currentWidget;
    };
    const currentSession = (): IEncryptedSession | undefined => {
      const w = currentDocWidget();
      return registry.forModel(w?.context.model.sharedModel as any);
    };
    const requireSession = (): IEncryptedSession => {
      const s = currentSession();
      if (!s) {
        throw new Error(trans.__('The current document is not an encrypted notebook.'));
      }
      return s;
    };
    const cwd = () => fileBrowser?.model.path ?? '';

    /** The encrypted session of the `.secnb` selected in the file browser (opened, loaded). */
    async function sessionOfSelection(): Promise<IEncryptedSession> {
      const item = fileBrowser?.selectedItems().next();
      const path = item && !item.done ? item.value.path : '';
      if (!isPointerPath(path)) {
        throw new Error(trans.__('Select an encrypted notebook (.secnb) in the file browser.'));
      }
      const widget = await openPointer(path);
      await widget?.context.ready;
      const session = registry.forModel(widget?.context.model.sharedModel as any);
      if (!session || !session.status.loaded) {
        throw new Error(trans.__('%1 could not be opened.', path));
      }
      return session;
    }

    async function uniquePath(dir: string, stem: string): Promise<string> {
      const listing = await contents.get(dir, { content: true });
      const taken = new Set(
        ((listing.content as Contents.IModel[]) ?? []).map(item => item.name.toLowerCase())
      );
      for (let i = 0; i < 10000; i++) {
        const name = i === 0 ? `${stem}${POINTER_EXTENSION}` : `${stem} ${i}${POINTER_EXTENSION}`;
        if (!taken.has(name.toLowerCase())) {
          return dir ? PathExt.join(dir, name) : name;
        }
      }
      throw new Error('no free file name');
    }

    async function writePointer(path: string, docId: string, relay: string | null) {
      await contents.save(path, {
        type: 'file',
        format: 'text',
        content: formatPointer(docId, relay)
      });
    }

    /**
     * A new document: its own key and a membership log whose owner is this browser (the id
     * is bound to the log's root; the provider sends the root first).
     */
    async function newDocument(): Promise<string> {
      const user = app.serviceManager.user;
      await user.ready.catch(() => undefined);
      const { docId, rootEntry } = createLogDocument(await getSigningKeyPair(), displayNameOf(user));
      setDocumentKey(docId, newDocumentKey());
      registry.setPendingLogRoot(docId, rootEntry);
      return docId;
    }

    /** A new document (own id and key) with `content` as its first snapshot, at `path`. */
    async function createEncryptedNotebook(path: string, content: nbformat.INotebookContent) {
      const docId = await newDocument();
      registry.setPendingImport(docId, JSON.parse(JSON.stringify(content)));
      await writePointer(path, docId, registry.settings.relayUrl || null);
      return openPointer(path);
    }

    /** The decrypted notebook of a session, as a saved notebook (`trusted` is never saved). */
    function decryptedNotebook(s: IEncryptedSession): nbformat.INotebookContent {
      const nb = (s.sharedModel as unknown as YNotebook).toJSON() as nbformat.INotebookContent;
      for (const cell of nb.cells ?? []) {
        delete (cell.metadata as Record<string, unknown> | undefined)?.trusted;
      }
      return nb;
    }

    async function openPointer(path: string) {
      // A restored layout re-opens notebooks with the stock 'Notebook' factory (the notebook
      // tracker's restorer): reveal such a view instead of opening a second one.
      const existing = docManager.findWidget(path, 'Notebook') ?? docManager.findWidget(path, FACTORY_NAME);
      if (existing) {
        app.shell.activateById(existing.id);
        return existing;
      }
      return docManager.openOrReveal(path, FACTORY_NAME);
    }

    /** Find this server's pointer file for a document (remembered path, then the root folder). */
    async function findPointer(docId: string): Promise<string | null> {
      const candidates: string[] = [];
      const remembered = knownPointerPath(serverKey(serverSettings), docId);
      if (remembered) {
        candidates.push(remembered);
      }
      for (const dir of new Set(['', cwd()])) {
        try {
          const listing = await contents.get(dir, { content: true });
          for (const item of (listing.content as Contents.IModel[]) ?? []) {
            if (item.type !== 'directory' && isPointerPath(item.path)) {
              candidates.push(item.path);
            }
          }
        } catch {
          // unreadable folder: skip
        }
      }
      for (const path of candidates.slice(0, 200)) {
        try {
          const file = await contents.get(path, { type: 'file', format: 'text', content: true });
          if (parsePointer(String(file.content)).docId === docId) {
            return path;
          }
        } catch {
          // not a pointer we can read
        }
      }
      return null;
    }

    /**
     * Opens a share link. Links are untrusted input: the link's relay is used only for a
     * document that has no pointer file here yet, after the relay policy allows it (a
     * foreign relay is confirmed by its host, plain ws:// to another host refused); the
     * link's key never silently replaces a different stored key.
     */
    async function openLink(link: IParsedLink): Promise<void> {
      if (link.linkSecret && link.key.length !== 32) {
        return openInvitationLink(link, link.linkSecret);
      }
      if (link.key.length !== 32) {
        throw new Error(trans.__('The link carries no key (#key=…).'));
      }
      let path = await findPointer(link.docId);
      if (!path && !(await confirmRelay(link.relay, trans.__('This share link'), trans))) {
        Notification.info(trans.__('The shared notebook was not opened.'), { autoClose: 6000 });
        return;
      }
      await storeKeyFromLink(link.docId, link.key, trans);
      // an open tab of this document waiting for its key continues
      for (const session of registry.all()) {
        if (session.docId === link.docId) {
          session.retryStoredKey();
        }
      }
      if (!path) {
        path = await uniquePath(cwd(), `Shared encrypted notebook ${link.docId.slice(0, 6)}`);
        await writePointer(path, link.docId, link.relay);
        Notification.info(
          trans.__('Created %1 on this server for the shared encrypted notebook (no key in it).', path),
          { autoClose: 6000 }
        );
      }
      await openPointer(path);
    }

    /**
     * Opens an invitation link (issue 12, `#link=`): the notebook's session joins through it
     * before connecting (provider.ts → secsync/linkJoin.ts) and says in its panel when the
     * link is expired, revoked or damaged. Same relay rules as a share link.
     */
    async function openInvitationLink(link: IParsedLink, secret: Uint8Array): Promise<void> {
      let path = await findPointer(link.docId);
      if (!path && !(await confirmRelay(link.relay, trans.__('This invitation link'), trans))) {
        Notification.info(trans.__('The shared notebook was not opened.'), { autoClose: 6000 });
        return;
      }
      // an open tab of this document waiting for access joins through it; else its next
      // session does (provider.ts)
      let taken = false;
      for (const session of registry.all()) {
        if (session.docId === link.docId && !taken) {
          taken = await session.joinLink(secret);
        }
      }
      if (!taken) {
        registry.setPendingLink(link.docId, secret);
      }
      if (!path) {
        path = await uniquePath(cwd(), `Shared encrypted notebook ${link.docId.slice(0, 6)}`);
        await writePointer(path, link.docId, link.relay);
        Notification.info(
          trans.__('Created %1 on this server for the shared encrypted notebook (no key in it).', path),
          { autoClose: 6000 }
        );
      }
      await openPointer(path);
    }

    app.commands.addCommand(CommandIDs.newNotebook, {
      label: args => (args.isPalette ? trans.__('New Encrypted Notebook') : trans.__('Encrypted Notebook')),
      caption: trans.__('Create a notebook whose content is end-to-end encrypted in the browser'),
      icon: args => (args.isPalette ? undefined : encryptedNotebookIcon),
      execute: async args => {
        const dir = typeof args.cwd === 'string' ? args.cwd : cwd();
        const path = await uniquePath(dir, trans.__('Untitled Encrypted'));
        const docId = await newDocument();
        await writePointer(path, docId, registry.settings.relayUrl || null);
        const widget = await openPointer(path);
        if (widget) {
          // as for stock untitled files: the first save (Ctrl+S) asks for a name
          widget.isUntitled = true;
        }
        return widget;
      }
    });

    app.commands.addCommand(CommandIDs.encryptCopy, {
      label: trans.__('Encrypt a Copy of This Notebook'),
      caption: trans.__(
        'Create an encrypted copy (.secnb) in the browser; the original .ipynb is left untouched'
      ),
      isEnabled: args => {
        if (args.path || args.fromFileBrowser) {
          return true;
        }
        const w = currentDocWidget();
        return !!w && w instanceof NotebookPanel && !registry.isEncrypted(w.context.model.sharedModel as any);
      },
      execute: async args => {
        let sourcePath: string;
        let content: nbformat.INotebookContent;
        let requested = typeof args.path === 'string' ? args.path : '';
        if (!requested && args.fromFileBrowser && fileBrowser) {
          const item = fileBrowser.selectedItems().next();
          requested = item && !item.done ? item.value.path : '';
        }
        if (requested) {
          sourcePath = requested;
          const model = await contents.get(sourcePath, { type: 'notebook', content: true });
          content = model.content as nbformat.INotebookContent;
        } else {
          const w = currentDocWidget();
          if (!w || !(w instanceof NotebookPanel) || registry.isEncrypted(w.context.model.sharedModel as any)) {
            throw new Error(trans.__('Open a plaintext notebook first.'));
          }
          sourcePath = w.context.localPath;
          content = w.context.model.toJSON() as unknown as nbformat.INotebookContent;
        }
        const dir = PathExt.dirname(sourcePath);
        const stem = PathExt.basename(sourcePath, PathExt.extname(sourcePath));
        const path = await uniquePath(dir, stem);
        await createEncryptedNotebook(path, content);
        // The plaintext original stays on the server until someone deletes it: offer that
        // (never done without asking; the reminder says what deleting cannot reach).
        Notification.info(
          trans.__(
            'Encrypted copy %1 created. The original %2 is untouched and still stored in plaintext on the server.',
            path,
            sourcePath
          ),
          {
            autoClose: false,
            actions: [
              {
                label: trans.__('Delete the Original…'),
                caption: trans.__('Delete the plaintext %1 from the server', sourcePath),
                callback: () => void deletePlaintextOriginal(sourcePath)
              }
            ]
          }
        );
      }
    });

    async function deletePlaintextOriginal(sourcePath: string): Promise<void> {
      const body = document.createElement('div');
      for (const text of [
        trans.__(
          'Delete %1 from the server (open views of it close, unsaved changes discarded)? Its encrypted copy stays.',
          sourcePath
        ),
        trans.__(
          'Deleting removes the file, not every copy of its plaintext: server backups or file-system snapshots, the stock collaboration store (.jupyter_ystore.db) of a notebook opened collaboratively, and downloads may still keep it.'
        )
      ]) {
        const p = document.createElement('p');
        p.className = 'jp-secsync-Prompt-row';
        p.textContent = text;
        body.append(p);
      }
      const result = await showDialog({
        title: trans.__('Delete the plaintext original?'),
        body: new Widget({ node: body }),
        buttons: [
          Dialog.cancelButton({ label: trans.__('Keep It') }),
          Dialog.warnButton({ label: trans.__('Delete') })
        ]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        // its open views go without a save prompt (an open view would write it back on save)
        for (let i = 0; i < 100; i++) {
          const view = docManager.findWidget(sourcePath, null);
          if (!view) {
            break;
          }
          view.dispose();
        }
        await contents.delete(sourcePath);
        Notification.success(
          trans.__('Deleted %1. Remember that backups of the server may still hold it.', sourcePath),
          { autoClose: 8000 }
        );
      } catch (e) {
        Notification.error(
          trans.__('Could not delete %1: %2', sourcePath, (e as Error).message),
          { autoClose: 10000 }
        );
      }
    }

    // The stock "Duplicate" copies the pointer file: both files would name one document (editing
    // the copy edits the original). Ours makes a new document with its own key (the stock entry
    // is hidden for .secnb files).
    app.commands.addCommand(CommandIDs.duplicate, {
      label: trans.__('Duplicate as a New Encrypted Notebook'),
      caption: trans.__(
        'Copy the content into a new encrypted notebook with its own key (links of the original do not open it)'
      ),
      isEnabled: args => !!args.fromFileBrowser || !!currentSession()?.status.loaded,
      execute: async args => {
        const s = args.fromFileBrowser ? await sessionOfSelection() : requireSession();
        const stem = PathExt.basename(s.path, POINTER_EXTENSION);
        const path = await uniquePath(PathExt.dirname(s.path), trans.__('%1 copy', stem));
        await createEncryptedNotebook(path, decryptedNotebook(s));
        Notification.info(
          trans.__(
            '%1 is a new encrypted notebook with its own key: changes to it do not reach %2, and share links of %2 do not open it (share its own link).',
            path,
            s.path
          ),
          { autoClose: 12000 }
        );
        return path;
      }
    });

    // One way to share, wherever it is started (Encryption menu, the notebook's and the file
    // browser's context menus, the toolbar's Share, the status popup's Share…): a notebook
    // with a membership log opens the Share dialog (invitation links; a `#key=` link would
    // let nobody in and hand out the epoch-0 key, which a member who joined after a rotation
    // does not even hold); a notebook without a log copies its `#key=` link (as before).
    app.commands.addCommand(CommandIDs.copyShareLink, {
      label: trans.__('Copy Share Link of Encrypted Notebook'),
      caption: trans.__(
        'Notebooks with members: the Share dialog (invitation links). Older notebooks: copy a link that carries the key in its #fragment'
      ),
      isEnabled: args =>
        !!args.fromFileBrowser ||
        !!(typeof args.path === 'string'
          ? registry.all().find(s => s.path === args.path)
          : currentSession()
        )?.status.loaded,
      execute: async args => {
        const s =
          typeof args.path === 'string'
            ? registry.all().find(session => session.path === args.path)
            : args.fromFileBrowser
              ? await sessionOfSelection()
              : requireSession();
        if (!s) {
          throw new Error(trans.__('The current document is not an encrypted notebook.'));
        }
        if (s.membership || s.docId.startsWith('m1_')) {
          await showShare(
            s,
            trans,
            trans.__(
              'This notebook has members: a link to it gives access only as an invitation link, made below (admins), or once an admin adds the person in Members.'
            )
          );
          return null;
        }
        const link = shareLinkFor(s.docId, s.documentKey(), s.relayBase);
        await showShareLink(link, false, trans);
        return link;
      }
    });

    app.commands.addCommand(CommandIDs.openShareLink, {
      label: trans.__('Open Encrypted Notebook Share Link…'),
      caption: trans.__('Open an encrypted notebook from its share link'),
      execute: async args => {
        const check = (text: string): string | null => {
          try {
            const parsed = parseLink(text);
            return parsed.key.length === 32 || parsed.linkSecret
              ? null
              : trans.__('The link has no key (the part from #key= on is missing).');
          } catch (e) {
            return describeLinkError(e, trans);
          }
        };
        let text = typeof args.link === 'string' ? args.link : '';
        if (!text) {
          text = (await askForShareLink(trans, check)) ?? '';
          if (!text) {
            return;
          }
        }
        const problem = check(text);
        try {
          if (problem) {
            throw new Error(problem);
          }
          await openLink(parseLink(text));
        } catch (e) {
          Notification.error(
            trans.__('Could not open the shared notebook: %1', (e as Error).message),
            { autoClose: 10000 }
          );
        }
      }
    });

    app.commands.addCommand(CommandIDs.downloadDecrypted, {
      label: trans.__('Download Decrypted .ipynb'),
      caption: trans.__('Decrypt in this browser and download as a plain .ipynb file'),
      isEnabled: args => !!args.fromFileBrowser || !!currentSession()?.status.loaded,
      execute: async args => {
        const s = args.fromFileBrowser ? await sessionOfSelection() : requireSession();
        const name = PathExt.basename(s.path, POINTER_EXTENSION) + '.ipynb';
        const nb = decryptedNotebook(s);
        const blob = new Blob([JSON.stringify(nb, null, 1) + '\n'], {
          type: 'application/x-ipynb+json'
        });
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = name;
        document.body.appendChild(a);
        a.click();
        a.remove();
        window.setTimeout(() => URL.revokeObjectURL(a.href), 10000);
        Notification.success(
          trans.__(
            'Downloaded %1, decrypted in this browser (nothing was sent to the server). Keep it safe: it is not encrypted.',
            name
          ),
          { autoClose: 8000 }
        );
      }
    });

    app.commands.addCommand(CommandIDs.showCollaborators, {
      label: trans.__('Show Collaborators of Encrypted Notebook'),
      isEnabled: () => !!currentSession(),
      execute: () => showCollaborators(requireSession(), trans, statusActions)
    });

    app.commands.addCommand(CommandIDs.snapshotNow, {
      label: trans.__('Save Encrypted Snapshot Now'),
      caption: trans.__('Encrypt and store the whole notebook as a new snapshot (also Ctrl+S)'),
      isEnabled: () => !!currentSession(),
      execute: async () => {
        await requireSession().snapshotNow();
        Notification.success(trans.__('Encrypted snapshot saved'), { autoClose: 2000 });
      }
    });

    const statusActions = addMemberCommands(app, tracker, trans, currentSession);

    if (palette) {
      const category = trans.__('Encrypted Notebooks');
      for (const command of [
        CommandIDs.newNotebook,
        CommandIDs.encryptCopy,
        CommandIDs.copyShareLink,
        CommandIDs.openShareLink,
        CommandIDs.downloadDecrypted,
        CommandIDs.duplicate,
        CommandIDs.showCollaborators,
        CommandIDs.snapshotNow,
        MemberCommandIDs.members,
        MemberCommandIDs.share,
        MemberCommandIDs.myIdentity
      ]) {
        palette.addItem({ command, category, args: { isPalette: true } });
      }
    }

    if (launcher) {
      // (cards of the Notebook category show `kernelIconUrl` or the label's first letter)
      launcher.add({
        command: CommandIDs.newNotebook,
        category: 'Notebook',
        rank: 100,
        kernelIconUrl: 'data:image/svg+xml,' + encodeURIComponent(LOCK_NOTEBOOK_SVG)
      });
    }

    // Status bar.
    if (statusBar) {
      const item = new EncryptedStatusItem(trans, statusActions);
      const activeChanged = new Signal<any, void>(item);
      const refresh = () => {
        item.session = currentSession() ?? null;
        activeChanged.emit();
      };
      statusBar.registerStatusItem('secsync-jupyter:status', {
        item,
        align: 'left',
        rank: 3,
        isActive: () => !!item.session,
        activeStateChanged: activeChanged
      });
      app.shell.currentChanged?.connect(refresh);
      labShell?.activeChanged.connect(refresh);
      registry.sessionsChanged.connect(refresh);
    }

    // The file browser's context menu on a .secnb: the stock "Download", "Copy Download
    // Link" and "Copy Shareable Link" would hand out the pointer file (no key, no content);
    // they are hidden there (ours, from the schema, do the right thing).
    document.addEventListener(
      'contextmenu',
      event => {
        const item = (event.target as Element | null)?.closest?.('.jp-DirListing-item');
        document.body.classList.toggle(
          'jp-secsync-mod-pointerContextMenu',
          item?.getAttribute('data-file-type') === POINTER_FILE_TYPE
        );
      },
      true
    );

    // Share links opened in the browser (redirected here by <base_url>secsync/open/<docId>).
    // A link that does not parse (a damaged `#link=` / `#key=`) is explained in a dialog, in
    // words, once JupyterLab is up; nothing is created for it (no .secnb file).
    const cannotOpen = (text: string) =>
      void app.restored.then(() =>
        showDialog({
          title: trans.__('This link cannot be opened'),
          body: text,
          buttons: [Dialog.okButton({ label: trans.__('Close') })]
        })
      );
    let fromLocation: IParsedLink | null = null;
    try {
      fromLocation = takeLinkFromLocation();
    } catch (e) {
      console.warn('secsync-jupyter: the link in the address bar does not parse', e);
      cannotOpen(describeLinkError(e, trans));
    }
    if (fromLocation) {
      const link = fromLocation;
      void app.restored.then(() =>
        openLink(link).catch(e => {
          console.warn('secsync-jupyter: the link in the address bar was not opened', e);
          cannotOpen(trans.__('Could not open the shared notebook: %1', (e as Error).message));
        })
      );
    }
  }
};

const plugins: JupyterFrontEndPlugin<any>[] = [
  documentProviderFactoryPlugin,
  awarenessProviderFactoryPlugin,
  cellExecutorPlugin,
  mainPlugin,
  backupPlugin,
  stockCommandsPlugin
];

export default plugins;
