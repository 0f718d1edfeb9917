/**
 * An executed cell stays "executed" when its execution arrives through the relay.
 *
 * JupyterLab marks a code cell as modified ("•[1]", the orange bar) when its source changes
 * while it has an execution count, unless the change came after the cell went `running` (the
 * executing client's `execution_state`). Stock collaboration relays every transaction on its
 * own, so another browser sees the source, then `running`, then the count. The encrypted
 * provider receives several changes in one transaction (a document loaded as snapshot + its
 * updates, pending changes merged into one update): source and count then arrive together,
 * `running`→`idle` collapses to nothing, and JupyterLab takes the just-executed source for an
 * edit made after the execution — a newcomer sees cells nobody edited as modified.
 *
 * Rule: in a transaction from the relay (not a local one), a code cell whose
 * `execution_count` was set to a number was executed with the source it has after that
 * transaction: it is not modified. Local transactions (this browser's edits and executions)
 * are left to JupyterLab.
 */
import type { ICodeCellModel } from '@jupyterlab/cells';
import type { INotebookModel } from '@jupyterlab/notebook';
import type * as Y from 'yjs';

const watched = new WeakSet<INotebookModel>();

/** Applies the rule above to the cells of `model` (once per model). */
export function keepRemoteExecutionsUnmodified(model: INotebookModel): void {
  if (watched.has(model)) {
    return;
  }
  watched.add(model);
  const ydoc = (model.sharedModel as unknown as { ydoc: Y.Doc }).ydoc;
  const onTransaction = (tr: Y.Transaction): void => {
    if (tr.local || model.isDisposed) {
      return;
    }
    const executed = new Set<unknown>();
    tr.changed.forEach((keys, type) => {
      if (keys.has('execution_count')) {
        executed.add(type);
      }
    });
    if (executed.size === 0) {
      return;
    }
    for (const cell of model.cells) {
      const ycell = (cell.sharedModel as unknown as { ymodel?: unknown }).ymodel;
      if (cell.type === 'code' && executed.has(ycell)) {
        const code = cell as ICodeCellModel;
        if (code.executionCount !== null && code.isDirty) {
          // (CodeCellModel's public setter: the source now is the executed source)
          (code as { isDirty: boolean }).isDirty = false;
        }
      }
    }
  };
  // (the document's own listeners go with it when it is destroyed)
  ydoc.on('afterTransaction', onTransaction);
}
