/**
 * JSON-lines RPC over stdin/stdout around the TypeScript Secsync library, used by
 * tests/test_js_interop.py (Python creates -> JS verifies and JS creates -> Python verifies).
 *
 * Run: npx vite-node test/interop/rpc.ts   (one JSON request per line, one JSON answer per line)
 * Every binary value is b64url. Answers are {ok: true, ...} or {ok: false, error: "..."}.
 */
import readline from 'node:readline';
import * as Y from 'yjs';
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate } from 'y-protocols/awareness';
import {
  awarenessClaimedPubKey,
  b64decode,
  b64encode,
  fingerprint,
  localAwarenessFields,
  canonicalize,
  createEphemeralMessage,
  createEphemeralSession,
  createInitialSnapshot,
  createSignatureKeyPair,
  createSnapshot,
  createUpdate,
  deserializeUpdates,
  EphemeralSession,
  formatShareLink,
  hash,
  isValidAncestorSnapshot,
  parseShareLink,
  ready,
  serializeUpdates,
  SignatureKeyPair,
  verifyAndDecryptEphemeralMessage,
  verifyAndDecryptSnapshot,
  verifyAndDecryptUpdate
} from '../../src/secsync';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Req = Record<string, any>;

function keyPair(seedB64: string): SignatureKeyPair {
  return createSignatureKeyPair(b64decode(seedB64));
}

interface SessionState {
  session: EphemeralSession;
  docId: string;
  key: Uint8Array;
  kp: SignatureKeyPair;
}
const sessions = new Map<string, SessionState>();

function nextMessage(s: SessionState, content: Uint8Array, type: any) {
  const counter = s.session.counter;
  s.session.counter += 1;
  return createEphemeralMessage(
    content,
    type,
    { docId: s.docId, pubKey: b64encode(s.kp.publicKey) },
    s.key,
    s.kp,
    s.session.id,
    counter
  );
}

