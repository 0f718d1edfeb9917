/**
 * The membership log of a document, identities and reader proofs: the TypeScript twin of
 * secsync_jupyter/protocol/membership.py and identity.py (same functions, same checks in the
 * same order, same error codes and fields). Both pass tests/vectors/membership-vectors.json.
 * The wire format is in docs/protocol.md, section "Membership log".
 *
 * In short: an entry is a flat JSON object, signed with Ed25519 over
 * `"secsync_jupyter_membership_entry" + canon(entry without "signature")`; its hash is
 * `b64(BLAKE2b-256(canon(entry)))`. The `create` entry makes its signer the first admin, and
 * the document id of a document with a log is `"m1_" + hash(root)`.
 *
 * Issue 12 adds the kinds `rotate-key`, `add-link`, `remove-link` (their rules are in
 * epochs.ts; lockboxes and rotation in lockbox.ts, link secrets in links.ts; vectors in
 * tests/vectors/epoch-vectors.json). The state and its builder live in membershipState.ts,
 * reader proofs in readerProof.ts; this module re-exports both, so its exports are unchanged.
 *
 * Every function throws `MembershipError` (a `SecsyncError` with code 700–799, `field` and,
 * for whole logs, `index`) for bad input; nothing else.
 */
export * from './identity';
export { MembershipError } from './membershipError';
export { MembershipState } from './membershipState';
export type { EpochInfo, LogHead, Link, Member } from './membershipState';
export * from './readerProof';
import { b64decode, b64encode } from './base64';
import { canonicalizeStrict } from './canonical';
import { SignatureKeyPair } from './crypto';
import { DOC_ID_PATTERN as DOC_ID_RE } from './ids';
import { checkDisplayName, checkPoint, Identity, keyBytes } from './identity';
import { b64Field, err, has, intValue, isPlainObject, MembershipError } from './membershipError';
import { Builder, LogHead, MembershipState } from './membershipState';
import { sodium, utf8Encode } from './sodium';

export const LOG_FORMAT_VERSION = 1;
export const DOMAIN_MEMBERSHIP_ENTRY = 'secsync_jupyter_membership_entry';
export const LOG_DOC_ID_PREFIX = 'm1_';
export const ROLES = ['viewer', 'editor', 'admin'] as const;
export const KINDS = [
  'create',
  'add-member',
  'set-role',
  'remove-member',
  // issue 12 (key epochs and links: epochs.ts, lockbox.ts, links.ts)
  'rotate-key',
  'add-link',
  'remove-link'
] as const;
export const MAX_LOG_ENTRIES = 100000;
const ROOT_NONCE_BYTES = 24;

export type Role = (typeof ROLES)[number];
export type EntryKind = (typeof KINDS)[number];

const RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 }; // role names (parse)
const LOG_DOC_ID_RE = /^m1_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const COMMON = ['v', 'kind', 'seq', 'prev', 'signer', 'at', 'signature'];
const REQUIRED: Record<EntryKind, string[]> = {
  create: [...COMMON, 'nonce'],
  'add-member': [...COMMON, 'docId', 'target', 'role'],
  'set-role': [...COMMON, 'docId', 'target', 'role'],
  'remove-member': [...COMMON, 'docId', 'target'],
  'rotate-key': [...COMMON, 'docId', 'epoch', 'keyCheck', 'lockboxHash'],
  'add-link': [...COMMON, 'docId', 'target', 'role', 'label'],
  'remove-link': [...COMMON, 'docId', 'target']
};
const OPTIONAL: Partial<Record<EntryKind, string[]>> = {
  create: ['name'],
  'add-member': ['name'],
  'add-link': ['expiresAt']
};
const EPOCH_KINDS = new Set<string>(['rotate-key', 'add-link', 'remove-link']); // parse


// ---------------------------------------------------------------------------------------
// entries
// ---------------------------------------------------------------------------------------

export interface MembershipEntry {
  v: number;
  kind: EntryKind;
  seq: number;
  prev: string;
  signer: string;
  at: number;
  signature: string;
  docId?: string;
  target?: string;
  role?: Role;
  name?: string;
  nonce?: string;
  /** issue 12: rotate-key */
  epoch?: number;
  keyCheck?: string;
  lockboxHash?: string;
  /** issue 12: add-link */
  label?: string;
  expiresAt?: number;
  /** b64(BLAKE2b-256(canon(entry))): what the next entry's `prev` names */
  hash: string;
  /** the exact bytes the signature covers */
  signedBytes: Uint8Array;
}

const PARSED = new WeakSet<object>();

