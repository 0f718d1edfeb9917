/**
 * A re-run cell's new output reaches a collaborator's JupyterLab models (the real
 * @jupyterlab/cells CodeCellModel on @jupyter/ydoc) when the deletion of the old output and
 * the insertion of the new one arrive together: merged into one update (pending changes are
 * merged before sending), as two updates of one frame, or inside a snapshot — and also end
 * to end, two SecsyncYjsClients through the Python relay.
 *
 * Before YDocAdapter applied deletions first, such a delta listed the insertion first: the
 * code cell model appended the new stream text to the old output, then deleted that output
 * (the receiver showed no output), and its stream listener wrote the text a second time into
 * the shared output (the author showed it twice) — the e2e "out-enc-N not observed" failure.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import type { YCodeCell } from '@jupyter/ydoc';
import * as Y from 'yjs';
import {
  createSignatureKeyPair,
  generateId,
  generateKey,
  ready,
  SecsyncYjsClient,
  WebSocketConstructor
} from '../src/secsync';
import { YDocAdapter } from '../src/secsync/yjsContent';
import { RelayHandle, startRelay } from './helpers/relays';

// the models only: these packages' entry points also load widgets, which need a DOM
vi.mock('@jupyterlab/outputarea', () => import('@jupyterlab/outputarea/lib/model.js'));
vi.mock('@jupyterlab/rendermime', () => import('@jupyterlab/rendermime/lib/outputmodel.js'));
vi.mock('@jupyterlab/codeeditor', () => import('@jupyterlab/codeeditor/lib/editor.js'));
vi.mock('@jupyterlab/attachments', () => ({ AttachmentsModel: class {} })); // (markdown cells)

const stream = (text: string) => ({ output_type: 'stream', name: 'stdout', text });

async function models() {
  const { CodeCellModel } = await import('@jupyterlab/cells/lib/model.js');
  const { YNotebook } = await import('@jupyter/ydoc');
  return { CodeCellModel, YNotebook };
}

/** A ran the cell once (OUT-1), B has that; returns both sides before A's second run. */
async function twoNotebooks() {
  const { CodeCellModel, YNotebook } = await models();
  const nbA = new YNotebook();
  const cellA = nbA.addCell({ cell_type: 'code', source: 'print(1)' }) as YCodeCell;
  const modelA = new CodeCellModel({ sharedModel: cellA });
  modelA.outputs.add(stream('OUT-1\n'));
  const nbB = new YNotebook();
  Y.applyUpdate(nbB.ydoc, Y.encodeStateAsUpdate(nbA.ydoc));
  const modelB = new CodeCellModel({ sharedModel: nbB.cells[0] as any });
  expect(modelB.outputs.toJSON()).toEqual([stream('OUT-1\n')]);
  return { nbA, cellA, modelA, nbB, modelB };
}

/** A runs the cell again, as JupyterLab does: outputs cleared, then the kernel's output. */
function runAgain(cellA: any, modelA: any, text: string): void {
  cellA.transact(() => modelA.clearExecution(), false, 'silent-change');
  modelA.outputs.add(stream(text));
  modelA.executionCount = 2;
  expect(modelA.outputs.toJSON()).toEqual([stream(text)]);
}

