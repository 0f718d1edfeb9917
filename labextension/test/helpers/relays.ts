/**
 * Relays for the engine tests: the reference relay (shared/harness/ref-server.mjs, run from
 * $HARNESS_HOME) and the Python relay (.venv/bin/secsync-relay); both are required.
 * Plus a websocket man-in-the-middle proxy to cut connections and replay frames.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { HARNESS_HOME, REPO_DIR, setupHarness } from './paths';

export interface RelayHandle {
  kind: 'reference' | 'python';
  /** ws://127.0.0.1:port (connection URL = base + '/' + docId) */
  base: string;
  stop(): Promise<void>;
  /** output of the relay process so far (for failure messages) */
  log(): string;
}

/** The Python relay (`make setup` installs it); SECSYNC_PYTHON_RELAY names another binary. */
export const PYTHON_RELAY =
  process.env.SECSYNC_PYTHON_RELAY || path.join(REPO_DIR, '.venv', 'bin', 'secsync-relay');

/** True when the Python relay is installed and starts (`secsync-relay --help` exits 0). */
export function pythonRelayWorks(): boolean {
  if (!fs.existsSync(PYTHON_RELAY)) {
    return false;
  }
  try {
    execFileSync(PYTHON_RELAY, ['--help'], { stdio: 'ignore', timeout: 20000 });
    return true;
  } catch {
    return false;
  }
}

const RELAY_KINDS: ReadonlyArray<RelayHandle['kind']> = ['reference', 'python'];

/**
 * Relays to test against: both, always. A relay that cannot start fails the tests that use
 * it (never silently fewer cases). SECSYNC_TEST_RELAYS=reference or =python narrows the run
 * on purpose; an unknown name there is an error.
 */
export function availableRelayKinds(): Array<RelayHandle['kind']> {
  const env = process.env.SECSYNC_TEST_RELAYS;
  if (env === undefined || env.trim() === '') {
    return [...RELAY_KINDS];
  }
  const kinds = env.split(',').map((k) => k.trim());
  const unknown = kinds.filter((k) => !(RELAY_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new Error(
      `SECSYNC_TEST_RELAYS: unknown relay ${unknown.map((k) => JSON.stringify(k)).join(', ')}` +
        ` (known: ${RELAY_KINDS.join(', ')})`
    );
  }
  return kinds as Array<RelayHandle['kind']>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) {
      throw new Error(`relay exited with ${proc.exitCode}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`relay did not listen on ${port} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function track(proc: ChildProcess): () => string {
  let out = '';
  proc.stdout?.on('data', (d) => (out += d.toString()));
  proc.stderr?.on('data', (d) => (out += d.toString()));
  return () => out;
}

function stopper(proc: ChildProcess): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        resolve();
        return;
      }
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
      setTimeout(() => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGKILL');
        }
      }, 3000);
    });
}

export interface RelayOptions {
  port?: number;
  /** Python relay: SQLite file (default: a fresh temp file) */
  db?: string;
  /** Python relay: accept only these session keys (default: --open) */
  sessionKeys?: string[];
}

export async function startRelay(
  kind: RelayHandle['kind'],
  options: RelayOptions = {}
): Promise<RelayHandle> {
  const port = options.port ?? (await freePort());
  let proc: ChildProcess;
  if (kind === 'reference') {
    setupHarness();
    proc = spawn('node', [path.join(HARNESS_HOME, 'ref-server.mjs')], {
      env: { ...process.env, PORT: String(port), QUIET: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    });
  } else {
    if (!fs.existsSync(PYTHON_RELAY)) {
      throw new Error(
        `the Python relay ${PYTHON_RELAY} is missing: run \`make setup\`` +
          ' (or set SECSYNC_TEST_RELAYS=reference to leave it out on purpose)'
      );
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'secsync-pyrelay-'));
    const access = ['--open'];
    if (options.sessionKeys) {
      const file = path.join(dir, 'session-keys.txt');
      fs.writeFileSync(file, options.sessionKeys.join('\n') + '\n');
      access.splice(0, 1, '--session-keys', file);
    }
    const db = options.db ?? path.join(dir, 'relay.sqlite');
    proc = spawn(
      PYTHON_RELAY,
      ['--host', '127.0.0.1', '--port', String(port), '--db', db, ...access],
      { stdio: ['ignore', 'pipe', 'pipe'] }
    );
  }
  const log = track(proc);
  const stop = stopper(proc);
  try {
    await waitForPort(port, proc, 20000);
  } catch (err) {
    await stop();
    throw new Error(`${String(err)}\n${log()}`);
  }
  return { kind, base: `ws://127.0.0.1:${port}`, stop, log };
}

/** A websocket proxy between clients and a relay that can cut, block and inject frames. */
export class WsProxy {
  readonly base: string;
  /** connection paths (incl. query) seen, in order */
  readonly urls: string[] = [];
  /** frames relay -> client, per client connection, in order */
  readonly downstream: Array<{ conn: number; frame: string }> = [];
  private blocked = false;
  private held: Array<{ client: WebSocket; frame: string }> | null = null;
  private conns: Array<{ id: number; client: WebSocket; upstream: WebSocket }> = [];
  private nextId = 0;

  private constructor(
    private readonly server: WebSocketServer,
    port: number,
    private readonly target: string
  ) {
    this.base = `ws://127.0.0.1:${port}`;
    server.on('connection', (client, req) => this.onConnection(client, req.url || '/'));
  }

  static async start(target: string): Promise<WsProxy> {
    const port = await freePort();
    const server = new WebSocketServer({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    return new WsProxy(server, port, target);
  }

  private onConnection(client: WebSocket, url: string): void {
    this.urls.push(url);
    if (this.blocked) {
      client.terminate();
      return;
    }
    const id = this.nextId++;
    const upstream = new WebSocket(this.target + url);
    const early: string[] = [];
    upstream.on('open', () => {
      for (const f of early.splice(0)) {
        upstream.send(f);
      }
    });
    upstream.on('message', (data) => {
      const frame = data.toString();
      this.downstream.push({ conn: id, frame });
      if (this.held) {
        this.held.push({ client, frame });
      } else if (client.readyState === WebSocket.OPEN) {
        client.send(frame);
      }
    });
    client.on('message', (data) => {
      const frame = data.toString();
      if (upstream.readyState === WebSocket.OPEN) {
        upstream.send(frame);
      } else {
        early.push(frame);
      }
    });
    const closeBoth = () => {
      client.terminate();
      upstream.terminate();
      this.conns = this.conns.filter((c) => c.id !== id);
    };
    upstream.on('close', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    client.on('error', closeBoth);
    this.conns.push({ id, client, upstream });
  }

  /** Drops every open connection (both directions). */
  cutAll(): void {
    for (const c of this.conns.splice(0)) {
      c.client.terminate();
      c.upstream.terminate();
    }
  }

  /** While blocked, new connections are dropped at once. */
  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
  }

  /** Holds relay -> client frames (hold) and delivers them in order (release). */
  hold(): void {
    this.held = this.held ?? [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const { client, frame } of held) {
      if (client.readyState === WebSocket.OPEN) {
        client.send(frame);
      }
    }
  }

  openConnections(): number[] {
    return this.conns.map((c) => c.id);
  }

  /** Sends a frame to the client of connection `conn` as if it came from the relay. */
  inject(conn: number, frame: string): void {
    const c = this.conns.find((x) => x.id === conn);
    if (!c) {
      throw new Error(`no open connection ${conn}`);
    }
    c.client.send(frame);
  }

  async stop(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