/** The wire form of an entry (a fresh object). */
export function entryToJson(e: MembershipEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { v: e.v, kind: e.kind };
  if (e.docId !== undefined) {
    out.docId = e.docId;
  }
  out.seq = e.seq;
  out.prev = e.prev;
  out.signer = e.signer;
  for (const key of [
    'target',
    'role',
    'name',
    'nonce',
    'epoch',
    'keyCheck',
    'lockboxHash',
    'label',
    'expiresAt'
  ] as const) {
    if (e[key] !== undefined) {
      out[key] = e[key];
    }
  }
  out.at = e.at;
  out.signature = e.signature;
  return out;
}

function getField(obj: Record<string, unknown>, name: string, required: Set<string>): unknown {
  const value = has(obj, name) ? obj[name] : undefined;
  if ((value === undefined || value === null) && required.has(name)) {
    throw err(701, name, has(obj, name) ? 'must not be null' : 'missing field');
  }
  return value === null ? undefined : value;
}

function unsignedFields(e: Omit<MembershipEntry, 'signature' | 'hash' | 'signedBytes'>) {
  const out = entryToJson({ ...e, signature: '', hash: '', signedBytes: new Uint8Array() });
  delete out.signature;
  return out;
}

/**
 * Parse one entry strictly: 701 (naming the field) for anything malformed, 702 for another
 * format version, 703 for an unknown kind. Does not check the signature. Fields are checked
 * in the order of the Python twin (v, kind, unknown fields, docId, seq, prev, signer, target,
 * role, name, nonce, at, signature).
 */
export function parseEntry(obj: unknown): MembershipEntry {
  if (typeof obj === 'object' && obj !== null && PARSED.has(obj)) {
    return obj as MembershipEntry;
  }
  if (!isPlainObject(obj)) {
    throw err(701, 'entry', 'expected a JSON object');
  }
  if (!has(obj, 'v')) {
    throw err(701, 'v', 'missing field');
  }
  if (intValue(obj.v, 'v') !== LOG_FORMAT_VERSION) {
    throw err(702, 'v');
  }
  const kind = has(obj, 'kind') ? obj.kind : undefined;
  if (typeof kind !== 'string') {
    const missing = kind === undefined || kind === null;
    throw err(701, 'kind', missing ? 'missing field' : 'expected a string');
  }
  if (!(KINDS as readonly string[]).includes(kind)) {
    throw err(703, 'kind');
  }
  const k = kind as EntryKind;
  const required = new Set(REQUIRED[k]);
  const allowed = new Set([...REQUIRED[k], ...(OPTIONAL[k] ?? [])]);
  const unknown = Object.keys(obj).filter((key) => !allowed.has(key));
  if (unknown.length) {
    throw err(701, unknown.sort()[0].slice(0, 64), 'unknown field');
  }
  const create = k === 'create';
  const docId = getField(obj, 'docId', required);
  if (docId !== undefined && (typeof docId !== 'string' || !DOC_ID_RE.test(docId))) {
    throw err(701, 'docId', 'expected a document id');
  }
  const seq = intValue(getField(obj, 'seq', required), 'seq');
  if ((seq === 0) !== create) {
    throw err(701, 'seq', '0 for create, at least 1 for any other kind');
  }
  const prev = getField(obj, 'prev', required);
  if (create) {
    if (prev !== '') {
      throw err(701, 'prev', 'must be "" for create');
    }
  } else {
    b64Field(prev, 'prev', 32);
  }
  const signer = b64Field(getField(obj, 'signer', required), 'signer', 32);
  const target = getField(obj, 'target', required);
  if (target !== undefined) {
    b64Field(target, 'target', 32);
  }
  const role = getField(obj, 'role', required);
  if (role !== undefined && !(typeof role === 'string' && has(RANK, role))) {
    throw err(701, 'role', 'expected one of ' + ROLES.join(', '));
  }
  if (has(obj, 'name')) {
    const reason = checkDisplayName(obj.name);
    if (reason) {
      throw err(701, 'name', reason);
    }
  }
  const nonce = getField(obj, 'nonce', required);
  if (nonce !== undefined) {
    b64Field(nonce, 'nonce', ROOT_NONCE_BYTES);
  }
  const extra = EPOCH_KINDS.has(k) ? parseExtra(obj, required) : {};
  const at = intValue(getField(obj, 'at', required), 'at');
  const signature = b64Field(getField(obj, 'signature', required), 'signature', 64);
  const base = {
    v: LOG_FORMAT_VERSION,
    kind: k,
    seq,
    prev: prev as string,
    signer,
    at,
    ...(docId !== undefined ? { docId: docId as string } : {}),
    ...(target !== undefined ? { target: target as string } : {}),
    ...(role !== undefined ? { role: role as Role } : {}),
    ...(has(obj, 'name') ? { name: obj.name as string } : {}),
    ...(nonce !== undefined ? { nonce: nonce as string } : {}),
    ...extra
  };
  const unsigned = unsignedFields(base);
  const signedBytes = utf8Encode(DOMAIN_MEMBERSHIP_ENTRY + canonicalizeStrict(unsigned));
  const full = utf8Encode(canonicalizeStrict({ ...unsigned, signature }));
  const entry: MembershipEntry = {
    ...base,
    signature,
    hash: b64encode(sodium().crypto_generichash(32, full)),
    signedBytes
  };
  Object.freeze(entry);
  PARSED.add(entry);
  return entry;
}

