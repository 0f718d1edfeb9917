/**
 * Test hygiene (issue 9 item 5): the engine tests run against both relays; a relay that is
 * missing fails them instead of silently dropping its cases.
 */
import { afterEach, expect, test, vi } from 'vitest';

const saved = { ...process.env };

afterEach(() => {
  process.env = { ...saved };
  vi.resetModules();
});

async function freshRelays(env: Record<string, string | undefined>) {
  for (const [k, value] of Object.entries(env)) {
    if (value === undefined) {
      delete process.env[k];
    } else {
      process.env[k] = value;
    }
  }
  vi.resetModules();
  return import('./helpers/relays');
}

test('both relays are always among the parameters, even when one is missing', async () => {
  const relays = await freshRelays({
    SECSYNC_TEST_RELAYS: undefined,
    SECSYNC_PYTHON_RELAY: '/nonexistent/bin/secsync-relay'
  });
  expect(relays.pythonRelayWorks()).toBe(false);
  expect(relays.availableRelayKinds()).toEqual(['reference', 'python']);
  // … and the missing one fails loudly, saying what to do
  await expect(relays.startRelay('python')).rejects.toThrow(/secsync-relay is missing: run `make setup`/);
});

test('SECSYNC_TEST_RELAYS narrows the run on purpose; an unknown name is an error', async () => {
  let relays = await freshRelays({ SECSYNC_TEST_RELAYS: 'reference' });
  expect(relays.availableRelayKinds()).toEqual(['reference']);
  relays = await freshRelays({ SECSYNC_TEST_RELAYS: 'reference,pyhton' });
  expect(() => relays.availableRelayKinds()).toThrow(/unknown relay "pyhton"/);
});
