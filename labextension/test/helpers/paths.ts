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
/** shared/ (protocol.md, vectors/, harness/), next to the repository by default */
export const SHARED_DIR = process.env.SECSYNC_SHARED_DIR
  ? path.resolve(process.env.SECSYNC_SHARED_DIR)
  : path.resolve(REPO_DIR, '..', 'shared');
export const HARNESS_DIR = path.join(SHARED_DIR, 'harness');
export const HARNESS_HOME = process.env.HARNESS_HOME || path.join(os.tmpdir(), 'secsync-harness');
export const MAIN_VECTORS = path.join(SHARED_DIR, 'vectors', 'secsync-vectors.json');

/** Installs the reference harness (fast no-op when already installed). */
export function setupHarness(): void {
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
