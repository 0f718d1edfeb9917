/**
 * The on-server representation of an encrypted notebook: a small JSON "pointer" file
 * (extension `.secnb`) naming the Secsync document and, optionally, a remote relay.
 * It never contains the document key nor any notebook content.
 */
import { isValidDocId } from './secsync/ids';

export const POINTER_EXTENSION = '.secnb';
export const POINTER_FILE_TYPE = 'secsync-notebook';
export const POINTER_MIME_TYPE = 'application/x-secsync-notebook+json';
export const POINTER_FORMAT = 'secsync-notebook';
export const POINTER_VERSION = 1;

export interface IPointer {
  format: typeof POINTER_FORMAT;
  version: number;
  docId: string;
  /** `null`: the relay of the Jupyter server that serves the file; else a ws(s):// relay base. */
  relay: string | null;
}

/** Document ids as accepted in share links (docs/share-links.md), defined once in secsync/ids. */
export { isValidDocId } from './secsync/ids';

export function isValidRelayBase(relay: unknown): relay is string {
  if (typeof relay !== 'string') {
    return false;
  }
  try {
    const u = new URL(relay);
    return (u.protocol === 'ws:' || u.protocol === 'wss:') && !u.hash;
  } catch {
    return false;
  }
}

export function isPointerPath(path: string | undefined | null): boolean {
  return !!path && path.toLowerCase().endsWith(POINTER_EXTENSION);
}

/** Parses and validates a pointer file's text. Throws an Error with a readable message. */
export function parsePointer(text: string): IPointer {
  let obj: any;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new Error('not a JSON document');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new Error('not a JSON object');
  }
  if (obj.format !== POINTER_FORMAT) {
    throw new Error(`"format" must be "${POINTER_FORMAT}"`);
  }
  if (obj.version !== POINTER_VERSION) {
    throw new Error(`unsupported pointer version ${JSON.stringify(obj.version)}`);
  }
  if (!isValidDocId(obj.docId)) {
    throw new Error('"docId" is not a Secsync document id');
  }
  if (obj.relay !== null && obj.relay !== undefined && !isValidRelayBase(obj.relay)) {
    throw new Error('"relay" must be null or a ws:// or wss:// URL');
  }
  if ('key' in obj) {
    // A pointer must never carry the key; refuse rather than silently accept a leak.
    throw new Error('pointer file contains a "key" field; keys must never be stored on the server');
  }
  return {
    format: POINTER_FORMAT,
    version: POINTER_VERSION,
    docId: obj.docId,
    relay: obj.relay ?? null
  };
}

export function formatPointer(docId: string, relay: string | null): string {
  const pointer: IPointer = {
    format: POINTER_FORMAT,
    version: POINTER_VERSION,
    docId,
    relay
  };
  return JSON.stringify(pointer, null, 2) + '\n';
}

/**
 * The WebSocket URL of a document's relay connection.
 *
 * @param relayBase - a `ws(s)://…` relay base (pointer `relay` or settings), or null
 * @param serverWsUrl - the Jupyter server's ws URL (`ServerConnection.ISettings.wsUrl`,
 *   ending with the base URL and a slash)
 */
export function relayDocumentUrl(
  docId: string,
  relayBase: string | null,
  serverWsUrl: string
): string {
  if (relayBase) {
    return relayBase.replace(/\/+$/, '') + '/' + docId;
  }
  const base = serverWsUrl.endsWith('/') ? serverWsUrl : serverWsUrl + '/';
  return base + 'secsync/' + docId;
}
