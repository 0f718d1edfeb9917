/**
 * Key backup (issue 15): this browser's document keys and signing identity, exported to a
 * passphrase-protected file the user keeps (format: backupformat.ts, docs/backup.md) and
 * imported in another browser (merging: a different stored key or identity is replaced only
 * when the user says so). Each document's epoch keys (issue 12: keys after rotations,
 * keystore.ts getKeyring) travel with it; an epoch key that differs from the one stored here
 * is never replaced, only reported. A key made in this browser and not backed up since is announced at
 * creation and in the status popup (status.ts, keystore.keyOnlyHere).
 *
 * Plugin `secsync-jupyter:backup`: commands secsync:backup-keys and secsync:restore-keys.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import {
  BackupError,
  IBackupContent,
  IBackupKey,
  MIN_PASSPHRASE_CHARS,
  MAX_FILE_BYTES,
  decryptBackup,
  encryptBackup,
  parseEnvelope,
  planImport,
  planKeyringImport
} from './backupformat';
import {
  fingerprint,
  getDocumentKey,
  getKeyring,
  getSigningKeyPair,
  keyFingerprint,
  keyInfo,
  knownPointerPath,
  markBackedUp,
  onKeyCreated,
  saveKeyring,
  setDocumentKey,
  setSigningKeyPair,
  storedDocIds,
  storedKeyringDocIds,
  storedSigningKeyPair
} from './keystore';
import { serverKey } from './provider';
import { registry } from './registry';
import { TRANSLATION_DOMAIN } from './factories';
import { b64encode } from './secsync/base64';

export namespace BackupCommandIDs {
  export const backupKeys = 'secsync:backup-keys';
  export const restoreKeys = 'secsync:restore-keys';
}

function paragraph(text: string, className = ''): HTMLParagraphElement {
  const p = document.createElement('p');
  p.textContent = text;
  p.style.maxWidth = '560px';
  if (className) {
    p.className = className;
    if (className.endsWith('-error')) {
      p.style.color = 'var(--jp-error-color1)';
    }
  }
  return p;
}

function passwordField(className: string, placeholder: string): HTMLInputElement {
  const input = document.createElement('input');
  input.type = 'password';
  input.autocomplete = 'new-password';
  input.className = 'jp-mod-styled jp-secsync-BackupInput ' + className;
  input.placeholder = placeholder;
  input.style.cssText = 'display:block;width:100%;min-width:360px;margin:4px 0;box-sizing:border-box';
  return input;
}

/** Body of the "Back Up Keys" dialog: two passphrase fields and an error line. */
class ExportBody extends Widget {
  constructor(trans: TranslationBundle, count: number, error: string) {
    super();
    this.addClass('jp-secsync-Backup');
    this._first = passwordField('jp-secsync-BackupPassphrase', trans.__('Passphrase'));
    this._second = passwordField(
      'jp-secsync-BackupPassphrase2',
      trans.__('The same passphrase again')
    );
    this.node.append(
      paragraph(
        trans._n(
          'Saves the key of %1 encrypted notebook and this browser’s signing identity to a file, encrypted with a passphrase. Keep the file and the passphrase apart: whoever has both can read and edit those notebooks.',
          'Saves the keys of %1 encrypted notebooks and this browser’s signing identity to a file, encrypted with a passphrase. Keep the file and the passphrase apart: whoever has both can read and edit those notebooks.',
          count
        )
      ),
      paragraph(
        trans.__(
          'Without the passphrase the file is useless (it cannot be recovered). At least %1 characters.',
          MIN_PASSPHRASE_CHARS
        )
      ),
      this._first,
      this._second
    );
    if (error) {
      this.node.append(paragraph(error, 'jp-secsync-Backup-error'));
    }
  }

  getValue(): [string, string] {
    return [this._first.value, this._second.value];
  }

  private _first: HTMLInputElement;
  private _second: HTMLInputElement;
}

/** Body of the "Restore Keys" dialog: a file field, a passphrase field and an error line. */
class ImportBody extends Widget {
  constructor(trans: TranslationBundle, chosen: File | null, error: string) {
    super();
    this.addClass('jp-secsync-Backup');
    this._file = document.createElement('input');
    this._file.type = 'file';
    this._file.accept = '.json,application/json';
    this._file.className = 'jp-secsync-BackupFile';
    this._passphrase = passwordField('jp-secsync-BackupPassphrase', trans.__('Passphrase'));
    this._passphrase.autocomplete = 'current-password';
    this._chosen = chosen;
    this.node.append(
      paragraph(
        trans.__(
          'Choose a key backup file and type its passphrase. Its keys are added to this browser; a different key already stored here for the same notebook is replaced only if you say so.'
        )
      ),
      this._file
    );
    if (chosen) {
      this.node.append(
        paragraph(trans.__('File: %1 (choose another to change it)', chosen.name))
      );
    }
    this.node.append(this._passphrase);
    if (error) {
      this.node.append(paragraph(error, 'jp-secsync-Backup-error'));
    }
  }