/**
 * The issue-12 fields, in the parse order: epoch, keyCheck, lockboxHash, label, expiresAt
 * (each present only in the kinds that allow it: unknown fields were refused).
 */
function parseExtra(obj: Record<string, unknown>, required: Set<string>): Partial<MembershipEntry> {
  const out: Partial<MembershipEntry> = {};
  const epoch = getField(obj, 'epoch', required);
  if (epoch !== undefined) {
    out.epoch = intValue(epoch, 'epoch');
    if (out.epoch < 1) {
      throw err(701, 'epoch', 'a rotation makes epoch 1 or later');
    }
  }
  const keyCheck = getField(obj, 'keyCheck', required);
  if (keyCheck !== undefined) {
    out.keyCheck = b64Field(keyCheck, 'keyCheck', 32);
  }
  const lockboxHash = getField(obj, 'lockboxHash', required);
  if (lockboxHash !== undefined) {
    out.lockboxHash = b64Field(lockboxHash, 'lockboxHash', 32);
  }
  const label = getField(obj, 'label', required);
  if (label !== undefined) {
    const reason = checkDisplayName(label);
    if (reason) {
      throw err(701, 'label', reason);
    }
    out.label = label as string;
  }
  if (has(obj, 'expiresAt')) {
    if (obj.expiresAt === null) {
      throw err(701, 'expiresAt', 'must not be null');
    }
    out.expiresAt = intValue(obj.expiresAt, 'expiresAt');
  }
  return out;
}

export function verifyEntrySignature(e: MembershipEntry): boolean {
  try {
    return sodium().crypto_sign_verify_detached(
      b64decode(e.signature),
      e.signedBytes,
      b64decode(e.signer)
    );
  } catch {
    return false;
  }
}

/** The document id a root (`create`) entry binds: `"m1_" + hash(root)`. */
export function docIdOfRoot(root: unknown): string {
  return LOG_DOC_ID_PREFIX + parseEntry(root).hash;
}

/** Whether `docId` names a document with a membership log. */
export function isLogDocId(docId: unknown): boolean {
  return typeof docId === 'string' && LOG_DOC_ID_RE.test(docId);
}

// ---------------------------------------------------------------------------------------
// state
// ---------------------------------------------------------------------------------------

/** Parse a `{"seq", "hash"}` object strictly (701 naming the field). */
export function parseLogHead(value: unknown): LogHead {
  if (!isPlainObject(value)) {
    throw err(701, 'logHead', 'expected a JSON object');
  }
  const keys = Object.keys(value).sort();
  if (keys.length !== 2 || keys[0] !== 'hash' || keys[1] !== 'seq') {
    throw err(701, 'logHead', 'expected exactly "seq" and "hash"');
  }
  return {
    seq: intValue(value.seq, 'logHead.seq'),
    hash: b64Field(value.hash, 'logHead.hash', 32)
  };
}


function checked(obj: unknown): MembershipEntry {
  const entry = parseEntry(obj);
  if (!verifyEntrySignature(entry)) {
    throw err(704, 'signature');
  }
  return entry;
}

/** Checks Ed25519 signatures in bulk: [signature, message, public key][] -> ok[] (workers…). */
export type SignatureCheck = (items: Array<[Uint8Array, Uint8Array, Uint8Array]>) => boolean[];

function atIndex<T>(index: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof MembershipError) {
      e.index = index;
    }
    throw e;
  }
}

/**
 * `[index, entry]` for parsed entries with valid signatures, in order; parse and signature
 * errors are thrown at their index exactly as one-by-one checking would.
 */
