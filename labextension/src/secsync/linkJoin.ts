/**
 * Joining a document through an invitation link in the browser (issue 12): the twin of
 * `join_link` in secsync_jupyter/client/links_client.py, same steps and checks. Wire format:
 * docs/protocol.md, "Links" and "Frames (issue 12)" (link connections).
 *
 *   const r = await joinThroughLink({ url, docId, secret, identity, name });
 *   // r.keyring: the epoch keys the link's lockboxes hold; r.joined: false when this
 *   // identity was a member already (nothing appended)
 *
 * 1. connect to the relay (`<url>?sessionKey=…&mode=complete`) and answer the reader
 *    challenge *as the link* (the link identity derived from the fragment's secret);
 * 2. the relay answers a `document` frame with `link: true`, the whole log and the link's
 *    own lockboxes; verify the log (its root binds the document id), check that the link is
 *    in it, not revoked (755) and not expired (754, at max(now, the head's time));
 * 3. open the link's lockboxes (a bad one is not used); the current epoch's key is needed
 *    (766);
 * 4. append an `add-member` of our own identity signed by the link (role = the link's)
 *    with a lockbox of the current key sealed to ourselves; a lost race (707 / 709) is
 *    rebuilt on the relay's newer entries; resolve on `log-entry-saved`.
 *
 * Steps 2–4 decide without I/O in `planJoin` / `planOn` (pinned with `plan_join` / `plan_on`
 * of secsync_jupyter/client/link_join.py by tests/scenarios/link-join-*.json).
 *
 * Errors are `MembershipError`s with the protocol's code: 754 expired, 755 revoked, 711 not
 * a link of this document, 722 / 72x refused by the relay, 766 no key, 706 no membership
 * support, 700 connection lost or timed out.
 */
import { b64encode } from './base64';
import type { SignatureKeyPair } from './crypto';
import type { WebSocketConstructor, WebSocketLike } from './clientOptions';
import { linkLive } from './epochs';
import { joinViaLink, linkKeyPair } from './links';
import { Keyring, Lockbox, sealLockbox } from './lockbox';
import {
  createReaderProof,
  entryToJson,
  extendLog,
  MembershipEntry,
  MembershipState,
  parseEntry,
  Role,
  verifyLog
} from './membership';
import { err, isPlainObject, MembershipError } from './membershipError';

export const MAX_JOIN_RETRIES = 5;

export interface LinkJoinOptions {
  /** ws(s)://…/<docId> (no query string) */
  url: string;
  docId: string;
  /** the link secret from the fragment (32 bytes, or its base64url form) */
  secret: Uint8Array | string;
  /** the person's own signing key pair (who joins) */
  identity: SignatureKeyPair;
  /** display name for the new member entry (null: none) */
  name?: string | null;
  /** relay authentication (not a crypto key) */
  sessionKey?: string;
  WebSocketImpl?: WebSocketConstructor;
  /** per step (default 15 s) */
  timeoutMs?: number;
  /** clock for the expiry check (ms) */
  now?: () => number;
}

export interface LinkJoinResult {
  /** the verified log after the join */
  state: MembershipState;
  /** the epoch keys the link's lockboxes hold (the current one at least, unless `joined` is false) */
  keyring: Keyring;
  /** the role we have now */
  role: Role;
  /** false: this identity was a member already, nothing was appended */
  joined: boolean;
  /** the link's public key */
  linkPubKey: string;
}

function codeOf(frame: Record<string, unknown>, fallback: number): number {
  const m = typeof frame.code === 'string' ? /^SECSYNC_ERROR_(\d+)$/.exec(frame.code) : null;
  return m ? Number(m[1]) : fallback;
}

/** A queue of the frames of one WebSocket, read one at a time with a timeout. */
class FrameReader {
  private _frames: Record<string, unknown>[] = [];
  private _waiting: ((f: Record<string, unknown> | Error) => void) | null = null;
  private _closed: Error | null = null;