describe('JupyterLab outputs through YDocAdapter', () => {
  const cases: Array<[string, (b: YDocAdapter, ups: Uint8Array[], docA: Y.Doc) => void]> = [
    ['one merged update', (b, ups) => b.applyChanges(b.mergeChanges(ups))],
    ['two updates of one frame', (b, ups) => b.applyChanges(ups)],
    ['a snapshot', (b, _ups, docA) => b.applySnapshot(Y.encodeStateAsUpdate(docA))]
  ];
  test.each(cases)('the new output arrives as %s', async (_name, deliver) => {
    const { nbA, cellA, modelA, nbB, modelB } = await twoNotebooks();
    const fromA: Uint8Array[] = [];
    nbA.ydoc.on('update', (u: Uint8Array) => fromA.push(u));
    const fromB: Uint8Array[] = [];
    const adapterB = new YDocAdapter(nbB.ydoc, (u) => fromB.push(u));
    // every state B goes through is one a collaborator had: no map key without its value
    const counts: unknown[] = [];
    const cellB = nbB.cells[0] as YCodeCell;
    nbB.ydoc.on('afterTransaction', () => counts.push(cellB.ymodel.get('execution_count')));
    runAgain(cellA, modelA, 'OUT-2\n');
    deliver(adapterB, fromA, nbA.ydoc);
    expect(counts.every((c) => c === null || c === 1 || c === 2)).toBe(true);
    expect(modelB.outputs.toJSON()).toEqual([stream('OUT-2\n')]);
    expect((nbB.cells[0] as any).getOutputs()).toEqual([stream('OUT-2\n')]);
    expect(modelB.executionCount).toBe(2);
    expect(fromB).toEqual([]); // B wrote nothing back (no second copy for A)
    adapterB.close();
  });

  test('applying deletions first gives the same document', () => {
    // random edits of text, maps and arrays (with nested types), delivered in random groups
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let run = 0; run < 200; run++) {
      const src = new Y.Doc();
      const ups: Uint8Array[] = [];
      src.on('update', (u: Uint8Array) => ups.push(u));
      const root = src.getMap('cell');
      src.transact(() => {
        root.set('outputs', new Y.Array());
        root.set('source', new Y.Text('x'));
      });
      for (let i = 0; i < 25; i++) {
        const outputs = root.get('outputs') as Y.Array<Y.Map<unknown>>;
        const text = root.get('source') as Y.Text;
        const r = rnd();
        if (r < 0.3) {
          text.insert(Math.floor(rnd() * (text.length + 1)), `t${i}`);
        } else if (r < 0.4 && text.length > 1) {
          text.delete(0, 1);
        } else if (r < 0.6) {
          src.transact(() => outputs.delete(0, outputs.length));
        } else if (r < 0.85) {
          const m = new Y.Map<unknown>();
          m.set('text', new Y.Text(`OUT${i}`));
          outputs.insert(Math.floor(rnd() * (outputs.length + 1)), [m]);
        } else {
          root.set('count', i);
        }
      }
      const dst = new Y.Doc();
      const adapter = new YDocAdapter(dst);
      let at = 0;
      while (at < ups.length) {
        const n = 1 + Math.floor(rnd() * 4);
        const group = ups.slice(at, at + n);
        at += n;
        adapter.applyChanges(rnd() < 0.5 ? adapter.mergeChanges(group) : group);
      }
      expect(dst.getMap('cell').toJSON()).toEqual(root.toJSON());
      expect(Y.encodeStateVector(dst)).toEqual(Y.encodeStateVector(src));
      adapter.close();
    }
  });
});

describe('JupyterLab outputs between two clients through the Python relay', () => {
  let relay: RelayHandle;
  beforeAll(async () => {
    await ready();
    relay = await startRelay('python');
  });
  afterAll(async () => {
    await relay?.stop();
  });

  test("B's model shows A's new output once; A's shared output is not doubled", async () => {
    const { CodeCellModel, YNotebook } = await models();
    const docId = generateId();
    const key = generateKey();
    const client = (ydoc: Y.Doc) =>
      new SecsyncYjsClient({
        url: `${relay.base}/${docId}`,
        docId,
        key,
        signatureKeyPair: createSignatureKeyPair(),
        ydoc,
        WebSocketImpl: WebSocket as unknown as WebSocketConstructor,
        sessionKey: 'vitest',
        maxReconnectDelayMs: 500
      });
    const nbA = new YNotebook();
    const a = client(nbA.ydoc);
    a.connect();
    await a.loaded;
    const cellA = nbA.addCell({ cell_type: 'code', source: 'print(1)' }) as YCodeCell;
    const modelA = new CodeCellModel({ sharedModel: cellA });
    modelA.outputs.add(stream('OUT-1\n'));
    await a.synced();
    const nbB = new YNotebook();
    const b = client(nbB.ydoc);
    b.connect();
    await b.loaded;
    const modelB = new CodeCellModel({ sharedModel: nbB.cells[0] as any });
    expect(modelB.outputs.toJSON()).toEqual([stream('OUT-1\n')]);
    try {
      // the clear and the new output within one batching window: one merged update
      runAgain(cellA, modelA, 'OUT-2\n');
      await a.synced();
      const deadline = Date.now() + 20000;
      while (modelB.executionCount !== 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(modelB.executionCount).toBe(2);
      expect(modelB.outputs.toJSON()).toEqual([stream('OUT-2\n')]);
      await b.synced();
      await a.synced();
      expect(cellA.getOutputs()).toEqual([stream('OUT-2\n')]);
      expect(b.stats.updatesSent).toBe(0);
    } finally {
      a.destroy();
      b.destroy();
    }
  });
});
