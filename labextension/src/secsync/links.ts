/**
 * Invitation links (issue 12): the TypeScript twin of secsync_jupyter/protocol/links.py;
 * both pass tests/vectors/epoch-vectors.json. Wire format: docs/protocol.md, "Key epochs,
 * lockboxes and links".
 *
 * A link secret (32 random bytes) travels only in the URL fragment (`#link=<b64url>`;
 * `#key=<b64url>` stays for documents without a log). The link identity is the Ed25519 key
 * pair of `seed = BLAKE2b-256(key=secret, "secsync_jupyter_link_identity")`.
 */
import { b64decode, b64encode } from './base64';
import { createSignatureKeyPair, SignatureKeyPair } from './crypto';
import { Identity } from './identity';
import { Lockbox, sealLockbox } from './lockbox';
import { MembershipEntry, MembershipState, nextEntry, publicKeyArg, Role } from './membership';
import { err } from './membershipError';
import { sodium, utf8Encode } from './sodium';

export const DOMAIN_LINK_IDENTITY = 'secsync_jupyter_link_identity';
export const LINK_SECRET_BYTES = 32;
export const MAX_FRAGMENT_CHARS = 256;
const B64_32 = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

export function generateLinkSecret(): Uint8Array {
  return sodium().randombytes_buf(LINK_SECRET_BYTES);
}

function secretArg(secret: unknown): Uint8Array {
  if (typeof secret === 'string') {
    if (!B64_32.test(secret)) {
      throw err(780, 'secret', 'expected base64url of 32 bytes');
    }
    return b64decode(secret);
  }
  if (!(secret instanceof Uint8Array) || secret.length !== LINK_SECRET_BYTES) {
    throw err(780, 'secret', `a link secret is ${LINK_SECRET_BYTES} bytes`);
  }
  return secret;
}

/** The link identity of a secret (bytes, or its base64url form from a fragment). */
export function linkKeyPair(secret: Uint8Array | string): SignatureKeyPair {
  const seed = sodium().crypto_generichash(
    32,
    utf8Encode(DOMAIN_LINK_IDENTITY),
    secretArg(secret)
  );
  return createSignatureKeyPair(seed);
}

/** What a share link's fragment carries: the document key and/or a link secret. */
export interface LinkFragment {
  key: Uint8Array | null;
  linkSecret: Uint8Array | null;
}

/** `#key=<b64>`, `#link=<b64>` or `#key=<b64>&link=<b64>` (that order). */
export function formatFragment(parts: { key?: Uint8Array; linkSecret?: Uint8Array }): string {
  const out: string[] = [];
  if (parts.key !== undefined) {
    out.push(`key=${b64encode(secretArg(parts.key))}`);
  }
  if (parts.linkSecret !== undefined) {
    out.push(`link=${b64encode(secretArg(parts.linkSecret))}`);
  }
  if (!out.length) {
    throw err(780, 'fragment', 'a fragment needs a key or a link secret');
  }
  return '#' + out.join('&');
}

/**
 * Parse a share link's fragment (with or without `#`) strictly: only `key` and `link`,
 * each at most once, at least one, each base64url of 32 bytes — 770 naming `fragment`,
 * `key` or `link`. Nothing is percent-decoded.
 */
export function parseFragment(fragment: unknown): LinkFragment {
  if (typeof fragment !== 'string') {
    throw err(770, 'fragment', 'expected a string');
  }
  const text = fragment.startsWith('#') ? fragment.slice(1) : fragment;
  if (text.length > MAX_FRAGMENT_CHARS) {
    throw err(770, 'fragment', `longer than ${MAX_FRAGMENT_CHARS} characters`);
  }
  const values = new Map<string, Uint8Array>();
  for (const part of text ? text.split('&') : []) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    if (eq < 0 || (name !== 'key' && name !== 'link')) {
      throw err(770, 'fragment', 'expected key=… and/or link=…');
    }
    if (values.has(name)) {
      throw err(770, name, 'given twice');
    }
    const value = part.slice(eq + 1);
    if (!B64_32.test(value)) {
      throw err(770, name, 'expected base64url of 32 bytes');
    }
    values.set(name, b64decode(value));
  }
  if (!values.size) {
    throw err(770, 'fragment', 'no key= or link=');
  }
  return { key: values.get('key') ?? null, linkSecret: values.get('link') ?? null };
}

/** A link an admin created (see `createLink`). */
export interface NewLink {
  secret: Uint8Array;
  pubKey: string;
  entry: MembershipEntry;
  state: MembershipState;
  lockbox: Lockbox | null;
}

/**
 * An admin adds a link (`add-link`): a fresh secret (`secret` only for tests), its identity
 * as a member of kind link with `role` (viewer / editor), `label` and the optional expiry.
 * With `epochKey` (the current epoch's key) the link's lockbox is sealed too.
 */
export function createLink(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  role: Role,
  label: string,
  options: { expiresAt?: number; epochKey?: Uint8Array; secret?: Uint8Array; at?: number } = {}
): NewLink {
  const secret = options.secret === undefined ? generateLinkSecret() : secretArg(options.secret);
  const pubKey = b64encode(linkKeyPair(secret).publicKey);
  const fields: Record<string, unknown> = { target: pubKey, role, label };
  if (options.expiresAt !== undefined) {
    fields.expiresAt = options.expiresAt;
  }
  const r = nextEntry(state, keyPair, 'add-link', fields, { at: options.at });
  const lockbox =
    options.epochKey === undefined
      ? null
      : sealLockbox(state.docId, state.epoch, options.epochKey, pubKey);
  return { secret, pubKey, entry: r.entry, state: r.state, lockbox };
}

/** An admin revokes a link (`remove-link`); the client rule is to rotate right after. */
export function createRemoveLink(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  link: string | Uint8Array,
  options: { at?: number } = {}
): { entry: MembershipEntry; state: MembershipState } {
  return nextEntry(state, keyPair, 'remove-link', { target: publicKeyArg(link) }, options);
}

/**
 * The `add-member` entry by which the person opening a link adds themselves (`identity`),
 * signed by the link identity; `role` defaults to the link's.
 */
export function joinViaLink(
  state: MembershipState,
  secret: Uint8Array | string | SignatureKeyPair,
  identity: string | Uint8Array | Identity,
  role: Role | null = null,
  options: { name?: string | null; at?: number } = {}
): { entry: MembershipEntry; state: MembershipState } {
  const link =
    typeof secret === 'object' && !(secret instanceof Uint8Array)
      ? secret
      : linkKeyPair(secret);
  const info = state.links.get(b64encode(link.publicKey));
  if (!info) {
    throw err(711, 'signer', 'not a link of this document');
  }
  let name = options.name ?? null;
  if (name === null && typeof identity === 'object' && !(identity instanceof Uint8Array)) {
    name = identity.name;
  }
  const fields: Record<string, unknown> = {
    target: publicKeyArg(identity),
    role: role ?? info.role
  };
  if (name !== null) {
    fields.name = name;
  }
  return nextEntry(state, link, 'add-member', fields, { at: options.at });
}
