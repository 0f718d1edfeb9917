/**
 * The questions asked before a share link or a pointer file can change what this browser
 * stores or where it connects: a key that differs from the stored one, a foreign relay.
 * Both default to the safe answer (keep the key, do not connect).
 */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import {
  approveRelay,
  getDocumentKey,
  isRelayApproved,
  keyFingerprint,
  keysEqual,
  setDocumentKey
} from './keystore';
import { relayContext } from './links';
import { classifyRelay, normalizeRelay, relayHost, relayRefusal } from './relaypolicy';

function paragraph(text: string, className?: string): HTMLParagraphElement {
  const p = document.createElement('p');
  p.textContent = text;
  if (className) {
    p.className = className;
  }
  return p;
}

function labelled(label: string, value: string, className: string): HTMLDivElement {
  const row = document.createElement('div');
  row.className = 'jp-secsync-Prompt-row';
  const name = document.createElement('span');
  name.textContent = label + ' ';
  const code = document.createElement('code');
  code.className = className;
  code.textContent = value;
  row.append(name, code);
  return row;
}

/**
 * Stores `offered` as the key of `docId` unless this browser already has a different key:
 * then asks (showing both fingerprints) and keeps the stored key unless the user chooses the
 * offered one. Returns the key now stored.
 */
export async function storeKeyFromLink(
  docId: string,
  offered: Uint8Array,
  trans: TranslationBundle
): Promise<Uint8Array> {
  const stored = getDocumentKey(docId);
  if (!stored) {
    setDocumentKey(docId, offered);
    return offered;
  }
  if (keysEqual(stored, offered)) {
    return stored;
  }
  const body = new Widget();
  body.addClass('jp-secsync-KeyConflict');
  body.node.append(
    paragraph(
      trans.__(
        'This browser already has a different key for document %1. The link’s key would replace it; if the link is wrong or was made by someone else, the stored key — possibly your only copy — would be lost.',
        docId
      )
    ),
    labelled(
      trans.__('Stored key fingerprint:'),
      await keyFingerprint(stored),
      'jp-secsync-KeyConflict-stored'
    ),
    labelled(
      trans.__('Link key fingerprint:'),
      await keyFingerprint(offered),
      'jp-secsync-KeyConflict-link'
    ),
    paragraph(
      trans.__(
        'Keep the stored key unless you know that the link’s key is the right one (compare the fingerprints with the person who shared it).'
      )
    )
  );
  const result = await showDialog({
    title: trans.__('A different key for this notebook'),
    body,
    buttons: [
      Dialog.cancelButton({ label: trans.__('Keep the stored key') }),
      Dialog.warnButton({ label: trans.__('Replace it with the link’s key') })
    ],
    defaultButton: 0
  });
  if (result.button.accept) {
    setDocumentKey(docId, offered);
    return offered;
  }
  return stored;
}

/**
 * Checks that this browser may connect to `relay` (null = this Jupyter server's relay): a
 * refused relay (plain ws:// to another host) throws; a foreign relay the user has not
 * confirmed before is confirmed now, by its host. Returns false when the user declines.
 *
 * @param origin - what names the relay, for the question ("share link" / a file path)
 */