function* verified(
  entries: unknown[],
  offset: number,
  check?: SignatureCheck
): Generator<[number, MembershipEntry]> {
  if (!check) {
    for (let i = 0; i < entries.length; i++) {
      yield [offset + i, atIndex(offset + i, () => checked(entries[i]))];
    }
    return;
  }
  const parsed: Array<MembershipEntry | MembershipError> = entries.map((obj) => {
    try {
      return parseEntry(obj);
    } catch (e) {
      if (e instanceof MembershipError) {
        return e;
      }
      throw e;
    }
  });
  const todo = parsed
    .filter((e): e is MembershipEntry => !(e instanceof MembershipError))
    .map((e) => [b64decode(e.signature), e.signedBytes, b64decode(e.signer)] as [
      Uint8Array,
      Uint8Array,
      Uint8Array
    ]);
  const results = check(todo);
  if (results.length !== todo.length) {
    throw new RangeError('the signature check returned a wrong number of results');
  }
  let k = 0;
  for (let i = 0; i < parsed.length; i++) {
    const entry = parsed[i];
    if (entry instanceof MembershipError) {
      entry.index = offset + i;
      throw entry;
    }
    if (results[k++] !== true) {
      const e = err(704, 'signature');
      e.index = offset + i;
      throw e;
    }
    yield [offset + i, entry];
  }
}

function rootBuilder(root: MembershipEntry, docId: string | null): Builder {
  if (root.kind !== 'create') {
    throw err(706, 'kind', 'the first entry must be a create entry');
  }
  const bound = LOG_DOC_ID_PREFIX + root.hash;
  if (docId !== null && bound !== docId) {
    throw err(706, 'root', `the root binds ${bound}, not ${docId}`);
  }
  return Builder.root(root, bound);
}

function applyAll(builder: Builder, entries: Iterable<[number, MembershipEntry]>): void {
  for (const [index, entry] of entries) {
    atIndex(index, () => builder.apply(entry));
  }
}

/** 718 unless `known` (a head verified earlier) is an entry of `state`'s log. */
export function checkKnownHead(state: MembershipState, known: LogHead): void {
  if (known.seq > state.head.seq || state.hashes[known.seq] !== known.hash) {
    throw err(718, 'log', `entry ${known.seq} is not the one seen before`);
  }
}

/**
 * Verify a whole log and return the membership at its head. `docId` is the document id this
 * party already holds (share link, pointer, URL): the root must bind exactly that id (706);
 * `null` only to learn the id of a root you made. `knownHead`: a head verified before, which
 * the log must contain (718). `checkSignatures`: check all signatures at once (same results).
 * Errors carry `.index`.
 */
export function verifyLog(
  entries: unknown,
  docId: string | null,
  options: { knownHead?: LogHead; checkSignatures?: SignatureCheck } = {}
): MembershipState {
  if (!Array.isArray(entries)) {
    throw err(701, 'log', 'expected an array');
  }
  if (entries.length === 0) {
    throw err(706, 'log', 'the log is empty');
  }
  if (entries.length > MAX_LOG_ENTRIES) {
    throw err(701, 'log', `more than ${MAX_LOG_ENTRIES} entries`);
  }
  const it = verified(entries, 0, options.checkSignatures);
  const first = it.next().value as [number, MembershipEntry];
  const builder = atIndex(0, () => rootBuilder(first[1], docId));
  applyAll(builder, { [Symbol.iterator]: () => it });
  const state = builder.freeze();
  if (options.knownHead) {
    checkKnownHead(state, options.knownHead);
  }
  return state;
}

/** Verify one appended entry against `state`; returns the new state (`state` is unchanged). */
export function verifyEntry(state: MembershipState, entry: unknown): MembershipState {
  const builder = Builder.of(state);
  builder.apply(checked(entry));
  return builder.freeze();
}

/** Verify entries that continue `state`'s log; `.index` counts from 0 in `entries`. */
export function extendLog(
  state: MembershipState,
  entries: unknown,
  options: { checkSignatures?: SignatureCheck } = {}
): MembershipState {
  if (!Array.isArray(entries)) {
    throw err(701, 'log', 'expected an array');
  }
  if (state.head.seq + 1 + entries.length > MAX_LOG_ENTRIES) {
    throw err(701, 'log', `more than ${MAX_LOG_ENTRIES} entries`);
  }
  if (entries.length === 0) {
    return state;
  }
  const builder = Builder.of(state);
  applyAll(builder, verified(entries, 0, options.checkSignatures));
  return builder.freeze();
}

// ---------------------------------------------------------------------------------------
// creating entries
// ---------------------------------------------------------------------------------------

const NO_SIGNATURE = 'A'.repeat(86);

