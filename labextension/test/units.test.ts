/** Unit tests: encodings, strict parsing, share links, ephemeral session rules. */
import crypto from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
import {
  awarenessClaimedPubKey,
  b64decode,
  b64encode,
  canonicalizeStrict,
  createEphemeralMessage,
  createEphemeralSession,
  createEphemeralSessionProof,
  createInitialSnapshot,
  createSignatureKeyPair,
  createSnapshot,
  createUpdate,
  defaultSnapshotPolicy,
  decryptAead,
  deserializeUpdates,
  encryptAead,
  fingerprint,
  formatShareLink,
  generateId,
  generateKey,
  isB64,
  KnownSnapshot,
  MAX_UPDATES_IN_FLIGHT,
  parseServerFrame,
  parseShareLink,
  ProtocolError,
  ready,
  SecsyncError,
  serializeUpdates,
  snapshotPolicyFunction,
  SyncEngineOptions,
  snapshotProofEntry,
  SyncEngine,
  utf8Encode,
  verifyAndDecryptEphemeralMessage,
  verifyAndDecryptSnapshot,
  verifyAndDecryptUpdate,
  YDocAdapter
} from '../src/secsync';

beforeAll(async () => {
  await ready();
});

describe('base64url', () => {
  test('round trips and matches Node base64url', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = new Uint8Array(crypto.randomBytes(n));
      const text = b64encode(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64url'));
      expect(b64decode(text)).toEqual(bytes);
    }
  });

  test.each([
    ['padding', 'AQI='],
    ['padding 2', 'AQ=='],
    ['standard alphabet +', 'a+b_'],
    ['standard alphabet /', 'a/b_'],
    ['whitespace', 'AQI '],
    ['impossible length', 'AQIDB'],
    ['non-zero trailing bits', 'AQJ'],
    ['non-ascii', 'AQé']
  ])('rejects %s', (_name, text) => {
    expect(() => b64decode(text)).toThrow(ProtocolError);
    expect(isB64(text)).toBe(false);
  });

  test('isB64 checks the decoded length', () => {
    expect(isB64(b64encode(new Uint8Array(32)), 32)).toBe(true);
    expect(isB64(b64encode(new Uint8Array(31)), 32)).toBe(false);
    expect(isB64(42)).toBe(false);
  });
});

describe('canonical JSON domain', () => {
  test.each([
    ['float', { a: 1.5 }],
    ['big integer', { a: 2 ** 53 }],
    ['NaN', { a: NaN }],
    ['lone high surrogate', { a: '\ud800' }],
    ['lone low surrogate in key', { '\udc00': 1 }],
    ['undefined', { a: undefined }],
    ['function', { a: () => 1 }],
    ['Date', { a: new Date(0) }],
    ['Uint8Array', { a: new Uint8Array(1) }]
  ])('rejects %s', (_name, value) => {
    expect(() => canonicalizeStrict(value)).toThrow(ProtocolError);
  });

  test('accepts the domain', () => {
    expect(canonicalizeStrict({ b: [1, -2, null, true, 'x😀'], a: { '': 9007199254740991 } })).toBe(
      '{"a":{"":9007199254740991},"b":[1,-2,null,true,"x😀"]}'
    );
  });

  test('a float in received publicData is a parse error, not a crash', async () => {
    const key = generateKey();
    const kp = createSignatureKeyPair();
    const docId = generateId();
    const s = createInitialSnapshot(
      utf8Encode('x'),
      {
        docId,
        pubKey: b64encode(kp.publicKey),
        snapshotId: generateId(),
        parentSnapshotId: '',
        parentSnapshotUpdateClocks: {}
      },
      key,
      kp
    );
    const bad = { ...s, publicData: { ...s.publicData, app: 0.5 } };
    const r = verifyAndDecryptSnapshot(bad, { key, currentDocId: docId, currentClientPublicKey: kp.publicKey });
    expect(r.error?.code).toBe('SECSYNC_ERROR_110');
    const clocks = { ...s, publicData: { ...s.publicData, parentSnapshotUpdateClocks: { x: -1 } } };
    expect(
      verifyAndDecryptSnapshot(clocks, { key, currentDocId: docId, currentClientPublicKey: kp.publicKey }).error
        ?.code
    ).toBe('SECSYNC_ERROR_110');
  });
});