  constructor(
    readonly ws: WebSocketLike,
    private readonly _timeoutMs: number
  ) {
    ws.onmessage = (ev) => {
      let frame: unknown;
      try {
        frame = JSON.parse(String(ev.data));
      } catch {
        frame = null;
      }
      if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
        this._fail(err(700, 'frame', 'the relay sent a frame that is not a JSON object'));
        return;
      }
      this._push(frame as Record<string, unknown>);
    };
    ws.onclose = () => this._fail(err(700, null, 'the relay closed the connection'));
    ws.onerror = () => this._fail(err(700, null, 'the connection to the relay failed'));
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(err(700, null, 'the relay did not answer in time')),
        this._timeoutMs
      );
      this.ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      const fail = this.ws.onerror;
      this.ws.onerror = (ev) => {
        clearTimeout(timer);
        reject(err(700, null, 'the connection to the relay failed'));
        fail?.(ev);
      };
    });
  }

  private _push(frame: Record<string, unknown>): void {
    if (this._waiting) {
      const w = this._waiting;
      this._waiting = null;
      w(frame);
    } else {
      this._frames.push(frame);
    }
  }

  private _fail(e: Error): void {
    if (this._closed) {
      return;
    }
    this._closed = e;
    if (this._waiting) {
      const w = this._waiting;
      this._waiting = null;
      w(e);
    }
  }

  /** The next frame; `unauthorized` / `document-not-found` / `document-error` throw. */
  async next(): Promise<Record<string, unknown>> {
    let frame: Record<string, unknown> | Error;
    if (this._frames.length) {
      frame = this._frames.shift() as Record<string, unknown>;
    } else if (this._closed) {
      throw this._closed;
    } else {
      frame = await new Promise<Record<string, unknown> | Error>((resolve) => {
        const timer = setTimeout(() => {
          this._waiting = null;
          resolve(err(700, null, 'the relay did not answer in time'));
        }, this._timeoutMs);
        this._waiting = (f) => {
          clearTimeout(timer);
          resolve(f);
        };
      });
    }
    if (frame instanceof Error) {
      throw frame;
    }
    const type = frame.type;
    if (type === 'unauthorized' || type === 'document-not-found' || type === 'document-error') {
      const reason = typeof frame.reason === 'string' ? frame.reason : String(type);
      throw err(codeOf(frame, 722), null, `the relay refused the link: ${reason}`);
    }
    return frame;
  }

  close(): void {
    this.ws.onmessage = null;
    this.ws.onclose = null;
    this.ws.onerror = null;
    this.ws.onopen = null;
    try {
      this.ws.close();
    } catch {
      // ignore
    }
  }
}

function addLockboxes(
  keyring: Keyring,
  state: MembershipState,
  link: SignatureKeyPair,
  boxes: unknown
): void {
  for (const raw of Array.isArray(boxes) ? boxes : []) {
    try {
      keyring.addFromLockbox(state, link, raw);
    } catch (e) {
      if (!(e instanceof MembershipError)) {
        throw e;
      }
      // a bad one is not used; the current epoch's must open below
    }
  }
}

/** What to do (planJoin / planOn): `entry` and `lockbox` to send, both null when already a member. */
export interface JoinPlan {
  state: MembershipState;
  /** the epoch keys the link's lockboxes hold */
  keyring: Keyring;
  /** the role we get (or have, when already a member) */
  role: Role;
  entry: MembershipEntry | null;
  lockbox: Lockbox | null;
}

function absentOrEmpty(v: unknown): boolean {
  return v === undefined || v === null || (Array.isArray(v) && v.length === 0);
}

/**
 * Plan the join from the link connection's `document` frame (docs/protocol.md, "Frames
 * (issue 12)", link connections) without I/O — the twin of `plan_join` in
 * secsync_jupyter/client/link_join.py, pinned by tests/scenarios/link-join-*.json:
 * `link: true`, no snapshot, no updates, the whole log (verified: 706 for a root not binding
 * `docId`), the link's own lockboxes; a frame that is not that is 701 naming the field.
 * `me`: our public key; `now`: ms.
 */
export function planJoin(
  frame: unknown,
  link: SignatureKeyPair,
  me: string,
  docId: string,
  now: number,
  options: { name?: string | null } = {}
): JoinPlan {
  if (!isPlainObject(frame) || frame.type !== 'document') {
    throw err(701, 'type', 'expected the relay’s document frame');
  }
  if (frame.link !== true) {
    throw err(701, 'link', 'the relay did not treat this connection as the link’s');
  }
  for (const field of ['snapshot', 'snapshotProofChain', 'updates']) {
    if (!absentOrEmpty(frame[field])) {
      throw err(701, field, 'a link connection gets no snapshots or updates');
    }
  }
  if ((frame.logFrom ?? 0) !== 0) {
    throw err(701, 'logFrom', 'a link connection gets the whole log');
  }
  if (!Array.isArray(frame.log)) {
    throw err(701, 'log', 'the document frame holds no log');
  }
  const boxes = frame.lockboxes ?? [];
  if (!Array.isArray(boxes)) {
    throw err(760, 'lockboxes', 'expected a list of lockboxes');
  }
  const state = verifyLog(frame.log, docId);
  const keyring = new Keyring();
  let firstError: MembershipError | null = null;
  for (const raw of boxes) {
    try {
      keyring.addFromLockbox(state, link, raw);
    } catch (e) {
      if (!(e instanceof MembershipError)) {
        throw e;
      }
      firstError = firstError ?? e; // a bad one is not used
    }
  }
  return planOn(state, keyring, link, me, now, { name: options.name, lockboxError: firstError });
}

/**
 * Plan the join on a verified log with the keys the link's lockboxes gave (also after a lost
 * race, 707 / 709, on the extended log): already a member → nothing; not a link of the log
 * 711, revoked 755, expired at max(now, the head's time) 754; no key of the current epoch →
 * the error of the link's lockbox that did not open (761 / 762 / 763 / 766) or 766. Else the
 * `add-member` (role = the link's, `at` = max(now, the head's time)) and our lockbox.
 */
