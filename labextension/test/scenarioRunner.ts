/**
 * Runs one shared conformance scenario (tests/scenarios/*.json, format in its README.md)
 * through the browser's sans-IO SyncEngine — the twin of the Runner in
 * tests/client/test_scenarios.py, which runs the same files through engine.py.
 */
import { HEADS_PREFIX, isHeadsContent } from '../src/secsync/engineHeads';
import { isDeepStrictEqual } from 'node:util';
import * as Y from 'yjs';
import {
  b64decode,
  b64encode,
  backoffDelay,
  canonicalizeAndToBase64,
  createEphemeralMessage,
  createSignatureKeyPair,
  decryptAead,
  defaultSnapshotPolicy,
  deserializeUpdates,
  EphemeralMessage,
  EphemeralMessageType,
  EphemeralSession,
  KnownSnapshot,
  SignatureKeyPair,
  SnapshotPolicyInfo,
  SyncEngine,
  verifyAndDecryptEphemeralMessage,
  verifyAndDecryptSnapshot,
  verifyAndDecryptUpdate,
  YDocAdapter
} from '../src/secsync';
import { entryToJson, extendLog, verifyReaderProof } from '../src/secsync/membership';
import { MembershipError } from '../src/secsync/membershipError';
import { linkKeyPair } from '../src/secsync/links';
import { JoinPlan, planJoin, planOn } from '../src/secsync/linkJoin';
import { EpochKeys, MemoryKeyringStore } from '../src/secsync/engineEpochs';
import { Keyring, openLockbox } from '../src/secsync/lockbox';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

const EPHEMERAL_TYPES: Record<number, EphemeralMessageType> = {
  1: 'initialize',
  2: 'proofAndRequestProof',
  3: 'proof',
  4: 'message'
};

class Fault extends Error {}

/** The Y.Doc adapter, with hooks a scenario can make fail. */
class FaultyAdapter extends YDocAdapter {
  constructor(
    doc: Y.Doc,
    private readonly faults: Set<string>,
    onLocalUpdate: (update: Uint8Array) => void,
    onEphemeral: (content: Uint8Array, author: string) => void
  ) {
    super(doc, onLocalUpdate, onEphemeral);
  }

  private check(hook: string): void {
    if (this.faults.has(hook)) {
      throw new Fault(`${hook} failed (scenario fault)`);
    }
  }

  applySnapshot(content: Uint8Array): void {
    this.check('applySnapshot');
    super.applySnapshot(content);
  }

  applyChanges(changes: Uint8Array[]): void {
    this.check('applyChanges');
    super.applyChanges(changes);
  }

  serializeChanges(changes: Uint8Array[]): Uint8Array {
    this.check('serializeChanges');
    return super.serializeChanges(changes);
  }

  deserializeChanges(data: Uint8Array): Uint8Array[] {
    this.check('deserializeChanges');
    return super.deserializeChanges(data);
  }

  snapshotContent(): Uint8Array {
    this.check('snapshotContent');
    return super.snapshotContent();
  }

  applyEphemeral(content: Uint8Array, author: string): void {
    this.check('applyEphemeral');
    super.applyEphemeral(content, author);
  }
}

/** A peer's side of the ephemeral handshake, played by the runner. */
class Peer {
  readonly session: EphemeralSession;
  readonly sent: Json[] = [];

  constructor(
    readonly docId: string,
    readonly key: Uint8Array,
    readonly keys: SignatureKeyPair,
    sessionId: string,
    counter: number
  ) {
    this.session = { id: sessionId, counter, validSessions: {}, seenCounters: new Map() };
  }

  make(content: Uint8Array, type: EphemeralMessageType): Json {
    const message = createEphemeralMessage(
      content,
      type,
      { docId: this.docId, pubKey: b64encode(this.keys.publicKey) },
      this.key,
      this.keys,
      this.session.id,
      this.session.counter
    );
    this.session.counter += 1;
    const frame = { ...message, type: 'ephemeral-message' };
    this.sent.push(frame);
    return frame;
  }