describe('AEAD with commitment tag', () => {
  test('the robustness tag is checked before decryption', () => {
    const key = generateKey();
    const { ciphertext, publicNonce } = encryptAead(utf8Encode('hello'), 'ad', key);
    const ct = b64decode(ciphertext);
    expect(decryptAead(ct, 'ad', key, publicNonce)).toEqual(utf8Encode('hello'));
    const tagFlipped = ct.slice();
    tagFlipped[0] ^= 1;
    expect(() => decryptAead(tagFlipped, 'ad', key, publicNonce)).toThrow(/robustness/);
    expect(() => decryptAead(ct, 'other ad', key, publicNonce)).toThrow(/robustness/);
    expect(() => decryptAead(ct.subarray(0, 40), 'ad', key, publicNonce)).toThrow();
  });
});

describe('update content format', () => {
  test('JSON array of b64url updates', () => {
    const updates = [new Uint8Array([1, 2, 3]), new Uint8Array([255])];
    const bytes = serializeUpdates(updates);
    expect(new TextDecoder().decode(bytes)).toBe('["AQID","_w"]');
    expect(deserializeUpdates(bytes)).toEqual(updates);
    for (const bad of ['{}', '[1]', '["AQI="]', 'nope', '["a+"]']) {
      expect(() => deserializeUpdates(utf8Encode(bad))).toThrow(ProtocolError);
    }
  });
});

describe('strict frame parsing', () => {
  test('valid frames', () => {
    expect(parseServerFrame('{"type":"update-saved","snapshotId":"s","clock":3}')).toEqual({
      type: 'update-saved',
      snapshotId: 's',
      clock: 3
    });
    expect(parseServerFrame('{"type":"document","updates":[]}')).toMatchObject({
      type: 'document',
      snapshot: undefined,
      updates: [],
      snapshotProofChain: []
    });
    expect(parseServerFrame('{"type":"something-new"}')).toEqual({ type: 'unknown', rawType: 'something-new' });
  });

  test.each([
    'not json',
    '[]',
    'null',
    '{"no":"type"}',
    '{"type":5}',
    '{"type":"update-saved","snapshotId":"s","clock":-1}',
    '{"type":"update-saved","snapshotId":"s","clock":1.5}',
    '{"type":"update-saved","clock":1}',
    '{"type":"update-save-failed","snapshotId":"s","clock":1,"requiresNewSnapshot":"yes"}',
    '{"type":"document","updates":{}}',
    '{"type":"document","snapshot":"x","updates":[]}',
    '{"type":"document","updates":[],"snapshotProofChain":[{"snapshotId":1}]}',
    '{"type":"snapshot"}',
    '{"type":"snapshot-saved"}'
  ])('rejects %s with a protocol error', (text) => {
    expect(() => parseServerFrame(text)).toThrow(ProtocolError);
  });

  test('random garbage never throws anything but a protocol error', () => {
    const rnd = (n: number) => crypto.randomBytes(n).toString('latin1');
    const shapes = [
      () => rnd(20),
      () => JSON.stringify({ type: 'update', ...JSON.parse(JSON.stringify({ a: rnd(3) })) }),
      () => JSON.stringify({ type: 'document', snapshot: { publicData: rnd(4) }, updates: [rnd(2), 5] }),
      () => JSON.stringify({ type: 'ephemeral-message', nonce: 1, ciphertext: [], publicData: null }),
      () => JSON.stringify({ type: 'snapshot-save-failed', updates: [{}], snapshotProofChain: null })
    ];
    const key = generateKey();
    const kp = createSignatureKeyPair();
    for (let i = 0; i < 300; i++) {
      const text = shapes[i % shapes.length]();
      let frame;
      try {
        frame = parseServerFrame(text);
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
        continue;
      }
      // embedded messages: the verify functions return error codes, never throw
      const embedded: unknown[] = [];
      if (frame.type === 'document' || frame.type === 'snapshot-save-failed') {
        embedded.push(frame.snapshot, ...frame.updates);
      } else if (frame.type === 'update') {
        embedded.push(frame.update);
      } else if (frame.type === 'ephemeral-message') {
        embedded.push(frame.message);
      }
      for (const m of embedded) {
        const s = verifyAndDecryptSnapshot(m, { key, currentDocId: 'd', currentClientPublicKey: kp.publicKey });
        expect(s.error).toBeInstanceOf(SecsyncError);
        const u = verifyAndDecryptUpdate(m, { key, currentDocId: 'd', currentActiveSnapshotId: 's', currentClock: -1 });
        expect(u.error).toBeInstanceOf(SecsyncError);
        const e = verifyAndDecryptEphemeralMessage(m, {
          key,
          currentDocId: 'd',
          session: createEphemeralSession(),
          signatureKeyPair: kp
        });
        expect(e.error).toBeInstanceOf(SecsyncError);
      }
    }
  });
});

