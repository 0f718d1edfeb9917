/**
 * The provider and executor plugins of secsync-jupyter (see index.ts for the list):
 * `.secnb` notebooks get the encrypted Secsync provider and run their cells from the browser;
 * every other document keeps the stock plaintext provider and executor.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { INotebookCellExecutor, runCell } from '@jupyterlab/notebook';
import { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import {
  IAwarenessProviderFactory,
  IDocumentProviderFactory,
  NotebookCellServerExecutor,
  WebSocketAwarenessProvider,
  WebSocketProvider
} from '@jupyter/docprovider';

import { isPointerPath } from './pointer';
import { EncryptedDocumentProvider } from './provider';
import { isReadOnly } from './readonly';
import { registry } from './registry';
import { trustOwnOutputs } from './trust';

export const TRANSLATION_DOMAIN = 'secsync_jupyter';

function defaultKernelFrom(app: JupyterFrontEnd) {
  return () => {
    const specs = app.serviceManager.kernelspecs.specs;
    if (!specs || !specs.default || !specs.kernelspecs[specs.default]) {
      return null;
    }
    const spec = specs.kernelspecs[specs.default]!;
    return { name: spec.name, display_name: spec.display_name, language: spec.language };
  };
}

// ---------------------------------------------------------------------------------------
// Provider factories
// ---------------------------------------------------------------------------------------

class SecsyncDocumentProviderFactory implements IDocumentProviderFactory {
  constructor(
    private _app: JupyterFrontEnd,
    private _trans: TranslationBundle
  ) {}

  create(options: IDocumentProviderFactory.IOptions) {
    if (isPointerPath(options.path) && options.contentType === 'notebook') {
      return new EncryptedDocumentProvider({
        path: options.path,
        contentType: options.contentType,
        format: options.format,
        model: options.model,
        user: options.user,
        translator: options.translator ?? this._trans,
        serverSettings: options.serverSettings,
        drive: options.drive,
        defaultKernel: defaultKernelFrom(this._app)
      });
    }
    // Everything else: the stock plaintext WebSocket provider (plain RTC unchanged).
    return new WebSocketProvider({
      path: options.path,
      contentType: options.contentType,
      format: options.format,
      model: options.model,
      user: options.user,
      translator: options.translator,
      serverSettings: options.serverSettings,
      onConflictSaveAs: async () => {
        await this._app.commands.execute('docmanager:save-as');
      },
      onConflictRevert: async () => {
        await this._app.commands.execute('docmanager:reload');
      }
    });
  }
}

export const documentProviderFactoryPlugin: JupyterFrontEndPlugin<IDocumentProviderFactory> = {
  id: 'secsync-jupyter:document-provider-factory',
  description:
    'Document providers: encrypted Secsync provider for .secnb notebooks, stock WebSocket provider otherwise.',
  requires: [ITranslator],
  provides: IDocumentProviderFactory,
  activate: (app: JupyterFrontEnd, translator: ITranslator) =>
    new SecsyncDocumentProviderFactory(app, translator.load(TRANSLATION_DOMAIN))
};

class SecsyncAwarenessProviderFactory implements IAwarenessProviderFactory {
  create(options: IAwarenessProviderFactory.IOptions) {
    // The global awareness only carries user presence (name, open document paths),
    // never document content: it stays on the Jupyter server's collaboration room.
    return new WebSocketAwarenessProvider({
      url: URLExt.join(options.serverSettings.wsUrl, 'api/collaboration/room'),
      roomID: options.roomID,
      awareness: options.awareness,
      user: options.user
    });
  }
}

export const awarenessProviderFactoryPlugin: JupyterFrontEndPlugin<IAwarenessProviderFactory> = {
  id: 'secsync-jupyter:awareness-provider-factory',
  description: 'Global awareness provider (user presence; no document content).',
  provides: IAwarenessProviderFactory,
  activate: () => new SecsyncAwarenessProviderFactory()
};

export const cellExecutorPlugin: JupyterFrontEndPlugin<INotebookCellExecutor> = {
  id: 'secsync-jupyter:cell-executor',
  description:
    'Runs cells of encrypted notebooks from the browser; other notebooks as configured (stock).',
  provides: INotebookCellExecutor,
  activate: (app: JupyterFrontEnd): INotebookCellExecutor => {
    const server =
      PageConfig.getOption('serverSideExecution') === 'true'
        ? new NotebookCellServerExecutor({ serverSettings: app.serviceManager.serverSettings })
        : null;
    return Object.freeze({
      runCell: async (options: INotebookCellExecutor.IRunCellOptions) => {
        const session = registry.forModel(options.notebook.sharedModel);
        if (session && isReadOnly(session)) {
          // a viewer runs nothing (its outputs could not be saved): readonly.ts
          return false;
        }
        const sessionContext = options.sessionContext;
        if (session && sessionContext && !sessionContext.isReady) {
          // The notebook shows (and is editable) before its kernel session exists: the
          // session context creates it once the document is populated (with a membership
          // log, after our role is known). A cell run while that session is being created
          // was lost: JupyterLab's runCell sees a kernel pending (not "no kernel"), finds no
          // session yet and clears the cell; nothing runs. Wait for the session context.
          await sessionContext.ready;
          if (isReadOnly(session) || options.cell.isDisposed) {
            return false;
          }
        }
        if (session) {
          // The server cannot read an encrypted notebook: this browser executes the cell
          // and writes the outputs into the (encrypted) shared model. The outputs of this
          // run render as fresh outputs here (trust.ts); everywhere else they are untrusted.
          if (options.cell.model.type === 'code') {
            trustOwnOutputs((options.cell as any).outputArea);
          }
          return runCell(options);
        }
        if (!server) {
          return runCell(options);
        }
        return server.runCell(options);
      }
    });
  }
};