export function planOn(
  state: MembershipState,
  keyring: Keyring,
  link: SignatureKeyPair,
  me: string,
  now: number,
  options: { name?: string | null; lockboxError?: MembershipError | null } = {}
): JoinPlan {
  const member = state.members.get(me);
  if (member !== undefined) {
    return { state, keyring, role: member.role, entry: null, lockbox: null };
  }
  const info = state.links.get(b64encode(link.publicKey));
  if (info === undefined) {
    throw err(711, 'signer', 'this link is not in the document’s log');
  }
  if (info.removed !== undefined) {
    throw err(755, 'signer', 'the link was revoked');
  }
  const at = Math.max(now, state.headAt);
  if (!linkLive(info, at)) {
    throw err(754, 'signer', 'the link has expired');
  }
  if (!keyring.has(state.epoch)) {
    if (options.lockboxError) {
      throw options.lockboxError;
    }
    throw err(766, 'epoch', `no lockbox of the link opens the current epoch ${state.epoch}`);
  }
  const { entry } = joinViaLink(state, link, me, null, { name: options.name ?? null, at });
  const lockbox = sealLockbox(state.docId, state.epoch, keyring.key(state.epoch), me);
  return { state, keyring, role: info.role, entry, lockbox };
}

/** Join `docId` through an invitation link as `identity` (see the module header). */
export async function joinThroughLink(options: LinkJoinOptions): Promise<LinkJoinResult> {
  const { docId, identity } = options;
  const now = options.now ?? (() => Date.now());
  const link = linkKeyPair(options.secret);
  const linkPubKey = b64encode(link.publicKey);
  const me = b64encode(identity.publicKey);
  const Impl =
    options.WebSocketImpl ??
    ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined);
  if (!Impl) {
    throw err(700, null, 'no WebSocket implementation available');
  }
  const params = { sessionKey: options.sessionKey ?? '', mode: 'complete' };
  const query = Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
  const reader = new FrameReader(
    new Impl(`${options.url.replace(/\/+$/, '')}?${query}`),
    options.timeoutMs ?? 15000
  );
  try {
    await reader.opened();
    let frame = await reader.next();
    if (frame.type !== 'reader-challenge' || typeof frame.nonce !== 'string') {
      throw err(706, null, 'the relay did not challenge the link (no membership support)');
    }
    reader.ws.send(JSON.stringify(createReaderProof(link, docId, frame.nonce)));
    while (frame.type !== 'document') {
      frame = await reader.next();
    }
    let plan = planJoin(frame, link, me, docId, now(), { name: options.name ?? null });
    let { state } = plan;
    const { keyring } = plan;
    for (let attempt = 0; attempt <= MAX_JOIN_RETRIES; attempt++) {
      const { entry, lockbox } = plan;
      if (entry === null || lockbox === null) {
        // joined before (or added otherwise): our own lockboxes come when we connect as ourselves
        return { state, keyring, role: plan.role, joined: false, linkPubKey };
      }
      reader.ws.send(
        JSON.stringify({ type: 'log-entry', entry: entryToJson(entry), lockboxes: [lockbox] })
      );
      let retry = false;
      while (!retry) {
        const answer = await reader.next();
        const kind = answer.type;
        if (kind === 'log-entry-saved' && answer.hash === entry.hash) {
          state = extendLog(state, [entryToJson(entry)]);
          return { state, keyring, role: plan.role, joined: true, linkPubKey };
        }
        if (kind === 'log-entry') {
          // someone else's entry: follow the log
          state = extendLog(state, [parseEntry(answer.entry)]);
          continue;
        }
        if (kind === 'lockbox') {
          addLockboxes(keyring, state, link, [answer.lockbox]);
          continue;
        }
        if (kind === 'log-entry-failed') {
          const code = codeOf(answer, 700);
          const log = answer.log;
          if ((code === 707 || code === 709) && Array.isArray(log)) {
            const fresh = log.filter((e) => parseEntry(e).seq > state.head.seq);
            state = extendLog(state, fresh);
            plan = planOn(state, keyring, link, me, now(), { name: options.name ?? null });
            retry = true; // rebuild on the new head
            continue;
          }
          const reason = typeof answer.reason === 'string' ? answer.reason : String(answer.code);
          throw err(code, null, `the relay refused the join: ${reason}`);
        }
      }
    }
    throw err(707, null, 'the join lost too many races');
  } finally {
    reader.close();
  }
}

/** The protocol code of a join error (e.g. 754), or null. */
export function joinErrorCode(error: unknown): number | null {
  const code = (error as { code?: unknown })?.code;
  const m = typeof code === 'string' ? /^SECSYNC_ERROR_(\d+)$/.exec(code) : null;
  return m ? Number(m[1]) : null;
}