describe('updates', () => {
  test('docId is checked (stricter than the reference)', () => {
    const key = generateKey();
    const kp = createSignatureKeyPair();
    const u = createUpdate(utf8Encode('[]'), { docId: 'doc-a', pubKey: b64encode(kp.publicKey), refSnapshotId: 's' }, key, kp, 0);
    const params = { key, currentActiveSnapshotId: 's', currentClock: -1 };
    expect(verifyAndDecryptUpdate(u, { ...params, currentDocId: 'doc-a' }).error).toBeNull();
    expect(verifyAndDecryptUpdate(u, { ...params, currentDocId: 'doc-b' }).error?.code).toBe('SECSYNC_ERROR_213');
  });
});

describe('ephemeral sessions', () => {
  const key = new Uint8Array(32).fill(7);
  const docId = 'doc';

  function setup() {
    const a = { kp: createSignatureKeyPair(), session: createEphemeralSession() };
    const b = { kp: createSignatureKeyPair(), session: createEphemeralSession() };
    const send = (from: typeof a, type: Parameters<typeof createEphemeralMessage>[1], content: Uint8Array) => {
      const counter = from.session.counter++;
      return createEphemeralMessage(
        content,
        type,
        { docId, pubKey: b64encode(from.kp.publicKey) },
        key,
        from.kp,
        from.session.id,
        counter
      );
    };
    const receive = (to: typeof a, message: unknown, strictDocId = false) =>
      verifyAndDecryptEphemeralMessage(message, {
        key,
        currentDocId: docId,
        session: to.session,
        signatureKeyPair: to.kp,
        strictDocId
      });
    return { a, b, send, receive };
  }

  test('handshake, delivery, and a verified counter never goes down', () => {
    const { a, b, send, receive } = setup();
    const init = send(a, 'initialize', new Uint8Array());
    const r1 = receive(b, init);
    expect(r1).toMatchObject({ error: null, requestProof: true });
    const pr = send(b, 'proofAndRequestProof', r1.proof as Uint8Array);
    const r2 = receive(a, pr);
    expect(r2).toMatchObject({ error: null, sessionVerified: true, requestProof: false });
    const proof = send(a, 'proof', r2.proof as Uint8Array);
    expect(receive(b, proof)).toMatchObject({ error: null, sessionVerified: true });
    const m1 = send(a, 'message', utf8Encode('one'));
    const m2 = send(a, 'message', utf8Encode('two'));
    expect(receive(b, m1).content).toEqual(utf8Encode('one'));
    expect(receive(b, m2).content).toEqual(utf8Encode('two'));
    const aPub = b64encode(a.kp.publicKey);
    const counterAfter = b.session.validSessions[aPub].sessionCounter;
    // replays: the proof must not reset the counter, so m1/m2 stay rejected
    expect(receive(b, proof).error?.code).toBe('SECSYNC_ERROR_303');
    expect(b.session.validSessions[aPub].sessionCounter).toBe(counterAfter);
    expect(receive(b, m1).error?.code).toBe('SECSYNC_ERROR_303');
    expect(receive(b, m2).error?.code).toBe('SECSYNC_ERROR_303');
    expect(receive(b, init).error?.code).toBe('SECSYNC_ERROR_303');
    // a later message still works
    expect(receive(b, send(a, 'message', utf8Encode('three'))).content).toEqual(utf8Encode('three'));
  });

  test('a proof for another session, a message without session, another docId', () => {
    const { a, b, send, receive } = setup();
    const wrongProof = createEphemeralSessionProof(generateId(), a.session.id, a.kp);
    expect(receive(b, send(a, 'proof', wrongProof))).toMatchObject({ error: null });
    expect(b.session.validSessions).toEqual({});
    const early = receive(b, send(a, 'message', utf8Encode('x')));
    expect(early.error?.code).toBe('SECSYNC_ERROR_302');
    expect(early.requestProof).toBe(true);
    const foreign = createEphemeralMessage(
      new Uint8Array(),
      'initialize',
      { docId: 'other', pubKey: b64encode(a.kp.publicKey) },
      key,
      a.kp,
      a.session.id,
      a.session.counter++
    );
    expect(receive(b, foreign)).toMatchObject({ error: null, dropped: true });
    expect(receive(b, foreign, true).error?.code).toBe('SECSYNC_ERROR_306');
  });

  test('counters must be uint32 and content bytes', () => {
    const kp = createSignatureKeyPair();
    const pd = { docId, pubKey: b64encode(kp.publicKey) };
    expect(() => createEphemeralMessage(new Uint8Array(), 'message', pd, key, kp, generateId(), 2 ** 32)).toThrow(
      ProtocolError
    );
    expect(() => createEphemeralMessage(new Uint8Array(), 'message', pd, key, kp, 'short', 1)).toThrow(ProtocolError);
  });
});

