/**
 * The relay policy of the labextension (src/relaypolicy.ts): which relay is "own",
 * "configured" or "foreign", what is refused, who gets the session key. The dialogs around it
 * are tested in Chromium (tests/e2e/test_security.py).
 */
import { describe, expect, it } from 'vitest';

import {
  IRelayContext,
  classifyRelay,
  isLoopbackHost,
  normalizeRelay,
  relayHost,
  relayRefusal,
  sameRelay,
  sessionKeyFor
} from '../src/relaypolicy';

const ctx: IRelayContext = {
  own: 'ws://127.0.0.1:8888/secsync',
  configured: 'wss://relay.example.org/team',
  allowInsecure: false
};

describe('relay policy', () => {
  it('compares relays by scheme, host, port and path only', () => {
    expect(sameRelay('wss://relay.example.org/team', 'wss://RELAY.example.org/team/')).toBe(true);
    expect(sameRelay('wss://relay.example.org:443/team', 'wss://relay.example.org/team')).toBe(
      true
    );
    expect(sameRelay('wss://relay.example.org/team', 'ws://relay.example.org/team')).toBe(false);
    expect(sameRelay('wss://relay.example.org/team', 'wss://relay.example.org:8443/team')).toBe(
      false
    );
    expect(sameRelay('wss://relay.example.org/team', 'wss://relay.example.org/team2')).toBe(false);
    expect(sameRelay('wss://relay.example.org/team', 'wss://relay.example.org')).toBe(false);
    expect(sameRelay('wss://relay.example.org.evil.test/team', 'wss://relay.example.org/team')).toBe(
      false
    );
    expect(sameRelay('wss://u:p@relay.example.org/team', 'wss://relay.example.org/team')).toBe(
      false
    );
    expect(sameRelay('https://relay.example.org/team', 'https://relay.example.org/team')).toBe(
      false
    );
    expect(sameRelay('', '')).toBe(false);
    expect(normalizeRelay('wss://relay.example.org/team?x=1')).toBe(null);
  });

  it('knows loopback hosts', () => {
    for (const host of ['localhost', 'LOCALHOST', 'a.localhost', '127.0.0.1', '127.1.2.3', '[::1]']) {
      expect(isLoopbackHost(host)).toBe(true);
    }
    for (const host of [
      'localhost.evil.test',
      '127.0.0.1.evil.test',
      '128.0.0.1',
      '10.0.0.1',
      '0.0.0.0',
      '127.0.0.256',
      'relay.example.test',
      '[::2]'
    ]) {
      expect(isLoopbackHost(host)).toBe(false);
    }
  });

  it('classifies relays', () => {
    expect(classifyRelay(null, ctx)).toBe('own');
    expect(classifyRelay('ws://127.0.0.1:8888/secsync/', ctx)).toBe('own');
    expect(classifyRelay('wss://relay.example.org/team', ctx)).toBe('configured');
    expect(classifyRelay('wss://relay.example.org/other', ctx)).toBe('foreign');
    expect(classifyRelay('wss://relay.example.org/team', { ...ctx, configured: '' })).toBe(
      'foreign'
    );
  });

  it('refuses plain ws:// to other hosts unless allowed', () => {
    expect(relayRefusal(null, ctx)).toBe(null);
    expect(relayRefusal('wss://elsewhere.test', ctx)).toBe(null);
    expect(relayRefusal('ws://localhost:9000', ctx)).toBe(null);
    expect(relayRefusal('ws://127.0.0.1:9000/x', ctx)).toBe(null);
    expect(relayRefusal('ws://elsewhere.test:9000', ctx)).toBe('plain ws:// to elsewhere.test:9000');
    expect(relayRefusal('ws://elsewhere.test:9000', { ...ctx, allowInsecure: true })).toBe(null);
    // also a configured relay
    const configured = { ...ctx, configured: 'ws://relay.example.org' };
    expect(relayRefusal('ws://relay.example.org', configured)).toBe(
      'plain ws:// to relay.example.org'
    );
    // this server's own relay is always allowed (same origin as the page)
    expect(relayRefusal('ws://10.0.0.5:8888/secsync', { ...ctx, own: 'ws://10.0.0.5:8888/secsync' })).toBe(
      null
    );
    expect(relayRefusal('http://elsewhere.test', ctx)).toMatch(/not a ws/);
  });

  it('gives the session key to the configured relay only', () => {
    expect(sessionKeyFor('wss://relay.example.org/team/', ctx, 'k')).toBe('k');
    expect(sessionKeyFor('wss://relay.example.org/team2', ctx, 'k')).toBe(undefined);
    expect(sessionKeyFor('wss://relay.example.org:444/team', ctx, 'k')).toBe(undefined);
    expect(sessionKeyFor('ws://relay.example.org/team', ctx, 'k')).toBe(undefined);
    expect(sessionKeyFor(null, ctx, 'k')).toBe(undefined);
    expect(sessionKeyFor('wss://relay.example.org/team', ctx, '')).toBe(undefined);
    expect(relayHost('wss://relay.example.org:8443/team')).toBe('relay.example.org:8443');
  });
});