function handle(req: Req): Record<string, unknown> {
  switch (req.op) {
    case 'keypair': {
      const kp = keyPair(req.seed);
      return { publicKey: b64encode(kp.publicKey), privateKey: b64encode(kp.privateKey) };
    }
    case 'hash':
      return { hash: req.bytes !== undefined ? hash(b64decode(req.bytes)) : hash(req.text) };
    case 'canonicalize':
      return { canonical: canonicalize(req.value) };
    case 'create_snapshot': {
      const kp = keyPair(req.seed);
      const content = b64decode(req.content);
      const nonce = req.nonce ? b64decode(req.nonce) : undefined;
      const message =
        req.publicData.parentSnapshotId === ''
          ? createInitialSnapshot(content, req.publicData, b64decode(req.key), kp, nonce)
          : createSnapshot(
              content,
              req.publicData,
              b64decode(req.key),
              kp,
              req.parentSnapshotCiphertextHash,
              req.grandParentSnapshotProof,
              nonce
            );
      return { message, ciphertextHash: hash(message.ciphertext) };
    }
    case 'create_update': {
      const message = createUpdate(
        b64decode(req.content),
        req.publicData,
        b64decode(req.key),
        keyPair(req.seed),
        req.clock,
        req.nonce ? b64decode(req.nonce) : undefined
      );
      return { message };
    }
    case 'create_ephemeral': {
      const message = createEphemeralMessage(
        b64decode(req.content),
        req.type,
        req.publicData,
        b64decode(req.key),
        keyPair(req.seed),
        req.sessionId,
        req.counter,
        req.nonce ? b64decode(req.nonce) : undefined
      );
      return { message };
    }
    case 'verify_snapshot': {
      const r = verifyAndDecryptSnapshot(req.message, {
        key: b64decode(req.key),
        currentDocId: req.docId,
        currentClientPublicKey: req.ownPubKey ?? '',
        parentSnapshotProofInfo: req.parentSnapshotProofInfo ?? undefined,
        parentSnapshotUpdateClock: req.parentSnapshotUpdateClock ?? undefined
      });
      return r.error ? { error: r.error.code } : { error: null, content: b64encode(r.content) };
    }
    case 'verify_update': {
      const r = verifyAndDecryptUpdate(req.message, {
        key: b64decode(req.key),
        currentDocId: req.docId,
        currentActiveSnapshotId: req.activeSnapshotId,
        currentClock: req.currentClock
      });
      return r.error
        ? { error: r.error.code }
        : { error: null, content: b64encode(r.content), clock: r.clock };
    }
    case 'is_valid_ancestor':
      return {
        valid: isValidAncestorSnapshot({
          knownSnapshotProofEntry: req.known,
          snapshotProofChain: req.chain,
          currentSnapshot: req.current
        })
      };
    case 'session_new': {
      const session = createEphemeralSession();
      if (req.counter !== undefined) {
        session.counter = req.counter;
      }
      sessions.set(session.id, {
        session,
        docId: req.docId,
        key: b64decode(req.key),
        kp: keyPair(req.seed)
      });
      return { sessionId: session.id };
    }
    case 'session_initialize': {
      const s = sessions.get(req.sessionId) as SessionState;
      return { message: nextMessage(s, new Uint8Array(), 'initialize') };
    }
    case 'session_message': {
      const s = sessions.get(req.sessionId) as SessionState;
      return { message: nextMessage(s, b64decode(req.content), 'message') };
    }
    case 'session_receive': {
      const s = sessions.get(req.sessionId) as SessionState;
      const out = verifyAndDecryptEphemeralMessage(req.message, {
        key: s.key,
        currentDocId: s.docId,
        session: s.session,
        signatureKeyPair: s.kp,
        strictDocId: req.strictDocId === true
      });
      const reply = out.proof
        ? nextMessage(s, out.proof, out.requestProof ? 'proofAndRequestProof' : 'proof')
        : null;
      return {
        error: out.error ? out.error.code : null,
        content: out.content ? b64encode(out.content) : null,
        reply,
        validSessions: s.session.validSessions
      };
    }
    case 'yjs_make': {
      // a v1 snapshot content with Y.Text(name) = text, and an update appending `more`
      const doc = new Y.Doc();
      doc.getText(req.name).insert(0, req.text);
      const snapshot = Y.encodeStateAsUpdate(doc);
      const sv = Y.encodeStateVector(doc);
      doc.getText(req.name).insert(doc.getText(req.name).length, req.more);
      const update = Y.encodeStateAsUpdate(doc, sv);
      return {
        snapshotContent: b64encode(snapshot),
        updateContent: b64encode(serializeUpdates([update]))
      };
    }
    case 'yjs_read': {
      // apply snapshot content + update contents (JSON arrays) and read Y.Text(name)
      const doc = new Y.Doc();
      Y.applyUpdate(doc, b64decode(req.snapshotContent));
      for (const u of req.updateContents ?? []) {
        for (const change of deserializeUpdates(b64decode(u))) {
          Y.applyUpdate(doc, change);
        }
      }
      return { text: doc.getText(req.name).toString() };
    }
    case 'awareness_local': {
      // what the browser client sends: its local awareness state as an awareness update
      const awareness = new Awareness(new Y.Doc());
      awareness.setLocalState({ ...req.state, ...localAwarenessFields(req.pubKey) });
      const update = encodeAwarenessUpdate(awareness, [awareness.clientID]);
      awareness.destroy();
      return { clientId: awareness.clientID, content: b64encode(update) };
    }
    case 'awareness_read': {
      // decode an awareness update, report each state's claimed pubKey
      const awareness = new Awareness(new Y.Doc());
      awareness.setLocalState(null);
      applyAwarenessUpdate(awareness, b64decode(req.content), 'remote');
      const states: Array<Record<string, unknown>> = [];
      awareness.getStates().forEach((state, clientId) => {
        states.push({ clientId, state, claimed: awarenessClaimedPubKey(state) ?? null });
      });
      awareness.destroy();
      return { states };
    }
    case 'fingerprint':
      return { fingerprint: fingerprint(req.pubKey) };
    case 'sharelink_parse': {
      const l = parseShareLink(req.link);
      return { docId: l.docId, key: b64encode(l.key), relayUrl: l.relayUrl, jupyterBase: l.jupyterBase ?? null };
    }
    case 'sharelink_format':
      return {
        link: formatShareLink({
          docId: req.docId,
          key: b64decode(req.key),
          relayUrl: req.relayUrl ?? null,
          jupyterBase: req.jupyterBase ?? null
        })
      };
    default:
      throw new Error(`unknown op ${String(req.op)}`);
  }
}

async function main(): Promise<void> {
  await ready();
  process.stdout.write(JSON.stringify({ ok: true, ready: true }) + '\n');
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    if (!line.trim()) {
      continue;
    }
    let answer: Record<string, unknown>;
    try {
      answer = { ok: true, ...handle(JSON.parse(line) as Req) };
    } catch (err) {
      answer = { ok: false, error: String(err), code: (err as { code?: string }).code ?? null };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
}

void main();