describe('awareness identity', () => {
  test('claimed pubKey', () => {
    expect(awarenessClaimedPubKey({ pubKey: 'k', secsync: { pubKey: 'k' } })).toBe('k');
    expect(awarenessClaimedPubKey({ secsync: { pubKey: 'k' } })).toBe('k');
    expect(awarenessClaimedPubKey({ user: { publicKey: 'k' } })).toBe('k');
    expect(awarenessClaimedPubKey({ pubKey: 'k', secsync: { pubKey: 'x' } })).toBeUndefined();
    expect(awarenessClaimedPubKey({ pubKey: 5 })).toBeUndefined();
    expect(awarenessClaimedPubKey({ user: { name: 'n' } })).toBeUndefined();
    expect(awarenessClaimedPubKey(null)).toBeUndefined();
  });

  test('fingerprint', () => {
    const fp = fingerprint(b64encode(new Uint8Array(32)));
    expect(fp).toMatch(/^[0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4} [0-9a-f]{4}$/);
    expect(fingerprint('!!')).toBe('????');
  });
});

describe('share links', () => {
  const key = new Uint8Array(32).map((_, i) => i);
  const k = b64encode(key);

  test('Jupyter link without relay', () => {
    const link = `https://hub.example.org/user/ada/secsync/open/doc_1-x#key=${k}`;
    const parsed = parseShareLink(link);
    expect(parsed).toEqual({
      docId: 'doc_1-x',
      key,
      relayUrl: 'wss://hub.example.org/user/ada/secsync',
      jupyterBase: 'https://hub.example.org/user/ada/',
      explicitRelay: false
    });
    expect(formatShareLink(parsed)).toBe(link);
  });

  test('Jupyter link with a standalone relay', () => {
    const link = `http://localhost:8888/secsync/open/abc?relay=${encodeURIComponent('ws://relay.example:9000/r')}#key=${k}`;
    const parsed = parseShareLink(link);
    expect(parsed).toMatchObject({
      docId: 'abc',
      relayUrl: 'ws://relay.example:9000/r',
      jupyterBase: 'http://localhost:8888/',
      explicitRelay: true
    });
    expect(formatShareLink(parsed)).toBe(link);
  });

  test('standalone relay link', () => {
    const link = `ws://127.0.0.1:8765/prefix/D0c#key=${k}`;
    const parsed = parseShareLink(link);
    expect(parsed).toEqual({ docId: 'D0c', key, relayUrl: 'ws://127.0.0.1:8765/prefix', explicitRelay: true });
    expect(formatShareLink({ docId: 'D0c', key, relayUrl: 'ws://127.0.0.1:8765/prefix' })).toBe(link);
    expect(parseShareLink(`wss://r.example/D0c#key=${k}`).relayUrl).toBe('wss://r.example');
  });

  test.each([
    ['no key', 'ws://h/doc'],
    ['short key', `ws://h/doc#key=${b64encode(new Uint8Array(31))}`],
    ['padded key', `ws://h/doc#key=${k}=`],
    ['two keys', `ws://h/doc#key=${k}&key=${k}`],
    ['bad docId', `ws://h/do.c#key=${k}`],
    ['long docId', `ws://h/${'a'.repeat(129)}#key=${k}`],
    ['query on relay link', `ws://h/doc?x=1#key=${k}`],
    ['http without open path', `http://h/lab/doc#key=${k}`],
    ['unknown query', `http://h/secsync/open/doc?foo=1#key=${k}`],
    ['relay not ws', `http://h/secsync/open/doc?relay=${encodeURIComponent('http://x')}#key=${k}`],
    ['ftp', `ftp://h/doc#key=${k}`],
    ['not a url', 'doc#key=x']
  ])('rejects %s', (_name, link) => {
    expect(() => parseShareLink(link)).toThrow(ProtocolError);
  });
});