  /** The answer to one of the engine's messages (null: none). */
  answer(message: EphemeralMessage): Json | null {
    const outcome = verifyAndDecryptEphemeralMessage(message, {
      key: this.key,
      currentDocId: this.docId,
      session: this.session,
      signatureKeyPair: this.keys,
      strictDocId: true
    });
    if (outcome.error !== null) {
      throw new Error(`the peer rejected the engine's message: ${outcome.error.message}`);
    }
    if (outcome.proof === undefined) {
      return null;
    }
    return this.make(outcome.proof, outcome.requestProof ? 'proofAndRequestProof' : 'proof');
  }
}

/** A code outside the reference numbering is `null` in the scenarios (see README). */
function codeOf(error: { code: string }): string | null {
  return error.code === 'SECSYNC_ERROR_PROTOCOL' ? null : error.code;
}

function textOf(state?: Uint8Array): { doc: Y.Doc; text: Y.Text } {
  const doc = new Y.Doc();
  const text = doc.getText('content');
  if (state !== undefined) {
    Y.applyUpdate(doc, state);
  }
  return { doc, text };
}

function assertEqual(got: unknown, want: unknown, what: string): void {
  if (!isDeepStrictEqual(got, want)) {
    throw new Error(`${what}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
}

function kindOf(frame: Json): string {
  if (frame.type === 'reader-proof' || frame.type === 'log-entry') {
    return frame.type;
  }
  const pd = frame.publicData ?? {};
  if ('snapshotId' in pd) {
    return 'snapshot';
  }
  if ('refSnapshotId' in pd) {
    return 'update';
  }
  return 'ephemeral';
}

export class ScenarioRunner {
  /** the nonce of the latest reader-challenge fed to the engine */
  challenge: string | null = null;
  /** the code an `appendEntry` step threw (undefined: none) */
  thrown: string | null | undefined = undefined;
  readonly docId: string;
  readonly key: Uint8Array;
  readonly signers: Record<string, SignatureKeyPair> = {};
  readonly bindings: Record<string, unknown> = {};
  readonly names: Record<string, string> = {};
  readonly faults = new Set<string>();
  readonly delivered: [string, string][] = [];
  readonly doc: Y.Doc;
  readonly text: Y.Text;
  readonly engine: SyncEngine<Uint8Array>;
  readonly peers: Record<string, Peer> = {};
  private events: [string, Record<string, unknown>][] = [];
  private mirror = textOf();
  private readonly engineEphemeral: Json[] = [];
  /** issue 12: the scenario's epoch keys (epoch 0: `key`) */
  readonly epochKeys = new Map<number, Uint8Array>();

  constructor(readonly scenario: Json) {
    this.docId = scenario.docId;
    this.key = b64decode(scenario.key);
    for (const [name, k] of Object.entries<Json>(scenario.keys)) {
      const keys = createSignatureKeyPair(hexToBytes(k.seed));
      assertEqual(b64encode(keys.publicKey), k.pubKey, `public key of ${name}`);
      this.signers[name] = keys;
      this.bindings[name] = k.pubKey;
      this.names[k.pubKey] = name;
    }
    const client = scenario.client;
    this.doc = new Y.Doc();
    this.doc.clientID = client.clientId;
    this.text = this.doc.getText('content');
    if (client.initialState) {
      Y.applyUpdate(this.doc, b64decode(client.initialState));
    }
    const adapter = new FaultyAdapter(
      this.doc,
      this.faults,
      (update) => this.engine.addChanges([update]),
      (content, author) => this.delivered.push([b64encode(content), this.names[author] ?? author])
    );
    const allowed: Set<string> | null =
      client.allowedClients == null
        ? null
        : new Set<string>(client.allowedClients.map((n: string) => this.bindings[n] as string));
    const policy = client.snapshotPolicy;
    this.epochKeys.set(0, this.key);
    for (const [e, k] of Object.entries<string>(scenario.epochKeys ?? {})) {
      this.epochKeys.set(Number(e), b64decode(k));
    }
    let epochs: EpochKeys | null = null;
    if (client.epochs != null) {
      const store = new MemoryKeyringStore();
      store.data.set(this.docId, { keys: client.epochs.keyring ?? {}, seen: client.epochs.seen ?? null });
      epochs = new EpochKeys(this.docId, this.signers[client.signer], {
        store,
        keyring: Keyring.fromJson(client.epochs.given ?? {}),
        epoch0FromLockbox: client.epochs.epoch0FromLockbox ?? false
      });
    }
    this.engine = new SyncEngine<Uint8Array>(
      this.docId,
      () => {
        if (this.faults.has('key')) {
          throw new Fault('key lookup failed (scenario fault)');
        }
        return this.key;
      },
      adapter,
      this.signers[client.signer],
      {
        snapshotPolicy:
          policy == null
            ? undefined
            : (info: SnapshotPolicyInfo) =>
                info.updatesSinceSnapshot >= (policy.maxUpdates ?? Infinity) ||
                info.updateBytesSinceSnapshot >= (policy.maxUpdateBytes ?? Infinity),
        isValidClient: (pubKey: string) => {
          if (this.faults.has('isValidClient')) {
            throw new Fault('author check failed (scenario fault)');
          }
          return allowed === null || allowed.has(pubKey);
        },
        knownSnapshot: client.knownSnapshot ? KnownSnapshot.fromJSON(client.knownSnapshot) : null,
        loadMode: client.loadMode ?? 'delta',
        writeHeads: client.writeHeads ?? false,
        knownLogHead: client.knownLogHead ?? null,
        rootEntry: client.logRoot ?? null,
        remembered: client.remembered ?? null,
        epochs,
        onEvent: (event, data) => this.events.push([event, data])
      }
    );
    for (const [name, p] of Object.entries<Json>(scenario.peers ?? {})) {
      this.peers[name] = new Peer(
        p.docId ?? this.docId,
        p.key ? b64decode(p.key) : this.key,
        this.signers[p.signer],
        p.sessionId,
        p.counter
      );
    }
  }

  /** `"$name"` → its binding, in values and object keys. */
  sub(value: Json): Json {
    if (typeof value === 'string' && value.startsWith('$')) {
      const name = value.slice(1);
      if (!(name in this.bindings)) {
        throw new Error(`unbound ${value}`);
      }
      return this.bindings[name];
    }
    if (Array.isArray(value)) {
      return value.map((v) => this.sub(v));
    }
    if (value !== null && typeof value === 'object') {
      const out: Record<string, Json> = {};
      for (const [k, v] of Object.entries(value)) {
        out[this.sub(k)] = this.sub(v);
      }
      return out;
    }
    return value;
  }

  run(): void {
    this.scenario.steps.forEach((step: Json, index: number) => {
      try {
        this.step(step);
      } catch (err) {
        const what = JSON.stringify(step).slice(0, 300);
        throw new Error(`${this.scenario.name} step ${index} (${what}): ${(err as Error).message}`);
      }
    });
  }

  private feed(frame: Json | string): void {
    this.engine.receive(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  step(step: Json): void {
    this.events = [];
    const engine = this.engine;
    let result: unknown = undefined;
    this.thrown = undefined;
    switch (step.do) {
      case 'connect':
        engine.connecting();
        engine.connected();
        break;
      case 'disconnect':
        engine.disconnected();
        break;
      case 'close':
        engine.close();
        break;
      case 'receive': {
        const mirror = step.mirror ?? {};
        if (mirror.reset !== undefined) {
          this.mirror = textOf(b64decode(mirror.reset));
        }
        for (const update of mirror.apply ?? []) {
          Y.applyUpdate(this.mirror.doc, b64decode(update));
        }
        if (step.frame?.type === 'reader-challenge') {
          this.challenge = step.frame.nonce;
        }
        this.feed(step.frame !== undefined ? this.sub(step.frame) : step.text);
        break;
      }
      case 'edit':
        this.doc.transact(() => {
          if (step.insert !== undefined) {
            this.text.insert(step.insert[0], step.insert[1]);
          } else {
            this.text.delete(step.delete[0], step.delete[1]);
          }
        });
        break;
      case 'appendEntry':
        try {
          engine.log?.appendEntry(this.sub(step.entry), step.lockboxes ?? null);
          if (engine.log === null) {
            throw new Error('appendEntry on a document without a log');
          }
        } catch (exc) {
          const code = (exc as { code?: string }).code;
          if (step.expect?.throws === undefined) {
            throw exc;
          }
          this.thrown = code ?? null;
        }
        break;
      case 'flush':
        engine.flush();
        break;
      case 'requestSnapshot':
        engine.requestSnapshot();
        break;
      case 'sendEphemeral':
        result = engine.sendEphemeral(b64decode(step.content));
        break;
      case 'addEpochKey':
        engine.epochs?.addKey(step.epoch, b64decode(step.key));
        break;
      case 'fault':
        if (step.on) {
          this.faults.add(step.hook);
        } else {
          this.faults.delete(step.hook);
        }
        break;
      case 'peer':
        this.peerStep(step);
        break;
      case 'tick':
        engine.tick(step.now);
        break;
      case 'backoff':
        result = backoffDelay(step.retries);
        break;
      case 'policy':
        result = defaultSnapshotPolicy({
          activeSnapshotId: 's',
          updatesSinceSnapshot: step.info.updatesSinceSnapshot,
          updateBytesSinceSnapshot: step.info.updateBytesSinceSnapshot,
          pendingChanges: 1
        });
        break;
      default:
        throw new Error(`unknown step ${step.do}`);
    }
    this.check(step.expect ?? {}, engine.takeOutbox(), result);
  }

  private peerStep(step: Json): void {
    const peer = this.peers[step.peer];
    if (step.send !== undefined) {
      const content = step.send === 'initialize' ? new Uint8Array() : b64decode(step.content);
      this.feed(peer.make(content, step.send));
    } else if (step.answer) {
      if (this.engineEphemeral.length === 0) {
        throw new Error('the engine sent no ephemeral message to answer');
      }
      const reply = peer.answer(this.engineEphemeral[this.engineEphemeral.length - 1]);
      if (reply !== null) {
        this.feed(reply);
      }
    } else {
      this.feed(peer.sent[peer.sent.length - step.replay]);
    }
  }

  private check(expect: Json, frames: string[], result: unknown): void {
    this.checkSent(this.sub(expect.sent ?? []), frames.map((f) => JSON.parse(f)));
    const e = this.engine;
    const actual: Record<string, () => unknown> = {
      state: () => e.state,
      documentState: () => e.documentState,
      errors: () => e.errors.map(codeOf),
      ephemeralErrors: () => e.ephemeralErrors.map(codeOf),
      ephemeralAuthoringErrors: () => e.ephemeralAuthoringErrors.map(codeOf),
      reconnectRequested: () => e.reconnectRequested,
      isSynced: () => e.isSynced,
      servedIncompletely: () => e.servedIncompletely,
      pending: () => e.pending.length,
      text: () => this.text.toString(),
      delivered: () => this.delivered,
      activeSnapshot: () => (e.active !== null ? e.active.snapshotId : null),
      activeClocks: () => (e.active !== null ? { ...e.active.updateClocks } : null),
      connectionParams: () => {
        const params: Record<string, unknown> = { ...e.connectionParams() };
        if (typeof params.knownSnapshotUpdateClocks === 'string') {
          params.knownSnapshotUpdateClocks = JSON.parse(params.knownSnapshotUpdateClocks);
        }
        return params;
      },
      returns: () => result,
      throws: () => this.thrown,
      role: () => e.log?.role ?? null,
      readOnly: () => (e.log !== null ? e.log.readOnly : false),
      logHead: () => e.log?.head() ?? null,
      rememberedLog: () => {
        // how many log entries the state to remember holds (null: no state or no log)
        const state = e.rememberedState();
        return state?.log !== undefined ? state.log.length : null;
      },
      // issue 13: the remembered state given could not be adopted (807)
      rememberedDamaged: () => e.rememberedDamaged !== null,
      // the active snapshot of the state to remember (null: no state or no snapshot)
      rememberedSnapshot: () => e.rememberedState()?.snapshot?.snapshotId ?? null,
      keyringEpochs: () => e.epochs?.keyring.epochs ?? null,
      seenEpoch: () => e.epochs?.seen ?? null
    };
    for (const [field, raw] of Object.entries<Json>(expect)) {
      const want = this.sub(raw);
      if (field === 'sent') {
        continue;
      } else if (field === 'events') {
        this.checkEvents(want);
      } else if (field === 'delayMs') {
        const got = result as number;
        if (Math.abs(got - want) > 1e-9 * Math.max(1, Math.abs(want))) {
          throw new Error(`delay ${got} != ${want}`);
        }
      } else if (field === 'snapshot') {
        assertEqual(result, want, 'snapshot policy');
      } else {
        if (!(field in actual)) {
          throw new Error(`unknown expectation ${field}`);
        }
        assertEqual(actual[field](), want, field);
      }
    }
  }

  private checkEvents(want: [string, Record<string, unknown>][]): void {
    const got = this.events.map(([event, data]): [string, Record<string, unknown>] => {
      if (event === 'error') {
        return [event, { code: codeOf(data.error as { code: string }), fatal: data.fatal }];
      }
      return [event, data];
    });
    assertEqual(
      got.map(([n]) => n),
      want.map(([n]) => n),
      `events ${JSON.stringify(got)}`
    );
    got.forEach(([event, fields], i) => {
      for (const [k, v] of Object.entries(want[i][1])) {
        assertEqual(fields[k], v, `event ${event}.${k}`);
      }
    });
  }

  private checkSent(expected: Json[], frames: Json[]): void {
    assertEqual(
      frames.map(kindOf),
      expected.map((x) => x.kind),
      `sent (expected ${JSON.stringify(expected)})`
    );
    expected.forEach((want, i) => {
      const frame = frames[i];
      if (want.kind === 'reader-proof') {
        if (this.challenge === null) {
          throw new Error('a reader proof without a challenge');
        }
        assertEqual(verifyReaderProof(frame, this.docId, this.challenge), want.pubKey, 'reader proof by');
        assertEqual(Object.keys(frame).sort(), ['pubKey', 'signature', 'type'], 'reader proof fields');
        return;
      }
      if (want.kind === 'log-entry') {
        const lockboxes = want.lockboxes !== undefined ? { lockboxes: want.lockboxes } : {};
        assertEqual(frame, { type: 'log-entry', entry: want.entry, ...lockboxes }, 'log-entry frame');
        return;
      }
      const key = this.epochKeys.get(want.epoch ?? 0) as Uint8Array; // issue 12: the epoch's key
      if (want.kind === 'ephemeral') {
        for (const [k, v] of Object.entries(want.publicData ?? {})) {
          assertEqual(frame.publicData[k], this.sub(v), `publicData.${k}`);
        }
        this.engineEphemeral.push(frame);
        const plaintext = decryptAead(
          b64decode(frame.ciphertext),
          canonicalizeAndToBase64(frame.publicData),
          key,
          frame.nonce
        );
        assertEqual(EPHEMERAL_TYPES[plaintext[0]], want.ephemeralType, 'ephemeral type');
        if (want.content !== undefined) {
          assertEqual(b64encode(plaintext.slice(1 + 24 + 4)), want.content, 'ephemeral content');
        }
        if (want.heads !== undefined) {
          const content = plaintext.slice(1 + 24 + 4);
          assertEqual(isHeadsContent(content), true, 'a heads message');
          assertEqual(JSON.parse(new TextDecoder().decode(content.slice(HEADS_PREFIX.length))), want.heads, 'heads');
        }
        return;
      }
      const pd = frame.publicData;
      for (const [k, v] of Object.entries(want.publicData ?? {})) {
        assertEqual(pd[k], this.sub(v), `publicData.${k}`);
      }
      if (want.kind === 'snapshot') {
        const result = verifyAndDecryptSnapshot(frame, {
          key: this.epochKeys.get(pd.epoch ?? 0) as Uint8Array,
          currentDocId: this.docId,
          currentClientPublicKey: pd.pubKey
        });
        if (result.error !== null) {
          throw new Error(`sent snapshot does not verify: ${result.error.message}`);
        }
        if (want.bind !== undefined) {
          this.bindings[want.bind] = pd.snapshotId;
        }
        this.mirror = textOf(result.content);
      } else {
        const result = verifyAndDecryptUpdate(frame, {
          key,
          currentDocId: this.docId,
          currentActiveSnapshotId: pd.refSnapshotId,
          currentClock: pd.clock - 1
        });
        if (result.error !== null) {
          throw new Error(`sent update does not verify: ${result.error.message}`);
        }
        const changes = deserializeUpdates(result.content);
        if (want.changes !== undefined) {
          assertEqual(changes.length, want.changes, 'changes in the update');
        }
        for (const change of changes) {
          Y.applyUpdate(this.mirror.doc, change);
        }
      }
      if (want.text !== undefined) {
        assertEqual(this.mirror.text.toString(), want.text, `${want.kind} content`);
      }
    });
  }
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** A link join's plan against `expect` (tests/scenarios/README.md, "Joining through a link"). */
function checkPlan(plan: JoinPlan, want: Json, joiner: SignatureKeyPair): void {
  const head = plan.state.head;
  expectEqual({ seq: head.seq, hash: head.hash }, want.logHead, 'logHead');
  expectEqual(plan.entry !== null, want.joined, 'joined');
  expectEqual(plan.role, want.role, 'role');
  expectEqual(plan.keyring.epochs, want.keyringEpochs, 'keyringEpochs');
  expectEqual(plan.entry ? entryToJson(plan.entry) : null, want.entry, 'entry');
  if (want.lockbox === null) {
    expectEqual(plan.lockbox, null, 'lockbox');
    return;
  }
  const box = JSON.parse(JSON.stringify(plan.lockbox));
  expectEqual(Object.keys(box).sort(), ['box', 'docId', 'epoch', 'recipient'], 'lockbox fields');
  expectEqual(
    [box.docId, box.epoch, box.recipient],
    [plan.state.docId, want.lockbox.epoch, want.lockbox.recipient],
    'lockbox'
  );
  // sealed to the joiner itself: it opens with the joiner's key and holds the epoch's key
  expectEqual(b64encode(openLockbox(plan.state, joiner, box)), want.lockbox.key, 'lockbox key');
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(
      `${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`
    );
  }
}

/** A `"kind": "link-join"` scenario through `planJoin` (and `planOn` after a race). */
export function runLinkJoin(sc: Json): void {
  const link = linkKeyPair(sc.link.secret);
  const joiner = createSignatureKeyPair(hexToBytes(sc.joiner.seed));
  const me = b64encode(joiner.publicKey);
  expectEqual(me, sc.joiner.pubKey, 'joiner');
  const want = sc.expect;
  const options = { name: sc.memberName };
  if ('error' in want) {
    let caught: unknown = null;
    try {
      planJoin(sc.frame, link, me, sc.docId, sc.now, options);
    } catch (e) {
      caught = e;
    }
    if (!(caught instanceof MembershipError)) {
      throw new Error(`expected ${want.error}, got ${String(caught)}`);
    }
    expectEqual(caught.code, want.error, 'error');
    expectEqual(caught.field, want.field, 'field');
    expectEqual(caught.message.trim().length > 0, true, 'error in words');
    return;
  }
  const plan = planJoin(sc.frame, link, me, sc.docId, sc.now, options);
  checkPlan(plan, want, joiner);
  if (sc.race) {
    // log-entry-failed 707 with the relay's log: rebuild on the new head
    const state = extendLog(
      plan.state,
      sc.race.log.filter((e: Json) => e.seq > plan.state.head.seq)
    );
    const again = planOn(state, plan.keyring, link, me, sc.race.now, options);
    checkPlan(again, sc.race.expect, joiner);
  }
}
