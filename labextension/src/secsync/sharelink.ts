/**
 * Share links (same format as the Python library, see docs/share-links.md):
 *
 *   Jupyter-hosted relay:
 *     http(s)://<host><base_url>secsync/open/<docId>[?relay=<url-encoded ws(s) relay base>]#key=<b64url key>
 *     relay base defaults to ws(s)://<host><base_url>secsync
 *   Standalone relay:
 *     ws(s)://<host>:<port>[/<prefix>]/<docId>#key=<b64url key>
 *
 * The connection URL is always `relayUrl + '/' + docId`. The key (32 bytes) is only ever in
 * the fragment, which browsers do not send to servers.
 */
import { b64decode, b64encode } from './base64';
import { ProtocolError } from './errors';
import { DOC_ID_PATTERN, isValidDocId } from './ids';

export { DOC_ID_PATTERN, isValidDocId };

export interface ShareLink {
  docId: string;
  key: Uint8Array;
  /** ws(s) relay base, without trailing slash; connection URL = relayUrl + '/' + docId */
  relayUrl: string;
  /** http(s)://host<base_url> (ends with '/') for Jupyter-hosted links */
  jupyterBase?: string;
  /** true when the link names its relay (standalone links, or `?relay=`) */
  explicitRelay: boolean;
}

export function connectionUrl(relayUrl: string, docId: string): string {
  return `${relayUrl.replace(/\/+$/, '')}/${docId}`;
}

function parseKeyFragment(hash: string): Uint8Array {
  const fragment = hash.startsWith('#') ? hash.slice(1) : hash;
  const params = new URLSearchParams(fragment);
  const values = params.getAll('key');
  if (values.length !== 1) {
    throw new ProtocolError('share link: fragment must carry exactly one key=');
  }
  let key: Uint8Array;
  try {
    key = b64decode(values[0]);
  } catch {
    throw new ProtocolError('share link: key is not base64url');
  }
  if (key.length !== 32) {
    throw new ProtocolError('share link: key must be 32 bytes');
  }
  return key;
}

function checkRelayBase(relay: string): string {
  let u: URL;
  try {
    u = new URL(relay);
  } catch {
    throw new ProtocolError('share link: relay is not a URL');
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new ProtocolError('share link: relay must be a ws(s) URL');
  }
  if (u.search || u.hash || u.username || u.password) {
    throw new ProtocolError('share link: relay must not carry a query, fragment or credentials');
  }
  return relay.replace(/\/+$/, '');
}

function decodeDocId(segment: string): string {
  let docId: string;
  try {
    docId = decodeURIComponent(segment);
  } catch {
    throw new ProtocolError('share link: invalid docId');
  }
  if (!isValidDocId(docId)) {
    throw new ProtocolError('share link: invalid docId');
  }
  return docId;
}

/** Parses a share link. Throws ProtocolError on anything malformed. */
export function parseShareLink(link: string): ShareLink {
  let u: URL;
  try {
    u = new URL(link.trim());
  } catch {
    throw new ProtocolError('share link: not a URL');
  }
  const key = parseKeyFragment(u.hash);
  if (u.username || u.password) {
    throw new ProtocolError('share link: credentials are not allowed');
  }
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    const marker = 'secsync/open/';
    const idx = u.pathname.lastIndexOf(marker);
    if (idx < 0 || !u.pathname.startsWith('/') || u.pathname[idx - 1] !== '/') {
      throw new ProtocolError('share link: path must end with secsync/open/<docId>');
    }
    const baseUrl = u.pathname.slice(0, idx);
    const docId = decodeDocId(u.pathname.slice(idx + marker.length));
    const params = new URLSearchParams(u.search);
    for (const name of params.keys()) {
      if (name !== 'relay') {
        throw new ProtocolError(`share link: unknown query parameter ${name}`);
      }
    }
    const relays = params.getAll('relay');
    if (relays.length > 1) {
      throw new ProtocolError('share link: more than one relay');
    }
    const wsScheme = u.protocol === 'https:' ? 'wss:' : 'ws:';
    const relayUrl =
      relays.length === 1 ? checkRelayBase(relays[0]) : `${wsScheme}//${u.host}${baseUrl}secsync`;
    return {
      docId,
      key,
      relayUrl,
      jupyterBase: `${u.protocol}//${u.host}${baseUrl}`,
      explicitRelay: relays.length === 1
    };
  }
  if (u.protocol === 'ws:' || u.protocol === 'wss:') {
    if (u.search) {
      throw new ProtocolError('share link: a relay link has no query');
    }
    const path = u.pathname.endsWith('/') ? u.pathname.slice(0, -1) : u.pathname;
    const cut = path.lastIndexOf('/');
    const docId = decodeDocId(path.slice(cut + 1));
    return {
      docId,
      key,
      relayUrl: `${u.protocol}//${u.host}${path.slice(0, cut)}`,
      explicitRelay: true
    };
  }
  throw new ProtocolError('share link: unsupported scheme');
}

/**
 * Formats a share link. With `jupyterBase` (http(s)://host<base_url>) a Jupyter link is made,
 * carrying `?relay=` only when `relayUrl` is given and differs from the Jupyter server's own
 * relay (`ws(s)://host<base_url>secsync`); otherwise a standalone-relay link
 * `relayUrl/docId#key=…`. Same strings as the Python `format_share_link`.
 */
export function formatShareLink(link: {
  docId: string;
  key: Uint8Array;
  relayUrl?: string | null;
  jupyterBase?: string | null;
}): string {
  if (!isValidDocId(link.docId)) {
    throw new ProtocolError('share link: invalid docId');
  }
  if (!(link.key instanceof Uint8Array) || link.key.length !== 32) {
    throw new ProtocolError('share link: key must be 32 bytes');
  }
  const fragment = `#key=${b64encode(link.key)}`;
  if (link.jupyterBase) {
    let base: URL;
    try {
      base = new URL(link.jupyterBase);
    } catch {
      throw new ProtocolError('share link: jupyterBase is not a URL');
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new ProtocolError('share link: jupyterBase must be http(s)');
    }
    const baseUrl = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
    const origin = `${base.protocol}//${base.host}`;
    const ownRelay = `${base.protocol === 'https:' ? 'wss:' : 'ws:'}//${base.host}${baseUrl}secsync`;
    let query = '';
    if (link.relayUrl) {
      const relay = checkRelayBase(link.relayUrl);
      if (relay !== ownRelay) {
        query = `?relay=${encodeURIComponent(relay)}`;
      }
    }
    return `${origin}${baseUrl}secsync/open/${link.docId}${query}${fragment}`;
  }
  if (!link.relayUrl) {
    throw new ProtocolError('share link: relayUrl or jupyterBase is required');
  }
  return `${connectionUrl(checkRelayBase(link.relayUrl), link.docId)}${fragment}`;
}
