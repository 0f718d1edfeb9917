/**
 * Stock commands applied to a `.secnb` (issue 15), plugin `secsync-jupyter:stock-commands`.
 *
 * 1. `docmanager:open` of a `.secnb` as a notebook — a tab restored from a workspace (the
 *    notebook tracker restores every notebook panel with the stock factory name 'Notebook'),
 *    an entry of File → Open Recent, `/lab/tree/…`, a script — always uses our "Encrypted
 *    Notebook" factory (the default for the file type), whatever factory the caller named
 *    ('Notebook', 'default' or none). Every encrypted panel is then made by one factory, and
 *    the document is loaded through the encrypted provider, never requested from the server as
 *    a notebook (which answers "Unreadable Notebook": the file is a pointer). Other factories
 *    ("Open With → Editor") are left alone.
 *
 * 2. Stock "Duplicate" paths never copy a `.secnb` pointer file (issue 15 item 4): a copy of the
 * pointer is a second name for the same document (editing the copy edits the original).
 *
 * - `docmanager:duplicate` (File menu, tab context menu) calls `IDocumentManager.duplicate`;
 * - `filebrowser:duplicate` (its shortcut Accel+D in the file browser; the context-menu entry
 *   is hidden for `.secnb`) copies each selected file with `IDocumentManager.copy`.
 *
 * For a `.secnb`, both run our `secsync:duplicate` instead: a new document with its own id and
 * key (the user is told). Other files keep the stock behaviour. A `.secnb` this browser has
 * no key for is not duplicated at all (nothing could be copied): the user is told why.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { Contents } from '@jupyterlab/services';
import { ITranslator } from '@jupyterlab/translation';

import { TRANSLATION_DOMAIN } from './factories';
import { isPointerPath } from './pointer';
import { registry } from './registry';

const DUPLICATE = 'secsync:duplicate';
const FACTORY_NAME = 'Encrypted Notebook';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'secsync-jupyter:stock-commands',
  description:
    'A .secnb opens with the encrypted factory; Duplicate of a .secnb makes a new encrypted document.',
  autoStart: true,
  requires: [ITranslator, IDocumentManager],
  optional: [IFileBrowserFactory],
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator,
    docManager: IDocumentManager,
    browsers: IFileBrowserFactory | null
  ) => {
    const trans = translator.load(TRANSLATION_DOMAIN);
    const execute = app.commands.execute.bind(app.commands);

    /** Opens (or reveals) `path` and makes it the current widget. */
    async function current(path: string): Promise<IDocumentWidget | undefined> {
      const widget =
        docManager.findWidget(path, 'Notebook') ??
        docManager.findWidget(path, FACTORY_NAME) ??
        docManager.openOrReveal(path, FACTORY_NAME);
      if (!widget) {
        return undefined;
      }
      await widget.context.ready;
      app.shell.activateById(widget.id);
      for (let i = 0; i < 50 && app.shell.currentWidget !== widget; i++) {
        await new Promise(resolve => setTimeout(resolve, 20));
      }
      return app.shell.currentWidget === widget ? widget : undefined;
    }

    /** Duplicates the encrypted notebook of `path` (secsync:duplicate); the new file's model. */
    async function duplicateEncrypted(path: string): Promise<Contents.IModel | null> {
      const widget = await current(path);
      const session = registry.forModel(widget?.context.model.sharedModel as any);
      if (!widget || !session?.status.loaded) {
        Notification.warning(
          trans.__(
            '%1 was not duplicated: it is not open and decrypted in this browser (it needs its key). A copy of the file would only be a second name for the same notebook.',
            path
          ),
          { autoClose: 10000 }
        );
        return null;
      }
      const created = await execute(DUPLICATE, {});
      return typeof created === 'string'
        ? await app.serviceManager.contents.get(created, { content: false })
        : null;
    }

    // docmanager:duplicate (File menu, tab context menu) -> IDocumentManager.duplicate
    const stockDuplicate = docManager.duplicate.bind(docManager);
    (docManager as any).duplicate = (path: string) =>
      isPointerPath(path) ? duplicateEncrypted(path) : stockDuplicate(path);

    // filebrowser:duplicate (Accel+D in the file browser)
    (app.commands as any).execute = (id: string, args?: any) => {
      if (
        id === 'docmanager:open' &&
        args &&
        typeof args.path === 'string' &&
        isPointerPath(args.path) &&
        [undefined, null, '', 'default', 'Notebook'].includes(args.factory)
      ) {
        return execute(id, { ...args, factory: FACTORY_NAME });
      }
      if (id !== 'filebrowser:duplicate') {
        return execute(id, args);
      }
      const browser = browsers?.tracker.currentWidget;
      const items = browser ? Array.from(browser.selectedItems()) : [];
      if (!items.some(item => isPointerPath(item.path))) {
        return execute(id, args);
      }
      return (async () => {
        for (const item of items) {
          if (item.type === 'directory') {
            continue;
          }
          if (isPointerPath(item.path)) {
            await duplicateEncrypted(item.path);
          } else {
            await docManager.copy(item.path, browser!.model.path);
          }
        }
      })();
    };
  }
};

export default plugin;