export async function confirmRelay(
  relay: string | null,
  origin: string,
  trans: TranslationBundle
): Promise<boolean> {
  const ctx = relayContext();
  const refusal = relayRefusal(relay, ctx);
  if (refusal) {
    // (short: notifications show the first 140 characters)
    throw new Error(
      trans.__('Refused: %1 (use wss://, or allow plain ws:// relays in the settings)', refusal)
    );
  }
  if (classifyRelay(relay, ctx) !== 'foreign') {
    return true;
  }
  const normalized = normalizeRelay(relay!)!;
  if (isRelayApproved(normalized)) {
    return true;
  }
  const host = relayHost(relay!);
  const body = new Widget();
  body.addClass('jp-secsync-ForeignRelay');
  body.node.append(
    paragraph(trans.__('%1 asks this browser to connect to the relay at', origin)),
    labelled(trans.__('Host:'), host, 'jp-secsync-ForeignRelay-host'),
    labelled(trans.__('Relay URL:'), normalized, 'jp-secsync-ForeignRelay-url'),
    paragraph(
      trans.__(
        'It is neither this Jupyter server’s relay nor the relay in your settings. A relay cannot read the notebook, but it sees who connects and when, and it can hold back changes. Your relay session key is never sent to it. Connect only if you expected this notebook to live on %1.',
        host
      )
    )
  );
  const result = await showDialog({
    title: trans.__('Connect to relay %1?', host),
    body,
    buttons: [
      Dialog.cancelButton({ label: trans.__('Do not connect') }),
      Dialog.warnButton({ label: trans.__('Connect to %1', host) })
    ],
    defaultButton: 0
  });
  if (!result.button.accept) {
    return false;
  }
  approveRelay(normalized);
  return true;
}

/** The body of the share-link prompt: a message, a field as wide as a link, an error line. */
class LinkPromptBody extends Widget {
  constructor(message: string, text: string, error: string) {
    super();
    this.addClass('jp-secsync-LinkPrompt');
    this._input = document.createElement('input');
    this._input.className = 'jp-mod-styled jp-secsync-LinkInput';
    this._input.placeholder = 'https://…/secsync/open/…#key=…';
    this._input.value = text;
    this._input.spellcheck = false;
    const label = paragraph(message);
    this.node.append(label, this._input);
    if (error) {
      this.node.append(paragraph(error, 'jp-secsync-LinkPrompt-error'));
    }
  }

  getValue(): string {
    return this._input.value;
  }

  private _input: HTMLInputElement;
}

let linkPromptOpen = false;

/**
 * Asks for a share link until `check` accepts it (check returns an error message for the
 * user, or null). One prompt at a time: while one is open, another request returns null.
 */
export async function askForShareLink(
  trans: TranslationBundle,
  check: (text: string) => string | null
): Promise<string | null> {
  if (linkPromptOpen) {
    (document.querySelector('.jp-secsync-LinkInput') as HTMLInputElement | null)?.focus();
    return null;
  }
  linkPromptOpen = true;
  try {
    let text = '';
    let error = '';
    for (;;) {
      const result = await showDialog({
        title: trans.__('Open a shared encrypted notebook'),
        body: new LinkPromptBody(
          trans.__('Paste the share link you received (the key stays in this browser):'),
          text,
          error
        ),
        focusNodeSelector: '.jp-secsync-LinkInput',
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Open') })]
      });
      if (!result.button.accept) {
        return null;
      }
      text = String(result.value ?? '').trim();
      const problem = text ? check(text) : trans.__('Paste a share link first.');
      if (!problem) {
        return text;
      }
      error = problem;
    }
  } finally {
    linkPromptOpen = false;
  }
}

/**
 * Copies a share link to the clipboard and shows it. In a document with a membership log the
 * link alone opens nothing: the text says that members are added by identity string.
 */
export async function showShareLink(
  link: string,
  hasMembers: boolean,
  trans: TranslationBundle
): Promise<void> {
  try {
    Clipboard.copyToSystem(link);
  } catch {
    // clipboard unavailable: the dialog below shows the link
  }
  const body = new Widget();
  const p = paragraph(
    hasMembers
      ? trans.__(
          'The link carries the key (in the part after #, never sent to the server), but only members can open the notebook with it: add each person in Members, by the identity string they send you.'
        )
      : trans.__(
          'Anyone with this link can read and edit the notebook. The key is in the part after # and is never sent to the server.'
        )
  );
  const input = document.createElement('input');
  input.className = 'jp-mod-styled jp-secsync-ShareLink';
  input.readOnly = true;
  input.value = link;
  input.addEventListener('focus', () => input.select());
  body.node.append(p, input);
  await showDialog({
    title: trans.__('Share link copied'),
    body,
    buttons: [Dialog.okButton({ label: trans.__('Done') })]
  });
}
