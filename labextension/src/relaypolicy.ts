/**
 * Which relays this browser talks to, and with what (pure functions; the prompts are in
 * `prompts.ts`).
 *
 * - "own": the relay of the Jupyter server that serves this JupyterLab (a pointer or link
 *   without relay, or naming exactly that relay). Jupyter's login authenticates there.
 * - "configured": exactly the `relayUrl` setting (same scheme, host, port and path).
 *   Only this relay receives the `relaySessionKey` setting.
 * - "foreign": any other relay (named by a share link or a pointer file). Used only after
 *   the user confirmed it by its host; never receives the session key.
 * - plain `ws://` to a host that is not a loopback address is refused for configured and
 *   foreign relays unless the `allowInsecureRelay` setting is on.
 */

export type RelayKind = 'own' | 'configured' | 'foreign';

export interface IRelayContext {
  /** ws(s) relay base of this Jupyter server. */
  own: string;
  /** the `relayUrl` setting ('' = none). */
  configured: string;
  /** the `allowInsecureRelay` setting. */
  allowInsecure: boolean;
}

function parse(relay: string): URL | null {
  try {
    const u = new URL(relay);
    return u.protocol === 'ws:' || u.protocol === 'wss:' ? u : null;
  } catch {
    return null;
  }
}

/** `scheme://host[:port]/path` without trailing slashes, or null for a non-ws(s) URL. */
export function normalizeRelay(relay: string): string | null {
  const u = parse(relay);
  if (!u || u.username || u.password || u.search || u.hash) {
    return null;
  }
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** Exact match of scheme, host, port and path (trailing slashes aside). */
export function sameRelay(a: string | null | undefined, b: string | null | undefined): boolean {
  if (!a || !b) {
    return false;
  }
  const na = normalizeRelay(a);
  return na !== null && na === normalizeRelay(b);
}

/** `host[:port]` of a relay URL, as shown to the user. */
export function relayHost(relay: string): string {
  return parse(relay)?.host ?? relay;
}

/** localhost, *.localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || h === '::1') {
    return true;
  }
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return !!m && Number(m[1]) === 127 && m.slice(2).every(x => Number(x) <= 255);
}

export function classifyRelay(relay: string | null, ctx: IRelayContext): RelayKind {
  if (!relay || sameRelay(relay, ctx.own)) {
    return 'own';
  }
  if (ctx.configured && sameRelay(relay, ctx.configured)) {
    return 'configured';
  }
  return 'foreign';
}

/**
 * Why this browser must not connect to `relay`, or null when it may (subject to the
 * confirmation of a foreign relay).
 */
export function relayRefusal(relay: string | null, ctx: IRelayContext): string | null {
  if (classifyRelay(relay, ctx) === 'own') {
    return null;
  }
  const u = parse(relay!);
  if (!u || normalizeRelay(relay!) === null) {
    return `${relay} is not a ws:// or wss:// relay URL`;
  }
  if (u.protocol === 'ws:' && !isLoopbackHost(u.hostname) && !ctx.allowInsecure) {
    return `plain ws:// to ${u.host}`;
  }
  return null;
}

/** The session key to send to `relay`: only to the configured relay, never to another. */
export function sessionKeyFor(
  relay: string | null,
  ctx: IRelayContext,
  sessionKey: string
): string | undefined {
  return sessionKey && classifyRelay(relay, ctx) === 'configured' ? sessionKey : undefined;
}
