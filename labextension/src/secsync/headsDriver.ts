/**
 * The driver side of issue 13 for `SecsyncYjsClient` (document.ts): the clock of the heads
 * between live collaborators (`engine.tick` about once a second), what the client noticed of
 * the relay misbehaving (`alerts`, `onAlert`), and the remembered state saved after changes.
 * The twin of the issue 13 parts of `secsync_jupyter/client/document.py`.
 */
import type { SyncEngine } from './engine';
import { clockOf } from './knownSnapshot';
import type { PeerHeads } from './engineHeads';
import type { RememberedStore } from './rememberedState';

/** What the client noticed: `withheld` (801), `served-incompletely` (803), `heads-withheld`
 * (806: a collaborator has seen updates the relay has not delivered), `fork` (805), `rollback`
 * (804); and `remembered-damaged` (807: this browser's remembered state of the document could
 * not be used — kept aside under `aside`, the load checked from scratch; raised while the
 * client is built: read `alerts` after subscribing). `data` is the engine event's (e.g.
 * `seenBy`, `missing`, `peer`, `detail`). */
export interface HeadsAlert {
  kind: string;
  data: Record<string, unknown>;
  at: number;
}

export const ALERT_EVENTS = ['withheld', 'served-incompletely', 'heads-withheld', 'fork', 'rollback', 'remembered-damaged'];
const SAVE_EVENTS = ['loaded', 'update-saved', 'snapshot-saved', 'remote-change', 'membership'];

export class HeadsDriver {
  readonly alerts: HeadsAlert[] = [];
  private _listeners = new Set<(alert: HeadsAlert) => void>();
  private _timer: ReturnType<typeof setInterval> | null;
  private _saveTimer: ReturnType<typeof setTimeout> | null = null;
  /** false: a damaged state could not be kept aside, so nothing overwrites it */
  private _keepStore = true;

  constructor(
    private readonly docId: string,
    private readonly engine: SyncEngine<Uint8Array>,
    private readonly store: RememberedStore | null,
    call: (fn: () => void) => void
  ) {
    if (engine.rememberedDamaged !== null) {
      // issue 13: never destroyed silently — kept under side keys before a fresh state is
      // written; if it cannot be kept (e.g. the quota), nothing is written this session
      let aside: string[] = [];
      try {
        aside = store?.setAside?.(docId) ?? [];
      } catch (exc) {
        this._keepStore = false;
        console.warn(`secsync ${docId}: cannot keep the damaged remembered state aside`, exc);
      }
      this.onEvent('remembered-damaged', { detail: engine.rememberedDamaged, aside });
    }
    const period = Math.min(1000, engine.heads.interval * 200);
    this._timer = setInterval(() => call(() => engine.tick(performance.now() / 1000)), period);
    (this._timer as { unref?: () => void }).unref?.();
  }

  /** Each collaborator's latest heads (public key → heads). */
  get peerHeads(): Map<string, PeerHeads> {
    return new Map(this.engine.heads.peerHeads);
  }

  /**
   * Read notifications: per live collaborator, whether its latest heads show our latest
   * acknowledged update on the active snapshot (or a snapshot after ours).
   */
  seenBy(): Map<string, boolean> {
    const out = new Map<string, boolean>();
    const active = this.engine.active;
    if (active === null) {
      return out;
    }
    const mine = clockOf(active.updateClocks, this.engine.pubKey);
    for (const [peer, heads] of this.engine.heads.peerHeads) {
      out.set(
        peer,
        heads.snapshotId === active.snapshotId
          ? clockOf(heads.clocks, this.engine.pubKey) >= mine
          : heads.chain.includes(active.snapshotId)
      );
    }
    return out;
  }

  onAlert(cb: (alert: HeadsAlert) => void): () => void {
    this._listeners.add(cb);
    return () => {
      this._listeners.delete(cb);
    };
  }

  onEvent(event: string, data: Record<string, unknown>): void {
    if (ALERT_EVENTS.includes(event)) {
      const alert = { kind: event, data: { ...data }, at: Date.now() };
      this.alerts.push(alert);
      if (this.alerts.length > 100) {
        this.alerts.shift();
      }
      console.warn(`secsync ${this.docId}: ${event}`, data);
      for (const cb of Array.from(this._listeners)) {
        try {
          cb(alert);
        } catch {
          // a buggy listener must not break sync
        }
      }
    } else if (SAVE_EVENTS.includes(event) && this.store !== null && this._keepStore && this._saveTimer === null) {
      this._saveTimer = setTimeout(() => this.save(), event === 'loaded' ? 0 : 1000);
    }
  }

  /** Write the remembered state now (also done about a second after changes). */
  save(): void {
    if (this._saveTimer !== null) {
      clearTimeout(this._saveTimer);
      this._saveTimer = null;
    }
    const state = this.engine.rememberedState();
    if (this.store !== null && this._keepStore && state !== null) {
      try {
        this.store.save(this.docId, state);
      } catch (exc) {
        console.warn(`secsync ${this.docId}: cannot save the remembered state`, exc);
      }
    }
  }

  destroy(): void {
    this.save();
    if (this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
  }
}
