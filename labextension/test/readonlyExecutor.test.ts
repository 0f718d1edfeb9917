/**
 * A viewer runs nothing (issue 11, "no execution that would write outputs"): the cell
 * executor of secsync-jupyter (factories.ts) returns false for a cell of an encrypted notebook
 * whose session is read-only (a viewer, readonly.ts) without calling JupyterLab's runCell, and
 * runs the cell through JupyterLab's runCell for an editor of the same session.
 */
import type { INotebookCellExecutor } from '@jupyterlab/notebook';
import { afterEach, describe, expect, test, vi } from 'vitest';

const stockRunCell = vi.fn(async () => true);
vi.mock('@jupyterlab/notebook', () => ({
  INotebookCellExecutor: {},
  runCell: stockRunCell
}));

// (the browser-only modules the executor's file imports, not used by runCell)
vi.mock('@jupyter/docprovider', () => ({
  IAwarenessProviderFactory: {},
  IDocumentProviderFactory: {},
  NotebookCellServerExecutor: class {}
}));
vi.mock('@jupyterlab/apputils', () => ({ Notification: {} }));
vi.mock('@lumino/widgets', () => ({ Widget: class {} }));
vi.mock('../src/provider', () => ({ EncryptedDocumentProvider: class {} }));

const { cellExecutorPlugin } = await import('../src/factories');
const { registry } = await import('../src/registry');

function session(sharedModel: object, readOnly: boolean, role: string) {
  return {
    docId: 'm1_test',
    path: 'test.secnb',
    sharedModel,
    status: { access: 'member', readOnly, role },
    statusChanged: { connect() {}, disconnect() {} }
  } as any;
}

function runOptions(sharedModel: object) {
  return {
    cell: { isDisposed: false, model: { type: 'code' }, outputArea: {} },
    notebook: { sharedModel },
    notebookConfig: {},
    sessionContext: { isReady: true }
  } as any;
}

const app = { serviceManager: { serverSettings: {} } } as any;
const executor = () => cellExecutorPlugin.activate(app) as INotebookCellExecutor;
const added: any[] = [];

/** A session of a new shared model, in the registry until the test ends. */
function registered(readOnly: boolean, role: string) {
  const model = {};
  const s = session(model, readOnly, role);
  registry.add(s);
  added.push(s);
  return { model, s };
}

afterEach(() => {
  for (const s of added.splice(0)) {
    registry.remove(s);
  }
  stockRunCell.mockClear();
});

describe('the cell executor of encrypted notebooks', () => {
  test("a viewer's run returns false and executes nothing", async () => {
    const { model, s: viewer } = registered(true, 'viewer');
    expect(registry.forModel(model as any)).toBe(viewer);
    await expect(executor().runCell(runOptions(model))).resolves.toBe(false);
    expect(stockRunCell).not.toHaveBeenCalled();
  });

  test('a run that waits for the kernel session runs nothing if the browser became a viewer', async () => {
    const { model, s: member } = registered(false, 'editor');
    let ready!: () => void;
    const options = runOptions(model);
    options.sessionContext = { isReady: false, ready: new Promise<void>(r => (ready = r)) };
    const run = executor().runCell(options);
    member.status = { access: 'member', readOnly: true, role: 'viewer' };
    ready();
    await expect(run).resolves.toBe(false);
    expect(stockRunCell).not.toHaveBeenCalled();
  });

  test("an editor's run goes to JupyterLab's runCell", async () => {
    const { model } = registered(false, 'editor');
    const options = runOptions(model);
    await expect(executor().runCell(options)).resolves.toBe(true);
    expect(stockRunCell).toHaveBeenCalledTimes(1);
    expect(stockRunCell).toHaveBeenCalledWith(options);
  });
});
