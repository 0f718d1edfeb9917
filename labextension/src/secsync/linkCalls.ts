/**
 * An admin's invitation-link actions on the browser sync client (issue 12), the twins of
 * `create_link` / `revoke_link` in secsync_jupyter/client/links_client.py:
 *
 *   const { secret, pubKey } = await createLinkOn(client, 'viewer', 'for Bob', { expiresAt });
 *   await revokeLinkOn(client, pubKey, { removeJoined: true });
 *
 * Creating: an `add-link` entry (role, label, optional expiry) with the link's lockbox of the
 * current epoch key. Revoking: `remove-link`, with `removeJoined` a `remove-member` of everyone
 * who joined through it, then ONE rotation (docs/protocol.md, "Rotation: who and when").
 * The client queues and retries the entries (`appendEntry`, 707 / 709 rebuilt on the new head).
 */
import type { SignatureKeyPair } from './crypto';
import { createLink, createRemoveLink } from './links';
import type { Keyring, Lockbox } from './lockbox';
import type { MembershipEntry, MembershipState, Role } from './membership';
import { err } from './membershipError';

/** What the link actions need of `SecsyncYjsClient`. */
export interface LinkClient {
  readonly membership: MembershipState | null;
  readonly keyring?: Keyring | null;
  /** `rotate: false`: no automatic rotation after a remove-link (revokeLinkOn rotates once) */
  appendEntry(
    build: (state: MembershipState) => { entry: MembershipEntry; lockboxes?: Lockbox[] },
    options?: { rotate?: boolean }
  ): Promise<unknown>;
  removeMember(pubKey: string, options?: { rotate?: boolean }): Promise<void>;
  rotateKey(): Promise<unknown>;
}

/** The current epoch's key: from the keyring, or (epoch 0 only) the document key given. */
function currentKey(client: LinkClient, state: MembershipState, docKey: Uint8Array | null): Uint8Array {
  const ring = client.keyring ?? null;
  if (ring && ring.has(state.epoch)) {
    return ring.key(state.epoch);
  }
  if (state.epoch === 0 && docKey) {
    return docKey;
  }
  throw err(766, 'epoch', `this browser holds no key of the current epoch ${state.epoch}`);
}

export function canAppend(client: unknown): client is LinkClient {
  const c = client as Partial<LinkClient> | null;
  return !!c && typeof c.appendEntry === 'function' && typeof c.rotateKey === 'function';
}

/** An admin adds an invitation link; returns its secret (for the URL) and public key. */
export async function createLinkOn(
  client: LinkClient,
  keyPair: SignatureKeyPair,
  role: Role,
  label: string,
  options: { expiresAt?: number | null; docKey?: Uint8Array | null } = {}
): Promise<{ secret: Uint8Array; pubKey: string }> {
  let made: { secret: Uint8Array; pubKey: string } | null = null;
  await client.appendEntry((state) => {
    const key = currentKey(client, state, options.docKey ?? null);
    const link = createLink(state, keyPair, role, label, {
      ...(options.expiresAt !== undefined && options.expiresAt !== null
        ? { expiresAt: options.expiresAt }
        : {}),
      epochKey: key,
      // the same secret when the entry is rebuilt on a new head
      ...(made !== null ? { secret: made.secret } : {})
    });
    made = { secret: link.secret, pubKey: link.pubKey };
    return { entry: link.entry, lockboxes: link.lockbox ? [link.lockbox] : [] };
  });
  if (made === null) {
    throw err(780, null, 'no link was made');
  }
  return made;
}

/**
 * An admin revokes a link (`remove-link`; an already revoked one is skipped), with
 * `removeJoined` also removes who joined through it, then rotates the key once.
 */
export async function revokeLinkOn(
  client: LinkClient,
  keyPair: SignatureKeyPair,
  linkPubKey: string,
  options: { removeJoined?: boolean } = {}
): Promise<void> {
  const state = client.membership;
  if (state === null) {
    throw err(700, null, 'the membership log is not loaded');
  }
  const link = state.links.get(linkPubKey);
  if (!link) {
    throw err(757, 'target', 'not a link of this document');
  }
  if (link.removed === undefined) {
    await client.appendEntry((s) => ({ entry: createRemoveLink(s, keyPair, linkPubKey).entry }), {
      rotate: false
    });
  }
  if (options.removeJoined) {
    const now = client.membership ?? state;
    for (const member of [...now.members.values()].filter((m) => m.via === linkPubKey)) {
      await client.removeMember(member.pubKey, { rotate: false });
    }
  }
  await client.rotateKey();
}
