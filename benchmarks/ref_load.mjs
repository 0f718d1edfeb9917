// The reference load paths for benchmarks/load_bench.py: the published secsync 0.5.0 with
// yjs opening a document from one relay `document` frame (Yjs v1, the Python client's format).
//
// --mode client (default): the sync machine (createSyncMachine under xstate, as the reference
//   useYjsSync hook and the harness's ref-client.mjs run it). The frame is delivered by an
//   in-process stand-in for the WebSocket (no network) right after the socket "opens"; the
//   clock runs from the `message` event (the machine parses the JSON, verifies and decrypts
//   the snapshot and every update, applies them with Y.applyUpdate) until the machine is
//   connected with the document `complete` (ref-client.mjs's isLoaded()). Note: the machine
//   gathers a frame's changes with `changes = changes.concat(…)` per update, which is
//   quadratic in the number of updates: that is the reference client's real cost.
// --mode core: the same steps with the exported functions in a plain loop, without the
//   machine: JSON.parse, verifyAndDecryptSnapshot + Y.applyUpdate, then per update
//   parseUpdate + verifyAndDecryptUpdate (with the clock check) +
//   deserializeUint8ArrayUpdates, then Y.applyUpdate of every change in order.
//
// Run by load_bench.py from a directory whose node_modules is the harness's install
// ($HARNESS_HOME/node_modules: npm secsync 0.5.0, yjs 13.6.15, libsodium-wrappers 0.7.13).
//
//   node --expose-gc ref_load.mjs FRAME.json --doc-id ID --key HEX [--repeat N]
//                                 [--mode client|core]
// One JSON line per run on stdout: {"ms", "cpuMs", "textSha256", "textLength"}.
// Exit codes: 0 ok, 3 the machine failed or refused the document, 4 usage.
import crypto from "node:crypto";
import fs from "node:fs";
import sodium from "libsodium-wrappers";
import {
  createSyncMachine,
  deserializeUint8ArrayUpdates,
  parseUpdate,
  serializeUint8ArrayUpdates,
  verifyAndDecryptSnapshot,
  verifyAndDecryptUpdate,
} from "secsync";
import { createActor } from "xstate";
import * as Y from "yjs";

function usage(message) {
  console.error(`ref_load.mjs: ${message}`);
  console.error(
    "usage: node ref_load.mjs FRAME.json --doc-id ID --key HEX [--repeat N] [--mode client|core]"
  );
  process.exit(4);
}

const argv = process.argv.slice(2);
const opts = { repeat: 1, mode: "client" };
const positional = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const next = () => (i + 1 < argv.length ? argv[++i] : usage(`missing value for ${a}`));
  if (a === "--doc-id") opts.docId = next();
  else if (a === "--key") opts.key = next();
  else if (a === "--repeat") opts.repeat = parseInt(next(), 10);
  else if (a === "--mode") opts.mode = next();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else positional.push(a);
}
if (positional.length !== 1 || !opts.docId || !/^[0-9a-f]{64}$/.test(opts.key ?? "")) {
  usage("expected FRAME.json, --doc-id and a 64-hex --key");
}
if (!(opts.repeat >= 1)) usage("--repeat must be >= 1");
if (!["client", "core"].includes(opts.mode)) usage("--mode is client or core");

await sodium.ready;
const frameText = fs.readFileSync(positional[0], "utf8");
const documentKey = sodium.from_hex(opts.key);

// The socket: opens on the next tick, then delivers the frame as one message.
let deliver = null;
class FrameSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 1;
      this.dispatchEvent(new Event("open"));
      setTimeout(() => deliver(this), 0);
    }, 0);
  }
  send() {} // the machine's ephemeral "initialize" message goes nowhere
  close() {
    this.readyState = 3;
  }
}
globalThis.WebSocket = FrameSocket;

