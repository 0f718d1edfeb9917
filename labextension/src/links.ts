/**
 * Share links (docs/share-links.md), through the shared implementation in
 * `secsync/sharelink.ts`, plus what JupyterLab needs around them.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import type { TranslationBundle } from '@jupyterlab/translation';

import { registry } from './registry';
import { IRelayContext } from './relaypolicy';
import { formatFragment, parseFragment } from './secsync/links';
import { formatShareLink, parseShareLink } from './secsync/sharelink';

export interface IParsedLink {
  docId: string;
  /** the document key of a `#key=` link (empty for an invitation link without one) */
  key: Uint8Array;
  /** the secret of an invitation link (`#link=`, issue 12), else null */
  linkSecret: Uint8Array | null;
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
  const trimmed = text.trim();
  const hash = trimmed.indexOf('#');
  const fragment = hash < 0 ? '' : trimmed.slice(hash + 1);
  if (/(^|&)link=/.test(fragment)) {
    // an invitation link (issue 12): the fragment strictly (770), the rest as a share link
    const parts = parseFragment(fragment);
    const base = trimmed.slice(0, hash) + formatFragment({ key: new Uint8Array(32) });
    const parsed = parseShareLink(base);
    const relay = parsed.relayUrl === ownRelayBase() ? null : parsed.relayUrl;
    return {
      docId: parsed.docId,
      key: parts.key ?? new Uint8Array(0),
      linkSecret: parts.linkSecret,
      relay
    };
  }
  const parsed = parseShareLink(trimmed);
  const relay = parsed.relayUrl === ownRelayBase() ? null : parsed.relayUrl;
  return { docId: parsed.docId, key: parsed.key, linkSecret: null, relay };
}

/** The invitation link (`#link=<secret>`) of a document, in the form of its share link. */
export function invitationLinkFor(docId: string, secret: Uint8Array, relay: string | null): string {
  const base = shareLinkFor(docId, new Uint8Array(32), relay);
  return base.slice(0, base.indexOf('#')) + formatFragment({ linkSecret: secret });
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
  const fragment = url.hash.replace(/^#/, '');
  const hash = new URLSearchParams(fragment);
  const keyText = hash.get('key');
  const relay = url.searchParams.get('secsync-relay');
  url.searchParams.delete('secsync-doc');
  url.searchParams.delete('secsync-relay');
  url.hash = '';
  window.history.replaceState(window.history.state, '', url.toString());
  const isInvitation = hash.has('link');
  if (!keyText && !isInvitation) {
    return { docId, key: new Uint8Array(0), linkSecret: null, relay };
  }
  // Re-use the strict parser: rebuild the canonical link form (an invitation link's
  // fragment as it came: parsed strictly, 770).
  const link =
    jupyterBase() +
    'secsync/open/' +
    encodeURIComponent(docId) +
    (relay ? '?relay=' + encodeURIComponent(relay) : '') +
    (isInvitation ? '#' + fragment : '#key=' + keyText);
  return parseLink(link);
}

/**
 * What the user is told when joining through an invitation link fails (no internal codes):
 * expired (754), revoked (755), malformed (770), not a link of this notebook (711), the
 * relay unreachable (700) and the rest.
 */
export function describeJoinError(error: unknown, trans: TranslationBundle): string {
  const code = (error as { code?: unknown })?.code;
  const m = typeof code === 'string' ? /^SECSYNC_ERROR_(\d+)$/.exec(code) : null;
  switch (m ? Number(m[1]) : null) {
    case 754:
      return trans.__(
        'This invitation link has expired: nobody can join through it any more. Ask the notebook’s owner for a new link.'
      );
    case 755:
      return trans.__(
        'This invitation link was revoked by the notebook’s owner: nobody can join through it any more. Ask the owner for a new link.'
      );
    case 770:
      return trans.__(
        'This invitation link is damaged or cut off (the part from #link= on). Copy the whole link, exactly as it was shared.'
      );
    case 711:
    case 722:
      return trans.__(
        'This invitation link does not belong to this notebook (or was never created). Ask its owner for a new link.'
      );
    case 756:
      return trans.__('This invitation link cannot give that role.');
    case 706:
      return trans.__('This notebook has no members list, so invitation links do not apply to it.');
    case 766:
    case 761:
    case 762:
      return trans.__(
        'The invitation link does not open the notebook’s current key. Ask its owner for a new link.'
      );
    case 700:
      return trans.__(
        'Could not reach the notebook’s relay to join through the invitation link. Check the connection and try again.'
      );
    default:
      return trans.__('Joining through this invitation link failed. Ask the notebook’s owner for a new link.');
  }
}

/** What the user is told about a share link that does not parse (no internal error codes). */
export function describeLinkError(error: unknown, trans: TranslationBundle): string {
  if ((error as { code?: unknown })?.code === 'SECSYNC_ERROR_770') {
    return describeJoinError(error, trans); // an invitation link's fragment
  }
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