  getValue(): { file: File | null; passphrase: string } {
    return { file: this._file.files?.[0] ?? this._chosen, passphrase: this._passphrase.value };
  }

  private _file: HTMLInputElement;
  private _passphrase: HTMLInputElement;
  private _chosen: File | null;
}

function download(name: string, text: string): void {
  const blob = new Blob([text], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

/** The backup's message for people (our BackupError texts, or a generic one). */
function describe(e: unknown, trans: TranslationBundle): string {
  if (e instanceof BackupError) {
    switch (e.kind) {
      case 'passphrase':
        return e.message.startsWith('Choose')
          ? trans.__('Choose a passphrase of at least %1 characters.', MIN_PASSPHRASE_CHARS)
          : trans.__('Wrong passphrase, or the backup file was changed. Nothing was imported.');
      case 'not-a-backup':
        return trans.__(
          'This file is not a secsync-jupyter key backup. Nothing was imported.'
        );
      case 'version':
        return trans.__(
          'This key backup was made by a newer version of secsync-jupyter; update to read it. Nothing was imported.'
        );
      case 'damaged':
        return trans.__('This key backup file is damaged (%1). Nothing was imported.', e.message);
    }
  }
  return trans.__('The key backup could not be read: %1', (e as Error)?.message ?? String(e));
}

async function askConflict(
  trans: TranslationBundle,
  title: string,
  text: string,
  storedFp: string,
  backupFp: string,
  keepLabel: string,
  replaceLabel: string
): Promise<boolean> {
  const body = new Widget();
  body.addClass('jp-secsync-KeyConflict');
  const row = (label: string, value: string, cls: string) => {
    const div = document.createElement('div');
    div.className = 'jp-secsync-Prompt-row';
    const span = document.createElement('span');
    span.textContent = label + ' ';
    const code = document.createElement('code');
    code.className = cls;
    code.textContent = value;
    div.append(span, code);
    return div;
  };
  body.node.append(
    paragraph(text),
    row(trans.__('Stored fingerprint:'), storedFp, 'jp-secsync-KeyConflict-stored'),
    row(trans.__('Backup fingerprint:'), backupFp, 'jp-secsync-KeyConflict-backup')
  );
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton({ label: keepLabel }),
      Dialog.warnButton({ label: replaceLabel })
    ],
    defaultButton: 0
  });
  return result.button.accept;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'secsync-jupyter:backup',
  description: 'Key backup of encrypted notebooks: export and import keys and identity.',
  autoStart: true,
  requires: [ITranslator],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, translator: ITranslator, palette: ICommandPalette | null) => {
    const trans = translator.load(TRANSLATION_DOMAIN);
    const server = serverKey(app.serviceManager.serverSettings);

    // A key made in this browser exists nowhere else until it is backed up. Said once the new
    // notebook is open (not amid its loading notification), or after 30 s anyway.
    const warnWhenOpen = async (docId: string) => {
      for (let i = 0; i < 120; i++) {
        if (registry.all().some(s => s.docId === docId && s.status.loaded)) {
          break;
        }
        await new Promise(resolve => setTimeout(resolve, 250));
      }
      await new Promise(resolve => setTimeout(resolve, 1000));
      Notification.warning(
        trans.__(
          'The key of the new encrypted notebook exists only in this browser. If this browser profile is lost, so is the notebook (for everyone without its share link). Back up your keys.'
        ),
        {
          autoClose: 15000,
          actions: [
            {
              label: trans.__('Back Up Keys…'),
              callback: () => void app.commands.execute(BackupCommandIDs.backupKeys)
            }
          ]
        }
      );
    };
    onKeyCreated(docId => void warnWhenOpen(docId));

    app.commands.addCommand(BackupCommandIDs.backupKeys, {
      label: trans.__('Back Up Keys…'),
      caption: trans.__(
        'Save the keys of your encrypted notebooks and your identity to a passphrase-protected file'
      ),
      execute: async () => {
        // document keys, and keyrings of documents joined after a rotation (no epoch-0 key)
        const docIds = [...new Set([...storedDocIds(), ...storedKeyringDocIds()])].sort();
        let error = '';
        let passphrase = '';
        for (;;) {
          const result = await showDialog({
            title: trans.__('Back up keys'),
            body: new ExportBody(trans, docIds.length, error),
            focusNodeSelector: '.jp-secsync-BackupPassphrase',
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Save Backup') })]
          });
          if (!result.button.accept) {
            return null;
          }
          const [first, second] = result.value as [string, string];
          if (first.length < MIN_PASSPHRASE_CHARS) {
            error = trans.__('Choose a passphrase of at least %1 characters.', MIN_PASSPHRASE_CHARS);
          } else if (first !== second) {
            error = trans.__('The two passphrases differ.');
          } else {
            passphrase = first;
            break;
          }
        }
        const now = new Date();
        const pair = await getSigningKeyPair();
        const keys: IBackupKey[] = [];
        try {
          for (const docId of docIds) {
            const key = getDocumentKey(docId);
            // the epoch keys after 0 and `seen` (a damaged stored keyring stops the backup)
            const ring = getKeyring(docId);
            const epochs = new Map(
              ring.keyring.epochs.filter(e => e !== 0).map(e => [e, ring.keyring.key(e)])
            );
            if (key || epochs.size > 0) {
              const stored = keyInfo(docId)?.stored;
              keys.push({
                docId,
                key,
                name: knownPointerPath(server, docId),
                created: stored ? new Date(stored).toISOString() : null,
                epochs,
                seen: ring.seen
              });
            }
          }
        } catch (e) {
          Notification.error(
            trans.__('No backup was made: %1', (e as Error).message ?? String(e)),
            { autoClose: false }
          );
          return null;
        }
        const content: IBackupContent = {
          created: now.toISOString(),
          createdBy: 'browser',
          identity: { publicKey: pair.publicKey, seed: pair.privateKey.slice(0, 32) },
          keys
        };
        const working = Notification.emit(trans.__('Encrypting the key backup…'), 'in-progress', {
          autoClose: false
        });
        let text: string;
        try {
          text = await encryptBackup(content, passphrase);
        } catch (e) {
          Notification.update({
            id: working,
            message: describe(e, trans),
            type: 'error',
            autoClose: 10000
          });
          return null;
        }
        const name = `secsync-jupyter-keys-${now.toISOString().slice(0, 10)}.json`;
        download(name, text);
        markBackedUp(keys.map(k => k.docId), now.getTime());
        Notification.update({
          id: working,
          message: trans._n(
            'Saved %2 with %1 notebook key and this browser’s identity. Keep it, and its passphrase, somewhere else than this computer.',
            'Saved %2 with %1 notebook keys and this browser’s identity. Keep it, and its passphrase, somewhere else than this computer.',
            keys.length,
            name
          ),
          type: 'success',
          autoClose: 10000
        });
        return name;
      }
    });

    app.commands.addCommand(BackupCommandIDs.restoreKeys, {
      label: trans.__('Restore Keys from Backup…'),
      caption: trans.__('Add the keys and identity of a key backup file to this browser'),
      execute: async () => {
        let error = '';
        let chosen: File | null = null;
        let content: IBackupContent;
        for (;;) {
          const result = await showDialog({
            title: trans.__('Restore keys from a backup'),
            body: new ImportBody(trans, chosen, error),
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: trans.__('Restore') })]
          });
          if (!result.button.accept) {
            return null;
          }
          const value = result.value as { file: File | null; passphrase: string };
          chosen = value.file;
          if (!chosen) {
            error = trans.__('Choose the backup file first.');
            continue;
          }
          if (!value.passphrase) {
            error = trans.__('Type the passphrase of the backup.');
            continue;
          }
          try {
            if (chosen.size > MAX_FILE_BYTES) {
              throw new BackupError('not-a-backup', 'too large');
            }
            const text = await chosen.text();
            parseEnvelope(text);
            content = await decryptBackup(text, value.passphrase);
            break;
          } catch (e) {
            error = describe(e, trans);
          }
        }
        // decisions first (asked one at a time), then the writes
        const plan = planImport(getDocumentKey, content.keys);
        const toStore: (IBackupKey & { key: Uint8Array })[] = [];
        let same = 0;
        let kept = 0;
        for (const { key, decision } of plan) {
          if (decision === 'add') {
            toStore.push(key);
          } else if (decision === 'same') {
            same++;
          } else if (
            await askConflict(
              trans,
              trans.__('A different key for this notebook'),
              trans.__(
                'This browser already has a different key for document %1%2. The backup’s key would replace it; if it is the wrong one, the stored key — possibly your only copy — is lost.',
                key.docId,
                key.name ? ` (${key.name})` : ''
              ),
              await keyFingerprint(getDocumentKey(key.docId)!),
              await keyFingerprint(key.key),
              trans.__('Keep the stored key'),
              trans.__('Replace it with the backup’s key')
            )
          ) {
            toStore.push(key);
          } else {
            kept++;
          }
        }
        let identity = 'none';
        if (content.identity) {
          const mine = storedSigningKeyPair();
          const theirs = content.identity;
          const privateKey = new Uint8Array(64);
          privateKey.set(theirs.seed);
          privateKey.set(theirs.publicKey, 32);
          if (!mine) {
            setSigningKeyPair({ publicKey: theirs.publicKey, privateKey });
            identity = 'added';
          } else if (b64encode(mine.publicKey) === b64encode(theirs.publicKey)) {
            identity = 'same';
          } else if (
            await askConflict(
              trans,
              trans.__('A different identity'),
              trans.__(
                'This browser already has a signing identity, and the backup holds another. Taking the backup’s makes this browser the person who made the backup (their memberships); this browser’s current identity is then lost unless it is in a backup. Open notebooks use the new identity after a reload.'
              ),
              fingerprint(b64encode(mine.publicKey)),
              fingerprint(b64encode(theirs.publicKey)),
              trans.__('Keep this browser’s identity'),
              trans.__('Take the backup’s identity')
            )
          ) {
            setSigningKeyPair({ publicKey: theirs.publicKey, privateKey });
            identity = 'replaced';
          } else {
            identity = 'kept';
          }
        }
        for (const key of toStore) {
          setDocumentKey(key.docId, key.key, 'backup');
        }
        // the epoch keys after 0 (issue 12): added; a different stored key is kept, reported
        const epochs = { added: 0, same: 0, conflicts: [] as string[], damaged: [] as string[] };
        const restored = new Set(toStore.map(k => k.docId));
        for (const entry of content.keys) {
          let plans;
          try {
            plans = planKeyringImport(getKeyring, [entry]);
          } catch (e) {
            epochs.damaged.push(`${entry.docId}: ${(e as Error).message}`);
            continue;
          }
          for (const p of plans) {
            epochs.added += p.added.length;
            epochs.same += p.same.length;
            epochs.conflicts.push(...p.conflicts.map(e => trans.__('epoch %1 of %2', e, p.docId)));
            if (p.changed) {
              saveKeyring(p.docId, p.keyring, p.seen);
              restored.add(p.docId);
            }
          }
        }
        if (epochs.conflicts.length > 0 || epochs.damaged.length > 0) {
          Notification.warning(
            [
              ...(epochs.conflicts.length
                ? [
                    trans.__(
                      'The backup holds another key than this browser for %1. The key stored here was kept (an epoch key is never replaced).',
                      epochs.conflicts.join(', ')
                    )
                  ]
                : []),
              ...epochs.damaged.map(d =>
                trans.__('Epoch keys not restored (the stored keyring is damaged): %1', d)
              )
            ].join(' '),
            { autoClose: false }
          );
        }
        // open tabs waiting for one of these keys continue
        for (const session of registry.all()) {
          if (restored.has(session.docId)) {
            session.retryStoredKey();
          }
        }
        const parts = [
          trans._n('Restored %1 key', 'Restored %1 keys', toStore.length),
          trans.__('%1 already here', same)
        ];
        if (kept) {
          parts.push(trans.__('%1 kept (a different key is stored here)', kept));
        }
        if (epochs.added || epochs.conflicts.length) {
          parts.push(
            trans._n('%1 epoch key restored', '%1 epoch keys restored', epochs.added) +
              (epochs.conflicts.length
                ? ' ' + trans.__('(%1 conflicting, kept)', epochs.conflicts.length)
                : '')
          );
        }
        parts.push(
          {
            none: trans.__('no identity in the backup'),
            added: trans.__('identity restored'),
            same: trans.__('same identity'),
            replaced: trans.__('identity replaced'),
            kept: trans.__('this browser’s identity kept')
          }[identity]!
        );
        Notification.success(parts.join(' · '), { autoClose: 10000 });
        return {
          restored: toStore.length,
          same,
          kept,
          identity,
          epochsRestored: epochs.added,
          epochsSame: epochs.same,
          epochConflicts: epochs.conflicts
        };
      }
    });

    if (palette) {
      const category = trans.__('Encrypted Notebooks');
      palette.addItem({ command: BackupCommandIDs.backupKeys, category });
      palette.addItem({ command: BackupCommandIDs.restoreKeys, category });
    }
  }
};

export default plugin;
