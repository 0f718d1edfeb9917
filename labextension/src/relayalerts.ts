/**
 * What the sync client noticed of the relay misbehaving (issue 13), for the user: which
 * collaborator each alert concerns (the marker next to them in the collaborators popup and
 * the status item, status.ts), the warning notification naming them, and "seen by" (whether
 * a live collaborator's signed heads show this browser's latest change).
 *
 * Alert kinds (secsync/headsDriver.ts): `withheld` 801 and `served-incompletely` 803 name
 * the authors whose updates are missing; `heads-withheld` 806 names the authors whose
 * updates a collaborator (`seenBy`) has seen but the relay has not delivered here (none:
 * log entries or a snapshot); `fork` 805 names the collaborator (`peer`) on another history;
 * `rollback` 804 concerns the whole document, as does `remembered-damaged` 807 (this browser's
 * own remembered state could not be used).
 */
import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ISignal, Signal } from '@lumino/signaling';

import { fingerprint } from './keystore';
import type { HeadsAlert, HeadsDriver } from './secsync/headsDriver';
import type { MembershipState } from './secsync/membership';

/** What an alert says about one collaborator (by public key). */
export interface ICollaboratorAlert {
  kind: 'withheld' | 'fork';
  /** one sentence for the user, naming people by name */
  text: string;
  /** the engine's detail (public keys, clocks, snapshot ids) */
  detail: string;
  at: number;
}

/** Names a public key: the collaborator's display name, or a short fingerprint. */
export type NameOf = (pubKey: string) => string;

const NOTIFY_EVERY_MS = 30_000;

export class RelayAlerts {
  constructor(
    private readonly _trans: TranslationBundle,
    private readonly _path: () => string,
    private readonly _nameOf: NameOf
  ) {}

  /** Emitted when an alert arrives. */
  get changed(): ISignal<this, HeadsAlert> {
    return this._changed;
  }

  /** Alerts naming a collaborator: public key → alerts, latest last. */
  get byCollaborator(): ReadonlyMap<string, readonly ICollaboratorAlert[]> {
    return this._byKey;
  }

  /** Alerts about the whole document (a rollback), as sentences. */
  get general(): readonly string[] {
    return this._general;
  }

  /** Number of alerts about the relay so far (0: nothing noticed). */
  get count(): number {
    return this._count;
  }

  /** The sync client whose heads give "seen by" (the current one after a reconnect). */
  attach(heads: HeadsDriver | undefined): void {
    this._heads = heads ?? null;
  }

  /**
   * Whether live collaborator `pubKey`'s latest heads show this browser's latest
   * acknowledged change (null: no heads from them yet).
   */
  seenBy(pubKey: string): boolean | null {
    return this._heads?.seenBy().get(pubKey) ?? null;
  }

  /** Records an alert of the sync client and warns (one notification per kind every 30 s). */
  add(alert: HeadsAlert): void {
    if (alert.kind !== 'remembered-damaged') {
      this._count += 1; // (807 is not the relay's doing: not counted in the status item)
    }
    const data = alert.data;
    const detail = typeof data.detail === 'string' ? data.detail : '';
    const authors = stringList(data.authors);
    const seenBy = typeof data.seenBy === 'string' ? data.seenBy : null;
    const sentences: string[] = [];
    const mark = (pubKey: string, kind: ICollaboratorAlert['kind'], text: string) => {
      const list = this._byKey.get(pubKey) ?? [];
      list.push({ kind, text, detail, at: alert.at });
      this._byKey.set(pubKey, list.slice(-5));
      sentences.push(text);
    };
    if (alert.kind === 'fork' && typeof data.peer === 'string') {
      mark(
        data.peer,
        'fork',
        this._trans.__(
          'The relay shows %1 a different history of this notebook than you (a fork).',
          this._nameOf(data.peer)
        )
      );
    } else if (alert.kind === 'remembered-damaged') {
      // not the relay: this browser's own record (807; the damaged value is kept aside)
      const text = this._trans.__(
        "This browser's remembered state of this notebook was damaged; it was checked from scratch; rollback detection starts again from now."
      );
      this._general.push(text);
      this._general = this._general.slice(-5);
      // the notification shows about 140 characters: the short form
      sentences.push(
        this._trans.__("This browser's record of this notebook was damaged: checked from scratch, rollback detection restarts now.")
      );
    } else if (alert.kind === 'rollback') {
      const text = this._trans.__(
        'The relay served an older state of this notebook than this browser verified before (a rollback).'
      );
      this._general.push(text);
      this._general = this._general.slice(-5);
      sentences.push(text);
    } else if (authors.length > 0) {
      for (const author of authors) {
        mark(
          author,
          'withheld',
          seenBy !== null && seenBy !== author
            ? this._trans.__(
                'The relay has not delivered changes by %1 that %2 has seen (withheld).',
                this._nameOf(author),
                this._nameOf(seenBy)
              )
            : seenBy === author
              ? this._trans.__(
                  'The relay has not delivered changes that %1 made (withheld).',
                  this._nameOf(author)
                )
              : this._trans.__(
                  'The relay has not delivered all changes by %1 (withheld or dropped).',
                  this._nameOf(author)
                )
        );
      }
    } else if (seenBy !== null) {
      mark(
        seenBy,
        'withheld',
        this._trans.__(
          '%1 has seen changes the relay has not delivered to you (withheld).',
          this._nameOf(seenBy)
        )
      );
    } else {
      const text = this._trans.__('The relay has not delivered all changes (withheld or dropped).');
      this._general.push(text);
      sentences.push(text);
    }
    this._notify(alert.kind, sentences.join(' '));
    this._changed.emit(alert);
  }

