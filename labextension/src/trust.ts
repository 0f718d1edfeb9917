/**
 * Trust is local, never shared, for encrypted notebooks.
 *
 * JupyterLab derives a cell's trust from the *shared* cell metadata (`metadata.trusted`) and
 * renders trusted outputs unsanitized, with their scripts run. In an encrypted notebook
 * anyone who can write into the document (every key holder, or the author of a link that
 * points the browser at their own relay) could set that flag. So every notebook panel of an
 * encrypted notebook renders through a rendermime registry that ignores the models' trust:
 *
 * - every output and Markdown cell is rendered untrusted: HTML sanitized, no script, only
 *   the renderers JupyterLab registers as safe (never the JavaScript renderer nor other unsafe
 *   ones), whatever `metadata.trusted` or the notebook's "Trust" command say;
 * - the registry hands the notebook no trust handler, so no part of the notebook is a
 *   trusted boundary for command links (`data-commandlinker-command`);
 * - the one exception: an output that this browser's own kernel run produces *right now*
 *   (the iopub message of an execution this browser started, rendered while it is handled)
 *   is rendered as JupyterLab renders fresh outputs. The same output arriving later through
 *   the relay, re-rendered, or loaded again after a reload, is untrusted.
 *
 * The registry is installed by wrapping the notebook widget factory's `createNewWidget`
 * (every notebook panel is made there: the "Encrypted Notebook" factory, the stock
 * "Notebook" factory when the layout restorer reopens a `.secnb` tab, and new views of
 * either). A panel of an encrypted notebook that does not end up with this registry is
 * refused (fail closed).
 */
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import type { Notebook, NotebookPanel, NotebookWidgetFactory } from '@jupyterlab/notebook';

type RenderMime = Notebook['rendermime'];
type Renderer = ReturnType<RenderMime['createRenderer']>;
type MimeModel = Parameters<Renderer['renderModel']>[0];
type Bundle = Parameters<RenderMime['preferredMimeType']>[0];
type Safety = Parameters<RenderMime['preferredMimeType']>[1];

const UNTRUSTED = Symbol('secsync-jupyter:untrusted-rendermime');

/** > 0 while an iopub message of this browser's own execution is being handled. */
let ownOutputDepth = 0;

function bindTo<T extends object>(target: T, prop: string | symbol): unknown {
  const value = Reflect.get(target, prop, target);
  return typeof value === 'function' ? value.bind(target) : value;
}

/** A view of a mime model that says it is untrusted (everything else is the model's). */
function untrustedModel(model: MimeModel): MimeModel {
  return new Proxy(model, {
    get: (target, prop) => (prop === 'trusted' ? false : bindTo(target, prop))
  });
}

function untrustedRenderer(renderer: Renderer): Renderer {
  // (RenderedCommon.renderModel takes a second argument, keepExisting: passed on)
  const render = renderer.renderModel.bind(renderer) as (m: MimeModel, ...rest: unknown[]) => any;
  renderer.renderModel = (model: MimeModel, ...rest: unknown[]) =>
    render(ownOutputDepth > 0 ? model : untrustedModel(model), ...rest);
  return renderer;
}

/** True for a registry made by `untrustedRenderMime`. */
export function isUntrustedRenderMime(rendermime: unknown): boolean {
  return !!rendermime && (rendermime as any)[UNTRUSTED] === true;
}

/**
 * A rendermime registry that renders everything untrusted (see the module comment). It
 * delegates to `inner` for everything else (factories, sanitizer, resolver, …), so renderers
 * added later by other extensions (e.g. widget managers) are used, under the same rule.
 */
export function untrustedRenderMime(inner: RenderMime): RenderMime {
  if (isUntrustedRenderMime(inner)) {
    return inner;
  }
  return new Proxy(inner, {
    get: (target, prop) => {
      switch (prop) {
        case UNTRUSTED:
          return true;
        case 'trustHandler':
          return null;
        case 'preferredMimeType':
          return (bundle: Bundle, safe?: Safety) =>
            target.preferredMimeType(bundle, ownOutputDepth > 0 ? safe : 'ensure');
        case 'createRenderer':
          return (mimeType: string) => untrustedRenderer(target.createRenderer(mimeType));
        case 'clone':
          return (options?: Parameters<RenderMime['clone']>[0]) =>
            untrustedRenderMime(target.clone(options));
        default:
          return bindTo(target, prop);
      }
    }
  });
}

const hookedOutputAreas = new WeakSet<object>();

function findAccessor(obj: object, name: string): PropertyDescriptor | undefined {
  for (let o: object | null = obj; o; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d) {
      return d.get && d.set ? d : undefined;
    }
  }
  return undefined;
}

/**
 * Lets the outputs of executions this browser starts in `outputArea` (a code cell's output
 * area) render as fresh outputs while their iopub messages are handled. Without it (or if
 * JupyterLab's output area changes shape) they simply render untrusted.
 */
export function trustOwnOutputs(outputArea: object): void {
  if (hookedOutputAreas.has(outputArea)) {
    return;
  }
  const future = findAccessor(outputArea, 'future');
  if (!future) {
    return;
  }
  hookedOutputAreas.add(outputArea);
  Object.defineProperty(outputArea, 'future', {
    configurable: true,
    enumerable: false,
    get(this: object) {
      return future.get!.call(this);
    },
    set(this: object, value: any) {
      future.set!.call(this, value);
      const handler = value?.onIOPub;
      if (typeof handler === 'function') {
        value.onIOPub = (msg: unknown) => {
          ownOutputDepth++;
          try {
            return handler(msg);
          } finally {
            ownOutputDepth--;
          }
        };
      }
    }
  });
}

/**
 * Makes every notebook panel that `factory` creates for an encrypted notebook render through
 * `untrustedRenderMime` (see the module comment).
 */
export function renderEncryptedNotebooksUntrusted(
  factory: NotebookWidgetFactory.IFactory,
  isEncrypted: (context: DocumentRegistry.IContext<any>) => boolean
): void {
  const f = factory as any;
  const original = f.createNewWidget as (
    context: DocumentRegistry.IContext<any>,
    source?: NotebookPanel
  ) => NotebookPanel;
  if (typeof original !== 'function') {
    throw new Error('secsync-jupyter: the notebook widget factory has no createNewWidget');
  }
  f.createNewWidget = function (
    this: NotebookWidgetFactory,
    context: DocumentRegistry.IContext<any>,
    source?: NotebookPanel
  ): NotebookPanel {
    if (!isEncrypted(context)) {
      return original.call(this, context, source);
    }
    const strict = Object.create(this, {
      rendermime: { value: untrustedRenderMime(this.rendermime) }
    });
    const panel = original.call(strict, context, source);
    if (!isUntrustedRenderMime(panel.content.rendermime)) {
      panel.dispose();
      throw new Error(
        'secsync-jupyter: refusing to show an encrypted notebook with trusted rendering'
      );
    }
    return panel;
  };
}