describe('sync engine (sans-IO, engine.ts)', () => {
  const key = new Uint8Array(32).fill(3);
  const docId = 'engine-doc';

  /** An engine on a fresh Y.Doc, connected (no socket: frames in, frames out). */
  function engine(options: SyncEngineOptions<Uint8Array> = {}) {
    const doc = new Y.Doc();
    const kp = createSignatureKeyPair();
    const events: string[] = [];
    const e = new SyncEngine<Uint8Array>(docId, key, new YDocAdapter(doc), kp, {
      ...options,
      onEvent: (name) => events.push(name)
    });
    e.connecting();
    e.connected();
    return { e, doc, kp, pub: b64encode(kp.publicKey), events, text: () => doc.getText('t').toString() };
  }

  /** Another writer: its document, snapshots and updates. */
  function writer() {
    const kp = createSignatureKeyPair();
    const doc = new Y.Doc();
    let clock = 0;
    return {
      kp,
      pub: b64encode(kp.publicKey),
      initialSnapshot(text: string) {
        doc.getText('t').insert(0, text);
        return createInitialSnapshot(
          Y.encodeStateAsUpdate(doc),
          { docId, pubKey: b64encode(kp.publicKey), snapshotId: generateId(), parentSnapshotId: '', parentSnapshotUpdateClocks: {} },
          key,
          kp
        );
      },
      childSnapshot(parent: ReturnType<typeof createInitialSnapshot>, clocks: Record<string, number>) {
        return createSnapshot(
          Y.encodeStateAsUpdate(doc),
          {
            docId,
            pubKey: b64encode(kp.publicKey),
            snapshotId: generateId(),
            parentSnapshotId: parent.publicData.snapshotId,
            parentSnapshotUpdateClocks: clocks
          },
          key,
          kp,
          snapshotProofEntry(parent).snapshotCiphertextHash,
          parent.publicData.parentSnapshotProof
        );
      },
      update(snapshotId: string, text: string, at: Y.Doc = doc) {
        const sv = Y.encodeStateVector(at);
        at.getText('t').insert(at.getText('t').length, text);
        const change = Y.encodeStateAsUpdate(at, sv);
        return createUpdate(
          serializeUpdates([change]),
          { docId, pubKey: b64encode(kp.publicKey), refSnapshotId: snapshotId },
          key,
          kp,
          clock++
        );
      },
      doc
    };
  }

  const frames = (e: SyncEngine) => e.takeOutbox().map((f) => JSON.parse(f) as Record<string, any>);

  test('a document frame with a forged update keeps the verified updates before it and fails with its code (212)', () => {
    const { e, text } = engine();
    const m = writer();
    const n = writer();
    const s = m.initialSnapshot('base');
    const sid = s.publicData.snapshotId;
    Y.applyUpdate(n.doc, Y.encodeStateAsUpdate(m.doc));
    const u0 = m.update(sid, '+a');
    const u1 = m.update(sid, '+b');
    const forged = { ...u1, signature: u0.signature };
    const fromN = n.update(sid, '+n', n.doc);
    e.receive(JSON.stringify({ type: 'document', snapshot: s, updates: [u0, forged, fromN] }));
    expect(e.state).toBe('failed');
    expect(e.errors.map((x) => x.code)).toEqual(['SECSYNC_ERROR_212']);
    // the update after the forged one is not applied (the relay is not trusted past it)
    expect(text()).toBe('base+a');
  });

  test('a snapshot behind a one-entry proof chain must record our acknowledged clock (102)', () => {
    const m = writer();
    const base = m.initialSnapshot('base');
    const known = (ownPub: string, own: number) =>
      KnownSnapshot.fromJSON({ ...snapshotProofEntry(base), updateClocks: { [ownPub]: own } });
    for (const [recorded, expected] of [
      [1, 'failed'],
      [2, 'connected']
    ] as const) {
      const kp = createSignatureKeyPair();
      const pub = b64encode(kp.publicKey);
      const doc = new Y.Doc();
      Y.applyUpdate(doc, Y.encodeStateAsUpdate(m.doc));
      const e = new SyncEngine(docId, key, new YDocAdapter(doc), kp, { knownSnapshot: known(pub, 2) });
      expect(e.connectionParams()).toMatchObject({ mode: 'delta', knownSnapshotId: base.publicData.snapshotId });
      e.connecting();
      e.connected();
      const child = m.childSnapshot(base, { [pub]: recorded });
      e.receive({ type: 'document', snapshot: child, snapshotProofChain: [snapshotProofEntry(child)], updates: [] });
      expect(e.state).toBe(expected);
      if (expected === 'failed') {
        expect(e.errors[0].code).toBe('SECSYNC_ERROR_102');
      } else {
        expect(e.documentState).toBe('complete');
        expect(e.active?.snapshotId).toBe(child.publicData.snapshotId);
      }
    }
  });

  test('our update rejected 5 times in a row makes the engine reconnect; local changes are kept', () => {
    const { e, doc, events } = engine();
    const m = writer();
    const s = m.initialSnapshot('base');
    e.receive({ type: 'document', snapshot: s, updates: [] });
    expect(e.documentState).toBe('complete');
    frames(e); // the ephemeral initialize
    const sv = Y.encodeStateVector(doc);
    doc.getText('t').insert(0, 'mine ');
    e.addChanges([Y.encodeStateAsUpdate(doc, sv)]);
    e.flush();
    for (let i = 1; i <= 5; i++) {
      const [sent] = frames(e);
      expect(sent.publicData).toMatchObject({ refSnapshotId: s.publicData.snapshotId, clock: 0 });
      expect(e.reconnectRequested).toBe(false);
      e.receive({ type: 'update-save-failed', snapshotId: s.publicData.snapshotId, clock: 0 });
      expect(e.updateSaveFailures).toBe(i);
    }
    expect(e.reconnectRequested).toBe(true);
    expect(events).toContain('reconnect');
    expect(e.outbox).toEqual([]); // no sixth try on this connection
    e.disconnected();
    expect(e.pending.length).toBe(1);
    expect(e.updateSaveFailures).toBe(0);
    expect(e.connectionParams().mode).toBe('delta');
  });

  test('pending local changes go out merged into one update; an acknowledgement sends the next batch', () => {
    const { e, doc } = engine();
    const m = writer();
    const s = m.initialSnapshot('');
    e.receive({ type: 'document', snapshot: s, updates: [] });
    frames(e);
    const edit = (t: string) => {
      const sv = Y.encodeStateVector(doc);
      doc.getText('t').insert(doc.getText('t').length, t);
      e.addChanges([Y.encodeStateAsUpdate(doc, sv)]);
    };
    for (let i = 0; i < MAX_UPDATES_IN_FLIGHT; i++) {
      edit('a'); // each goes out without waiting for an acknowledgement
      e.flush();
    }
    edit('b');
    edit('c');
    e.flush(); // as many updates in flight as allowed: nothing more goes out
    const first = frames(e);
    expect(first.map((f) => f.publicData.clock)).toEqual([...Array(MAX_UPDATES_IN_FLIGHT).keys()]);
    e.receive({ type: 'update-saved', snapshotId: s.publicData.snapshotId, clock: 0 });
    const [second] = frames(e);
    expect(second.publicData.clock).toBe(MAX_UPDATES_IN_FLIGHT);
    const changesOf = (sent: Record<string, any>, currentClock: number) => {
      const r = verifyAndDecryptUpdate(sent, {
        key,
        currentDocId: docId,
        currentActiveSnapshotId: s.publicData.snapshotId,
        currentClock
      });
      if (r.error) {
        throw r.error;
      }
      return deserializeUpdates(r.content);
    };
    const merged = changesOf(second, MAX_UPDATES_IN_FLIGHT - 1);
    expect(merged.length).toBe(1); // b and c in one Yjs update
    const peer = new Y.Doc();
    const earlier = first.flatMap((f, i) => changesOf(f, i - 1));
    for (const change of [...earlier, ...merged]) {
      Y.applyUpdate(peer, change);
    }
    expect(peer.getText('t').toString()).toBe('a'.repeat(MAX_UPDATES_IN_FLIGHT) + 'bc');
  });

  test('an ephemeral message for another document is recorded as 306 (as the Python engine)', () => {
    const { e } = engine();
    const m = writer();
    e.receive({ type: 'document', snapshot: m.initialSnapshot('x'), updates: [] });
    const session = createEphemeralSession();
    const foreign = createEphemeralMessage(new Uint8Array(), 'initialize', { docId: 'other', pubKey: m.pub }, key, m.kp, session.id, 1);
    e.receive({ type: 'ephemeral-message', ...foreign });
    expect(e.ephemeralErrors.map((x) => x.code)).toEqual(['SECSYNC_ERROR_306']);
  });

  test('snapshot policy: 300 updates or 1,000,000 bytes of update ciphertext', () => {
    const info = { activeSnapshotId: 's', updatesSinceSnapshot: 0, updateBytesSinceSnapshot: 0, pendingChanges: 1 };
    expect(defaultSnapshotPolicy({ ...info, updatesSinceSnapshot: 299 })).toBe(false);
    expect(defaultSnapshotPolicy({ ...info, updatesSinceSnapshot: 300 })).toBe(true);
    expect(defaultSnapshotPolicy({ ...info, updateBytesSinceSnapshot: 999_999 })).toBe(false);
    expect(defaultSnapshotPolicy({ ...info, updateBytesSinceSnapshot: 1_000_000 })).toBe(true);
    // the labextension's {maxUpdates} setting keeps the same byte threshold
    expect(snapshotPolicyFunction({ maxUpdates: 3 })({ ...info, updateBytesSinceSnapshot: 1_000_000 })).toBe(true);
    expect(snapshotPolicyFunction({ maxUpdates: 3 })({ ...info, updatesSinceSnapshot: 2 })).toBe(false);
  });
});