function loadOnce() {
  return new Promise((resolve, reject) => {
    const yDoc = new Y.Doc();
    const yText = yDoc.getText("content");
    const actor = createActor(createSyncMachine(), {
      input: {
        documentId: opts.docId,
        signatureKeyPair: sodium.crypto_sign_keypair(),
        websocketEndpoint: "ws://frame.invalid",
        websocketSessionKey: "load-bench",
        sodium,
        logging: "off",
        getNewSnapshotData: async () => {
          throw new Error("no snapshot while loading");
        },
        getSnapshotKey: async () => documentKey,
        shouldSendSnapshot: () => false,
        isValidClient: async () => true,
        applySnapshot: (data) => Y.applyUpdate(yDoc, data, "secsync-remote"),
        applyChanges: (changes) => changes.forEach((c) => Y.applyUpdate(yDoc, c, "secsync-remote")),
        applyEphemeralMessage: () => {},
        serializeChanges: (changes) => serializeUint8ArrayUpdates(changes, sodium),
        deserializeChanges: (s) => deserializeUint8ArrayUpdates(s, sodium),
        onDocumentUpdated: () => {},
      },
    });
    let t0 = 0;
    let cpu0 = null;
    let done = false;
    deliver = (socket) => {
      const event = new Event("message");
      event.data = frameText;
      cpu0 = process.cpuUsage();
      t0 = performance.now();
      socket.dispatchEvent(event);
    };
    actor.subscribe((snapshot) => {
      if (done) return;
      const ctx = snapshot.context;
      if (snapshot.matches("failed") || snapshot.matches("noAccess")) {
        done = true;
        const errors = ctx._snapshotAndUpdateErrors.map((e) => e.message);
        reject(new Error(`sync machine ${JSON.stringify(snapshot.value)} ${errors}`));
      } else if (cpu0 && snapshot.matches("connected") && ctx._documentDecryptionState === "complete") {
        done = true;
        const run = result(t0, cpu0, yText);
        actor.stop();
        resolve(run);
      }
    });
    actor.start();
  });
}

function result(t0, cpu0, yText) {
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const text = yText.toString();
  return {
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    textSha256: crypto.createHash("sha256").update(text, "utf8").digest("hex"),
    textLength: text.length,
  };
}

/** The core steps without the machine (see the header); throws on any verification error. */
async function loadCore() {
  const yDoc = new Y.Doc();
  const yText = yDoc.getText("content");
  const myPubKey = sodium.to_base64(sodium.crypto_sign_keypair().publicKey);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const frame = JSON.parse(frameText);
  const snapshot = frame.snapshot;
  const opened = verifyAndDecryptSnapshot(snapshot, documentKey, opts.docId, myPubKey, sodium);
  if (opened.error) throw opened.error;
  Y.applyUpdate(yDoc, opened.content, "secsync-remote");
  const clocks = {};
  const changes = [];
  for (const raw of frame.updates) {
    const update = parseUpdate(raw);
    const author = update.publicData.pubKey;
    const current = Number.isInteger(clocks[author]) ? clocks[author] : -1;
    const r = verifyAndDecryptUpdate(
      update,
      documentKey,
      snapshot.publicData.snapshotId,
      current,
      sodium
    );
    if (r.error) throw r.error;
    clocks[author] = r.clock;
    for (const change of deserializeUint8ArrayUpdates(sodium.to_string(r.content), sodium)) {
      changes.push(change);
    }
  }
  for (const change of changes) Y.applyUpdate(yDoc, change, "secsync-remote");
  return result(t0, cpu0, yText);
}

for (let i = 0; i < opts.repeat; i++) {
  globalThis.gc?.();
  try {
    const run = opts.mode === "core" ? await loadCore() : await loadOnce();
    process.stdout.write(JSON.stringify(run) + "\n");
  } catch (err) {
    console.error(`ref_load.mjs: ${err.message}`);
    process.exit(3);
  }
}
process.exit(0);