  private _notify(kind: string, text: string): void {
    const now = Date.now();
    if (now - (this._notifiedAt.get(kind) ?? 0) < NOTIFY_EVERY_MS) {
      return;
    }
    this._notifiedAt.set(kind, now);
    Notification.warning(`${this._path()}: ${text}`, { autoClose: false });
  }

  private _changed = new Signal<this, HeadsAlert>(this);
  private _byKey = new Map<string, ICollaboratorAlert[]>();
  private _general: string[] = [];
  private _count = 0;
  private _heads: HeadsDriver | null = null;
  private _notifiedAt = new Map<string, number>();
}

/**
 * A public key's name for the user: the display name of the live collaborator with that key,
 * else the member's name in the membership log, else the key's fingerprint.
 */
export function collaboratorName(
  awareness: { getStates(): Map<number, any> },
  membership: MembershipState | null,
  pubKey: string
): string {
  for (const state of awareness.getStates().values()) {
    const key = typeof state?.pubKey === 'string' ? state.pubKey : state?.secsync?.pubKey;
    const user = state?.user;
    if (key === pubKey && user) {
      const name = user.display_name || user.name || user.username;
      if (name) {
        return String(name);
      }
    }
  }
  const member = membership?.members.get(pubKey);
  return member?.name || fingerprint(pubKey);
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * The marker next to a collaborator (null: nothing noticed about them): "⚠ withheld" or
 * "⚠ fork", the sentences as its tooltip and text for screen readers.
 */
export function collaboratorMarker(
  alerts: readonly ICollaboratorAlert[] | undefined,
  trans: TranslationBundle
): HTMLElement | null {
  if (!alerts || alerts.length === 0) {
    return null;
  }
  const latest = alerts[alerts.length - 1];
  const marker = document.createElement('span');
  marker.className = 'jp-secsync-RelayAlert';
  marker.dataset.kind = latest.kind;
  marker.textContent =
    '⚠ ' + (latest.kind === 'fork' ? trans.__('fork') : trans.__('withheld by the relay'));
  marker.title = alerts.map(a => a.text + (a.detail ? ` (${a.detail})` : '')).join('\n');
  marker.setAttribute('aria-label', latest.text);
  return marker;
}

/** "seen ✓" / "not seen yet" next to a live collaborator (null: no heads from them). */
export function seenMarker(seen: boolean | null, trans: TranslationBundle): HTMLElement | null {
  if (seen === null) {
    return null;
  }
  const el = document.createElement('span');
  el.className = 'jp-secsync-SeenBy';
  el.dataset.seen = String(seen);
  el.textContent = seen ? trans.__('seen ✓') : trans.__('not seen yet');
  el.title = seen
    ? trans.__('Their client has your latest change (from its signed heads).')
    : trans.__('Their client does not have your latest change yet.');
  return el;
}
