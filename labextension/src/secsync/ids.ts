/**
 * Identifier patterns, defined once for the browser client (the twin of
 * secsync_jupyter/protocol/ids.py): a document id is what a relay URL, a share link and a
 * pointer file carry.
 */

/** A document id: `[A-Za-z0-9_-]{1,128}` (generated ids are 32 such characters). */
export const DOC_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export function isValidDocId(docId: unknown): docId is string {
  return typeof docId === 'string' && DOC_ID_PATTERN.test(docId);
}
