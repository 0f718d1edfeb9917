/**
 * Share links (docs/share-links.md), through the shared implementation in
 * `secsync/sharelink.ts`, plus what JupyterLab needs around them.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import type { TranslationBundle } from '@jupyterlab/translation';

import { registry } from './registry';
import { IRelayContext } from './relaypolicy';
import { formatShareLink, parseShareLink } from './secsync/sharelink';

export interface IParsedLink {
  docId: string;
  key: Uint8Array;
  /** ws(s) relay base when the link names a remote relay; null = the link's Jupyter server. */
  relay: string | null;
}

/** http(s)://host<base_url>, ending with a slash (PageConfig's base URL is absolute). */
function jupyterBase(): string {
  const base = new URL(PageConfig.getBaseUrl(), window.location.href).href;
  return base.endsWith('/') ? base : base + '/';
}

/** The relay base of this Jupyter server (what `relay: null` means). */
export function ownRelayBase(): string {
  return jupyterBase().replace(/^http/, 'ws') + 'secsync';
}

/** What the relay policy (relaypolicy.ts) needs to know, from this page and the settings. */
export function relayContext(): IRelayContext {
  return {
    own: ownRelayBase(),
    configured: registry.settings.relayUrl,
    allowInsecure: registry.settings.allowInsecureRelay
  };
}

/**
 * The share link of a document served by this JupyterLab's server. Under JupyterHub, a
 * document on a relay outside this server (e.g. the relay as a Hub service) opens in the
 * reader's own server: `<hub>/hub/user-redirect/secsync/open/…` (the Hub's convention).
 */
export function shareLinkFor(docId: string, key: Uint8Array, relay: string | null): string {
  const hubPrefix = PageConfig.getOption('hubPrefix');
  const base =
    relay !== null && hubPrefix
      ? new URL(`${hubPrefix.replace(/\/*$/, '/')}user-redirect/`, window.location.href).href
      : jupyterBase();
  return formatShareLink({ docId, key, relayUrl: relay, jupyterBase: base });
}

/**
 * Parses any share link. `relay` is null when the document lives on this JupyterLab's
 * own relay, else the ws(s) relay base (another Jupyter server's relay or a standalone one).
 */
export function parseLink(text: string): IParsedLink {
  const parsed = parseShareLink(text.trim());
  const relay = parsed.relayUrl === ownRelayBase() ? null : parsed.relayUrl;
  return { docId: parsed.docId, key: parsed.key, relay };
}

/**
 * A share link opened in the browser lands (after the server's redirect) on
 * `<base_url>lab?secsync-doc=<docId>[&secsync-relay=…]#key=…`. Returns that request, if any,
 * and removes it from the address bar so the key does not stay in the history entry.
 */
export function takeLinkFromLocation(): IParsedLink | null {
  const url = new URL(window.location.href);
  const docId = url.searchParams.get('secsync-doc');
  if (!docId) {
    return null;
  }
  const hash = new URLSearchParams(url.hash.replace(/^#/, ''));
  const keyText = hash.get('key');
  const relay = url.searchParams.get('secsync-relay');
  url.searchParams.delete('secsync-doc');
  url.searchParams.delete('secsync-relay');
  url.hash = '';
  window.history.replaceState(window.history.state, '', url.toString());
  if (!keyText) {
    return { docId, key: new Uint8Array(0), relay };
  }
  // Re-use the strict parser: rebuild the canonical link form.
  const link =
    jupyterBase() +
    'secsync/open/' +
    encodeURIComponent(docId) +
    (relay ? '?relay=' + encodeURIComponent(relay) : '') +
    '#key=' +
    keyText;
  return parseLink(link);
}

/** What the user is told about a share link that does not parse (no internal error codes). */
export function describeLinkError(error: unknown, trans: TranslationBundle): string {
  const raw = error instanceof Error ? error.message : String(error);
  const detail = raw.replace(/^SECSYNC_ERROR_\w+: /, '').replace(/^share link: /, '');
  const whole = trans.__('Copy the whole link, exactly as it was shared.');
  if (detail === 'not a URL' || detail === 'unsupported scheme') {
    return trans.__(
      'This is not a share link. A share link looks like https://…/secsync/open/…#key=…'
    );
  }
  if (detail.startsWith('path must end with')) {
    return trans.__(
      'This web address is not a share link of an encrypted notebook (it should contain /secsync/open/ and #key=).'
    );
  }
  if (detail.startsWith('fragment must carry')) {
    return trans.__('The link has no key (the part from #key= on is missing). %1', whole);
  }
  if (detail.startsWith('key ')) {
    return trans.__('The key in the link is damaged or cut off. %1', whole);
  }
  if (detail === 'invalid docId') {
    return trans.__('The document id in the link is damaged. %1', whole);
  }
  if (detail.startsWith('relay') || detail === 'more than one relay') {
    return trans.__('The relay named in the link (relay=…) is not a valid ws:// or wss:// address.');
  }
  if (detail.startsWith('credentials')) {
    return trans.__('Links with a user name or password in them are not accepted.');
  }
  if (detail.startsWith('unknown query parameter') || detail.startsWith('a relay link has no query')) {
    return trans.__('The link has parts that do not belong to a share link. %1', whole);
  }
  return trans.__('This share link is not valid (%1).', detail);
}
