/**
 * The relay as a JupyterHub service (src/hubrelay.ts): which relay gets the Hub's OAuth
 * flow, and the flow itself against a scripted fetch. The real flow runs in Chromium against
 * a real JupyterHub (tests/hub/test_hub_browser.py).
 */
import { describe, expect, it } from 'vitest';

import { ensureHubServiceLogin, hubServiceBase } from '../src/hubrelay';

const page = 'https://hub.example.org';

function scripted(answers: Record<string, [number, unknown]>) {
  const calls: string[] = [];
  const impl = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    calls.push(url);
    expect(init?.credentials).toBe('same-origin');
    const [status, body] = answers[url] ?? [404, 'not found'];
    return new Response(JSON.stringify(body), { status });
  }) as typeof fetch;
  return { calls, impl };
}

describe('hub service relay', () => {
  it('is only a relay on the page origin', () => {
    expect(hubServiceBase('wss://hub.example.org/services/secsync-relay', page)).toBe(
      'https://hub.example.org/services/secsync-relay/'
    );
    expect(hubServiceBase('wss://hub.example.org/services/secsync-relay/', page)).toBe(
      'https://hub.example.org/services/secsync-relay/'
    );
    expect(hubServiceBase('ws://hub.example.org/services/secsync-relay', page)).toBeNull();
    expect(hubServiceBase('wss://other.example.org/services/secsync-relay', page)).toBeNull();
    expect(hubServiceBase('wss://hub.example.org:8443/services/x', page)).toBeNull();
    expect(hubServiceBase('not a url', page)).toBeNull();
  });

  it('uses the cookie it has, or does the OAuth flow once', async () => {
    const base = 'https://hub.example.org/services/a/';
    const login = `${base}oauth_login?next=${encodeURIComponent('/services/a/whoami')}`;
    const { calls, impl } = scripted({
      [`${base}whoami`]: [401, 'no'],
      [login]: [200, { name: 'alice', via: 'cookie' }]
    });
    const [first, second] = await Promise.all([
      ensureHubServiceLogin(base, impl),
      ensureHubServiceLogin(base, impl)
    ]);
    expect([first, second]).toEqual(['alice', 'alice']);
    expect(calls).toEqual([`${base}whoami`, login]);
    const known = scripted({ 'https://hub.example.org/services/b/whoami': [200, { name: 'bob' }] });
    await expect(
      ensureHubServiceLogin('https://hub.example.org/services/b/', known.impl)
    ).resolves.toBe('bob');
    expect(known.calls).toHaveLength(1);
  });

  it('reports a refusal clearly and asks again next time', async () => {
    const base = 'https://hub.example.org/services/c/';
    const refused = scripted({ [`${base}whoami`]: [403, 'no access'] });
    await expect(ensureHubServiceLogin(base, refused.impl)).rejects.toThrow(
      /refused access to the relay service .* \(HTTP 403\)/
    );
    const ok = scripted({ [`${base}whoami`]: [200, { name: 'carol' }] });
    await expect(ensureHubServiceLogin(base, ok.impl)).resolves.toBe('carol');
  });
});
