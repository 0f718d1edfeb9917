/**
 * The start-up shared by the browser-engine tests against our Python relay (epochs-relay,
 * membership-relay, links-relay, heads, rememberedDamaged): one relay per test file (or per
 * describe block it is called in), browser sync clients on it (destroyed after each test),
 * waiting for a condition, and the Python member
 * (test/interop/py_member.py) driven one JSON request / answer per line.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll } from 'vitest';
import * as Y from 'yjs';
import {
  ready,
  SecsyncYjsClient,
  SecsyncYjsClientOptions,
  SignatureKeyPair,
  WebSocketConstructor
} from '../../src/secsync';
import { b64encode } from '../../src/secsync/base64';
import { LABEXT_DIR, REPO_DIR } from './paths';
import { RelayHandle, startRelay } from './relays';

/* eslint-disable @typescript-eslint/no-explicit-any */
export const WS = WebSocket as unknown as WebSocketConstructor;

/** A member's public key (base64), as the log names it. */
export const pub = (k: SignatureKeyPair): string => b64encode(k.publicKey);

/** Resolves once `cond()` holds; fails after `timeoutMs` naming `what`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface OpenClient {
  c: SecsyncYjsClient;
  text: Y.Text;
}

export interface PythonRelayClients {
  /** the relay of this test file (started before its first test) */
  readonly relay: RelayHandle;
  /** A connected client of `docId` as `keyPair` (on `base`, default the relay); its text. */
  open(
    docId: string,
    keyPair: SignatureKeyPair,
    options?: Partial<SecsyncYjsClientOptions>,
    base?: string
  ): OpenClient;
}

/** Registers the hooks of a test file against the Python relay (call at the top level, or in a
 * describe block for its tests only). */
export function usePythonRelay(): PythonRelayClients {
  let relay: RelayHandle | undefined;
  const clients: SecsyncYjsClient[] = [];
  beforeAll(async () => {
    await ready();
    relay = await startRelay('python');
  });
  afterAll(async () => {
    await relay?.stop();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) {
      c.destroy();
    }
  });
  const started = (): RelayHandle => {
    if (!relay) {
      throw new Error('the Python relay is not started (use it inside a test)');
    }
    return relay;
  };
  return {
    get relay(): RelayHandle {
      return started();
    },
    open(docId, keyPair, options = {}, base) {
      const ydoc = new Y.Doc();
      const c = new SecsyncYjsClient({
        url: `${base ?? started().base}/${docId}`,
        docId,
        signatureKeyPair: keyPair,
        ydoc,
        WebSocketImpl: WS,
        batchDelayMs: 0,
        maxReconnectDelayMs: 300,
        ...options
      } as SecsyncYjsClientOptions);
      clients.push(c);
      c.connect();
      return { c, text: ydoc.getText('content') };
    }
  };
}

/** The Python member (test/interop/py_member.py), one JSON request / answer per line. */
export class PyMember {
  private answers: Array<(a: any) => void> = [];
  private constructor(private readonly proc: ChildProcessWithoutNullStreams) {
    readline.createInterface({ input: proc.stdout }).on('line', (line) => this.answers.shift()?.(JSON.parse(line)));
  }
  /** A Python member process talking to the relay at `relayBase`. */
  static start(relayBase: string): PyMember {
    const python = path.join(REPO_DIR, '.venv', 'bin', 'python');
    return new PyMember(spawn(python, [path.join(LABEXT_DIR, 'test', 'interop', 'py_member.py'), relayBase]));
  }
  /** the answer (throws with Python's error unless `mayFail`) */
  async call(req: Record<string, unknown>, mayFail = false): Promise<any> {
    const answer = await new Promise<any>((resolve) => {
      this.answers.push(resolve);
      this.proc.stdin.write(JSON.stringify(req) + '\n');
    });
    if (!answer.ok && !mayFail) {
      throw new Error(`python ${String(req.op)}: ${answer.error}`);
    }
    return answer;
  }
  async stop(): Promise<void> {
    this.proc.stdin.end();
    await new Promise((r) => this.proc.on('exit', r));
  }
}
