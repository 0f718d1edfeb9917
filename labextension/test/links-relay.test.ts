/**
 * Invitation links in the browser client against our Python relay (`.venv/bin/secsync-relay`,
 * real SQLite, on loopback), issue 12: an owner creates links (secsync/linkCalls.ts on the
 * client's appendEntry), a browser joins through one (secsync/linkJoin.ts: connect as the link,
 * add itself, seal the key to itself) and opens the document as itself with the link's keys;
 * a revoked link (755), an expired link (754), a link of another document (711 / refused) and a
 * member joining again (nothing appended); revoking with "remove who joined" rotates once and
 * the joiner is cut off, while someone who joined through another link reads the new epoch.
 */
import { describe, expect, test } from 'vitest';
import { createSignatureKeyPair, generateKey, SignatureKeyPair } from '../src/secsync';
import { b64encode } from '../src/secsync/base64';
import { createLogDocument } from '../src/secsync/document';
import { createLinkOn, revokeLinkOn } from '../src/secsync/linkCalls';
import { joinThroughLink } from '../src/secsync/linkJoin';
import { pub, usePythonRelay, waitFor, WS } from './helpers/pythonRelay';

/* eslint-disable @typescript-eslint/no-explicit-any */

const env = usePythonRelay();

function join(docId: string, secret: Uint8Array, identity: SignatureKeyPair, name = 'Joiner') {
  return joinThroughLink({
    url: `${env.relay.base}/${docId}`,
    docId,
    secret,
    identity,
    name,
    WebSocketImpl: WS,
    timeoutMs: 10000
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
  return 'resolved';
}

describe('invitation links against the Python relay', () => {
  test('join, read as oneself, revoke with its people, the other link keeps working', async () => {
    const A = createSignatureKeyPair();
    const B = createSignatureKeyPair();
    const C = createSignatureKeyPair();
    const key = generateKey();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');
    const a = env.open(docId, A, { key, rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'hello');
    await a.c.synced();

    const viewerLink = await createLinkOn(a.c as any, A, 'viewer', 'for B');
    const editorLink = await createLinkOn(a.c as any, A, 'editor', 'for C', {
      expiresAt: Date.now() + 3600_000
    });
    expect(a.c.membership?.links.get(viewerLink.pubKey)?.role).toBe('viewer');
    expect(a.c.membership?.links.get(editorLink.pubKey)?.expiresAt).toBeGreaterThan(Date.now());

    // B joins through the viewer link: the entry is signed by the link, B is the target
    const jb = await join(docId, viewerLink.secret, B, 'Bob');
    expect(jb.joined).toBe(true);
    expect(jb.role).toBe('viewer');
    expect(jb.keyring.epochs).toEqual([0]);
    expect(b64encode(jb.keyring.key(0))).toBe(b64encode(key));
    const memberB = jb.state.members.get(pub(B));
    expect(memberB?.via).toBe(viewerLink.pubKey);
    expect(memberB?.name).toBe('Bob');
    await waitFor(() => a.c.membership?.members.has(pub(B)) === true, 'B in A’s log');

    // joining again: a member already, nothing appended
    const again = await join(docId, viewerLink.secret, B);
    expect(again.joined).toBe(false);
    expect(again.state.head.seq).toBe(jb.state.head.seq);

    // B opens as itself with the link's keys: reads, read-only
    const b = env.open(docId, B, { keyring: jb.keyring });
    await b.c.loaded;
    expect(b.text.toString()).toBe('hello');
    expect(b.c.myRole).toBe('viewer');
    expect(b.c.readOnly).toBe(true);

    // C joins through the editor link and writes
    const jc = await join(docId, editorLink.secret, C, 'Cy');
    const c = env.open(docId, C, { keyring: jc.keyring });
    await c.c.loaded;
    expect(c.c.myRole).toBe('editor');
    c.text.insert(c.text.length, ' world');
    await c.c.synced();
    await waitFor(() => a.text.toString() === 'hello world', 'C’s change at A');

    // revoke B's link and remove who joined through it: one rotation
    const before = a.c.membership!.head.seq;
    await revokeLinkOn(a.c as any, A, viewerLink.pubKey, { removeJoined: true });
    const state = a.c.membership!;
    expect(state.head.seq).toBe(before + 3); // remove-link, remove-member, rotate-key
    expect(state.epoch).toBe(1);
    expect(state.links.get(viewerLink.pubKey)?.removed).toBeDefined();
    expect(state.isMember(pub(B))).toBe(false);
    await waitFor(() => b.c.status.connection === 'failed', 'B cut off');

    // nobody joins through the revoked link any more (the relay refuses its proof: 755)
    expect(await codeOf(join(docId, viewerLink.secret, createSignatureKeyPair()))).toBe(
      'SECSYNC_ERROR_755'
    );

    // C keeps working in the new epoch, both ways
    await waitFor(() => c.c.keyring?.has(1) === true, 'C’s lockbox of epoch 1');
    a.text.insert(a.text.length, '!');
    await a.c.synced();
    await waitFor(() => c.text.toString() === 'hello world!', 'A’s epoch-1 change at C');
    c.text.insert(0, '>');
    await c.c.synced();
    await waitFor(() => a.text.toString() === '>hello world!', 'C’s epoch-1 change at A');
    expect(b.text.toString()).toBe('hello world');

    // a link made after the rotation holds only epoch 1's key; the joiner reads with it
    const late = await createLinkOn(a.c as any, A, 'viewer', 'late');
    const D = createSignatureKeyPair();
    const jd = await join(docId, late.secret, D);
    expect(jd.keyring.epochs).toEqual([1]);
    const d = env.open(docId, D, { keyring: jd.keyring });
    await d.c.loaded;
    expect(d.text.toString()).toBe('>hello world!');
  }, 60000);

  test('expired and foreign links are refused, with their codes', async () => {
    const A = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');
    const a = env.open(docId, A, { key: generateKey(), rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'x');
    await a.c.synced();
    const expiresAt = Date.now() + 400;
    const short = await createLinkOn(a.c as any, A, 'editor', 'short', { expiresAt });
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 200));
    expect(await codeOf(join(docId, short.secret, createSignatureKeyPair()))).toBe(
      'SECSYNC_ERROR_754'
    );

    // a link of another document: not a member there (the relay refuses the proof)
    const other = createLogDocument(A, 'Ada');
    const o = env.open(other.docId, A, { key: generateKey(), rootEntry: other.rootEntry });
    await o.c.loaded;
    const foreign = await createLinkOn(o.c as any, A, 'viewer', 'elsewhere');
    expect(await codeOf(join(docId, foreign.secret, createSignatureKeyPair()))).toBe(
      'SECSYNC_ERROR_722'
    );
    // a secret that is no link at all
    expect(await codeOf(join(docId, new Uint8Array(32).fill(7), createSignatureKeyPair()))).toBe(
      'SECSYNC_ERROR_722'
    );
  }, 60000);
});
