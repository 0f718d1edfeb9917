/**
 * The shared conformance scenarios (tests/scenarios/*.json) through the browser's sans-IO
 * SyncEngine (engine.ts), without a relay. tests/client/test_scenarios.py runs the same files
 * through the Python engine; the format is described in tests/scenarios/README.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { ready } from '../src/secsync';
import { REPO_DIR } from './helpers/paths';
import { runLinkJoin, ScenarioRunner } from './scenarioRunner';

const DIR = path.join(REPO_DIR, 'tests', 'scenarios');
const FILES = fs
  .readdirSync(DIR)
  .filter((name) => name.endsWith('.json'))
  .sort();

/* eslint-disable @typescript-eslint/no-explicit-any */
function load(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8'));
}

beforeAll(async () => {
  await ready();
});

describe('conformance scenarios', () => {
  test('the scenario files are there and cover every client error code', () => {
    expect(FILES.length).toBeGreaterThanOrEqual(70);
    const covered = new Set(FILES.flatMap((name) => load(name).covers as string[]));
    const codes = [
      100, 101, 102, 103, 104, 105, 110, 111, 112, 113, 114, 115, 201, 202, 203, 204, 205, 206,
      211, 212, 213, 214, 215, 300, 301, 302, 303, 304, 305, 306, 307, 308, 401, 501, 601,
      // issue 12: lockboxes, keys per epoch, epochs of snapshots
      761, 762, 763, 766, 767, 768, 769
    ].map((n) => `SECSYNC_ERROR_${n}`);
    expect(codes.filter((code) => !covered.has(code))).toEqual([]);
  });

  for (const name of FILES) {
    test(name.replace(/\.json$/, ''), () => {
      const sc = load(name);
      if (sc.kind === 'link-join') {
        runLinkJoin(sc);
      } else {
        new ScenarioRunner(sc).run();
      }
    });
  }
});