function signFields(fields: Record<string, unknown>, keyPair: SignatureKeyPair): MembershipEntry {
  let unsigned: MembershipEntry;
  try {
    unsigned = parseEntry({ ...fields, signature: NO_SIGNATURE });
  } catch (e) {
    if (e instanceof MembershipError && e.code === 'SECSYNC_ERROR_701') {
      throw err(741, e.field, e.detail);
    }
    throw e;
  }
  const signature = sodium().crypto_sign_detached(unsigned.signedBytes, keyPair.privateKey);
  return parseEntry({ ...fields, signature: b64encode(signature) });
}

function targetKey(value: string | Uint8Array | Identity): string {
  return publicKeyArg(value, 'target');
}

/**
 * A new log: its root entry (the signer becomes the first admin) and the state; the document
 * id is `state.docId`. `at` and `nonce` are for deterministic tests (default: now, random).
 */
export function createLog(
  keyPair: SignatureKeyPair,
  options: { name?: string | null; at?: number; nonce?: Uint8Array } = {}
): { entry: MembershipEntry; state: MembershipState } {
  const fields: Record<string, unknown> = {
    v: LOG_FORMAT_VERSION,
    kind: 'create',
    seq: 0,
    prev: '',
    signer: b64encode(keyPair.publicKey),
    nonce: b64encode(options.nonce ?? sodium().randombytes_buf(ROOT_NONCE_BYTES)),
    at: options.at ?? Date.now()
  };
  if (options.name !== undefined && options.name !== null) {
    fields.name = options.name;
  }
  const entry = signFields(fields, keyPair);
  return { entry, state: verifyLog([entry], null) };
}

/**
 * Sign the next entry on `state`'s head and check it: the entry (to send to the relay) and
 * the state after it. `kind`: add-member (with `role`; `name` defaults to the identity's),
 * set-role (with `role`) or remove-member. `at` defaults to now, never earlier than the head.
 * 741 for bad arguments; the rule's own code (711–717) when the signer may not do this.
 */
export function createEntry(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  kind: Exclude<EntryKind, 'create'>,
  target: string | Uint8Array | Identity,
  role: Role | null = null,
  options: { name?: string | null; at?: number } = {}
): { entry: MembershipEntry; state: MembershipState } {
  if (!['add-member', 'set-role', 'remove-member'].includes(kind)) {
    throw err(741, 'kind', 'expected add-member, set-role or remove-member');
  }
  let name = options.name ?? null;
  const isIdentity = typeof target === 'object' && !(target instanceof Uint8Array);
  if (kind === 'add-member' && name === null && isIdentity) {
    name = (target as Identity).name;
  }
  const fields: Record<string, unknown> = {
    v: LOG_FORMAT_VERSION,
    kind,
    docId: state.docId,
    seq: state.head.seq + 1,
    prev: state.head.hash,
    signer: b64encode(keyPair.publicKey),
    target: targetKey(target),
    at: options.at ?? Math.max(Date.now(), state.headAt)
  };
  if (kind !== 'remove-member') {
    fields.role = role;
  } else if (role !== null) {
    throw err(741, 'role', 'remove-member takes no role');
  }
  if (name !== null) {
    if (kind !== 'add-member') {
      throw err(741, 'name', 'only add-member carries a name');
    }
    fields.name = name;
  }
  const entry = signFields(fields, keyPair);
  return { entry, state: verifyEntry(state, entry) };
}

/**
 * Sign an entry of `kind` with `fields` (wire names) on `state`'s head and check it (for
 * the issue-12 kinds; lockbox.ts and links.ts build their fields): 741 for a malformed
 * field, the rule's own code otherwise.
 */
export function nextEntry(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  kind: EntryKind,
  fields: Record<string, unknown>,
  options: { at?: number } = {}
): { entry: MembershipEntry; state: MembershipState } {
  const entry = signFields(
    {
      v: LOG_FORMAT_VERSION,
      kind,
      docId: state.docId,
      seq: state.head.seq + 1,
      prev: state.head.hash,
      signer: b64encode(keyPair.publicKey),
      ...fields,
      at: options.at ?? Math.max(Date.now(), state.headAt)
    },
    keyPair
  );
  return { entry, state: verifyEntry(state, entry) };
}

/** A public key argument as base64url, checked to be a usable Ed25519 point (741). */
export function publicKeyArg(value: string | Uint8Array | Identity, field = 'target'): string {
  const raw = typeof value === 'object' && !(value instanceof Uint8Array) ? value.pubKey : value;
  try {
    const key = keyBytes(raw, field);
    checkPoint(key);
    return b64encode(key);
  } catch (e) {
    throw err(741, field, e instanceof MembershipError ? e.detail : String(e));
  }
}
