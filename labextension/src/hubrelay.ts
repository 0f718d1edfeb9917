/**
 * The relay as a JupyterHub service (docs/deployment.md, "The relay as a JupyterHub
 * service"): `secsync-relay --auth hub` behind the Hub's proxy at /services/<name>/, on the
 * same origin as this page (the user's single-user server under /user/<name>/).
 *
 * The relay authenticates a browser's WebSocket with the service's OAuth cookie. Before the
 * first connection this page asks the relay who it is (`<service>/whoami`); without the
 * cookie (401) it goes through the Hub's OAuth flow with a same-origin fetch
 * (`<service>/oauth_login` -> `/hub/api/oauth2/authorize` -> `<service>/oauth_callback`,
 * which sets the cookie, -> `whoami`). The Hub's login session is all it takes: no secret in
 * the settings. Only the relay of the `relayUrl` setting, and only when it is on this page's
 * origin, is treated this way (setting `relayIsHubService`).
 */

/** The service's HTTP base (`http(s)://host/services/<name>/`) when `relay` (ws:// or
 * wss://) is on the page's origin, else null. */
export function hubServiceBase(relay: string, pageOrigin: string): string | null {
  let url: URL;
  try {
    url = new URL(relay);
  } catch {
    return null;
  }
  const scheme = url.protocol === 'wss:' ? 'https:' : url.protocol === 'ws:' ? 'http:' : null;
  if (!scheme || `${scheme}//${url.host}` !== pageOrigin) {
    return null;
  }
  return `${scheme}//${url.host}${url.pathname.replace(/\/*$/, '/')}`;
}

const loggedIn = new Map<string, Promise<string>>();

/**
 * Makes sure this browser holds the service's OAuth cookie; resolves with the Hub user name
 * the relay sees. Rejects with a message for the user when the Hub refuses (e.g. 403: the
 * user lacks the scope access:services!service=<name>). One flow per service at a time.
 */
export function ensureHubServiceLogin(
  serviceBase: string,
  fetchImpl: typeof fetch = (input, init) => fetch(input, init)
): Promise<string> {
  let pending = loggedIn.get(serviceBase);
  if (!pending) {
    pending = hubLogin(serviceBase, fetchImpl);
    loggedIn.set(serviceBase, pending);
    // a failure is not kept: the next connection attempt asks again
    pending.catch(() => loggedIn.delete(serviceBase));
  }
  return pending;
}

async function hubLogin(serviceBase: string, fetchImpl: typeof fetch): Promise<string> {
  const whoami = serviceBase + 'whoami';
  const init: RequestInit = { credentials: 'same-origin', cache: 'no-store' };
  let response = await fetchImpl(whoami, init);
  if (response.status === 401) {
    const next = new URL(whoami).pathname;
    response = await fetchImpl(
      `${serviceBase}oauth_login?next=${encodeURIComponent(next)}`,
      init
    );
  }
  if (!response.ok) {
    throw new Error(
      response.status === 403
        ? `JupyterHub refused access to the relay service ${serviceBase} (HTTP 403): ask the ` +
            'Hub administrator for access to the service'
        : `cannot log in to the relay service ${serviceBase} through JupyterHub ` +
            `(HTTP ${response.status})`
    );
  }
  const body = (await response.json()) as { name?: unknown };
  if (typeof body.name !== 'string') {
    throw new Error(`the relay service ${serviceBase} did not name the Hub user`);
  }
  return body.name;
}
