import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** labextension/ */
export const LABEXT_DIR = path.resolve(here, '..', '..');
/** repository root */
export const REPO_DIR = path.resolve(LABEXT_DIR, '..');
/**
 * shared/ (protocol.md, vectors/, harness/), next to the repository by default;
 * SECSYNC_SHARED (as for pytest and the Makefile) or SECSYNC_SHARED_DIR name another place.
 */
const sharedEnv = process.env.SECSYNC_SHARED_DIR || process.env.SECSYNC_SHARED;
export const SHARED_DIR = sharedEnv ? path.resolve(sharedEnv) : path.resolve(REPO_DIR, '..', 'shared');
export const HARNESS_DIR = path.join(SHARED_DIR, 'harness');
export const HARNESS_HOME = process.env.HARNESS_HOME || path.join(os.tmpdir(), 'secsync-harness');
export const MAIN_VECTORS = path.join(SHARED_DIR, 'vectors', 'secsync-vectors.json');

/**
 * shared/ may have no write bits (CI): setup.sh's `cp -p` gives its copies in HARNESS_HOME
 * the same read-only mode, and copying over them again fails for a non-root user. Our own
 * copies are made writable before each setup.
 */
function makeHarnessCopiesWritable(): void {
  for (const dir of [HARNESS_HOME, path.join(HARNESS_HOME, 'lib')]) {
    if (!fs.existsSync(dir)) {
      continue;
    }
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      const st = fs.lstatSync(file);
      if (st.isFile() && (st.mode & 0o200) === 0) {
        fs.chmodSync(file, st.mode | 0o200);
      }
    }
  }
}

/** Installs the reference harness (fast no-op when already installed). */
export function setupHarness(): void {
  makeHarnessCopiesWritable();
  execFileSync(path.join(HARNESS_DIR, 'setup.sh'), {
    env: { ...process.env, HARNESS_HOME },
    stdio: ['ignore', 'ignore', 'inherit']
  });
}

/** Makes a fresh vectors file with the reference implementation for `seed`. */
export function makeVectors(seed: string): string {
  setupHarness();
  const out = path.join(
    fs.mkdtempSync(path.join(os.tmpdir(), 'secsync-vectors-')),
    `vectors-${seed}.json`
  );
  execFileSync(
    'node',
    [path.join(HARNESS_HOME, 'make-vectors.mjs'), '--seed', seed, '--out', out],
    { stdio: ['ignore', 'ignore', 'inherit'] }
  );
  return out;
}
