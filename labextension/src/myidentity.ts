/**
 * "My identity": this browser profile's identity string (docs/protocol.md, "Identities"): the
 * public half of its signing key pair, its fingerprint and the JupyterLab user's display name.
 * A user copies it and sends it to a notebook's owner, who adds it in the Members dialog.
 */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import type { User } from '@jupyterlab/services';
import type { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { getSigningKeyPair } from './keystore';
import { checkDisplayName, fingerprintHex, formatIdentity } from './secsync/identity';
import { b64decode } from './secsync/base64';

/** `3ad7 c3ca c343 1d6b` for a public key (b64). */
export function fingerprintGroups(pubKey: string): string {
  try {
    return fingerprintHex(b64decode(pubKey)).match(/.{4}/g)!.join(' ');
  } catch {
    return '????';
  }
}

/** The JupyterLab user's display name as an identity name (null if it is not acceptable). */
export function displayNameOf(user: User.IManager | null): string | null {
  const identity = user?.identity;
  const raw = String(identity?.display_name || identity?.name || '').trim();
  if (!raw) {
    return null;
  }
  return checkDisplayName(raw) === null ? raw : null;
}

export interface IMyIdentity {
  pubKey: string;
  fingerprint: string;
  text: string;
}

/** This browser's identity string. */
export async function myIdentity(user: User.IManager | null): Promise<IMyIdentity> {
  await user?.ready.catch(() => undefined);
  const pair = await getSigningKeyPair();
  const text = formatIdentity(pair.publicKey, displayNameOf(user));
  const pubKey = text.split(':')[2];
  return { pubKey, fingerprint: fingerprintGroups(pubKey), text };
}

/** Copies `text` to the clipboard; false if the browser refused. */
export function copyText(text: string): boolean {
  try {
    Clipboard.copyToSystem(text);
    return true;
  } catch {
    return false;
  }
}

/** The "My identity" dialog: copies the identity string and shows it with its fingerprint. */
export async function showMyIdentity(
  user: User.IManager | null,
  trans: TranslationBundle
): Promise<string> {
  const me = await myIdentity(user);
  copyText(me.text);
  const body = new Widget();
  body.addClass('jp-secsync-Identity');
  const intro = document.createElement('p');
  intro.textContent = trans.__(
    'Your identity string is copied. Send it to the owner of a notebook; they add you in its Members dialog. It holds no secret (only your public key and name).'
  );
  const input = document.createElement('input');
  input.className = 'jp-mod-styled jp-secsync-Identity-string';
  input.readOnly = true;
  input.value = me.text;
  input.addEventListener('focus', () => input.select());
  const fp = document.createElement('p');
  fp.className = 'jp-secsync-Prompt-row';
  const label = document.createElement('span');
  label.textContent = trans.__('Fingerprint:') + ' ';
  const code = document.createElement('code');
  code.className = 'jp-secsync-Identity-fingerprint';
  code.textContent = me.fingerprint;
  fp.append(label, code);
  const hint = document.createElement('p');
  hint.textContent = trans.__(
    'Read the fingerprint to the owner by another channel (phone, in person): it is what they check before adding you.'
  );
  body.node.append(intro, input, fp, hint);
  await showDialog({
    title: trans.__('My identity'),
    body,
    buttons: [Dialog.okButton({ label: trans.__('Done') })]
  });
  return me.text;
}
