/**
 * The Share dialog of an encrypted notebook with a membership log (issue 12): invitation
 * links. Admins create a viewer or editor link (label, optional expiry) and copy it; everyone
 * sees the links (live, expired, revoked) and who joined through each; admins revoke a link
 * — `remove-link` and a key rotation — optionally removing, in the same action, the people who
 * joined through it. The latest key rotation ("key rotated by X at T") is shown here and in
 * the status bar's popup (status.ts, `rotationText`).
 *
 * The secret of a link exists only in its URL (fragment `#link=`): the dialog shows it once,
 * when it is made; the log holds the link's public key, role, label and expiry.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { codeOf, el, MembershipDialogBody, showBodyDialog } from './dialogbase';
import { copyText, fingerprintGroups } from './myidentity';
import { IEncryptedSession } from './registry';
import type { Link, MembershipState } from './secsync/membership';

export type LinkRole = 'viewer' | 'editor';

/** Expiry choices of a new link: label and duration in ms (null: never). */
const EXPIRY_CHOICES: Array<[string, number | null]> = [
  ['never', null],
  ['1 hour', 3600_000],
  ['1 day', 86400_000],
  ['7 days', 7 * 86400_000],
  ['30 days', 30 * 86400_000]
];

/** A member's or link signer's display name (the fingerprint when it has none). */
export function nameOf(state: MembershipState, key: string): string {
  const m = state.members.get(key);
  if (m?.name) {
    return m.name;
  }
  const link = state.links.get(key);
  if (link) {
    return link.label;
  }
  return fingerprintGroups(key);
}

/** "Key rotated by X at T" for the latest rotation (null: never rotated). */
export function rotationText(state: MembershipState | null, trans: TranslationBundle): string | null {
  if (!state || state.epoch === 0) {
    return null;
  }
  const info = state.epochs[state.epoch];
  return trans.__(
    'Key rotated by %1 at %2',
    nameOf(state, info.signer),
    new Date(info.at).toLocaleString()
  );
}

/** What the user is told about a refused link action (no codes). */
export function describeShareError(error: unknown, trans: TranslationBundle): string {
  switch (codeOf(error)) {
    case 711:
    case 712:
      return trans.__('Only owners and admins can create or revoke invitation links.');
    case 752:
    case 756:
      return trans.__('An invitation link gives the viewer or the editor role, never admin.');
    case 757:
      return trans.__('This link was revoked already.');
    case 741:
    case 780:
      return trans.__(
        'This label is not accepted: 1 to 100 characters, no control or invisible characters, no spaces at either end.'
      );
    case 759:
      return trans.__('The expiry must be in the future.');
    case 766:
    case 762:
      return trans.__(
        'This browser does not hold the notebook’s current key, so it cannot make a link now. Reopen the notebook and try again.'
      );
    case 707:
    case 709:
      return trans.__('Someone else changed the members at the same moment. Try again.');
    case 700:
      return trans.__('The encrypted notebook is not connected. Try again once it is.');
    default: {
      const message = error instanceof Error ? error.message : String(error);
      const text = message.replace(/^SECSYNC_ERROR_\w+: /, '');
      return /SECSYNC/.test(text) ? trans.__('The change was refused.') : text;
    }
  }
}

/** live / expired / revoked */
function linkState(link: Link, now: number): 'live' | 'expired' | 'revoked' {
  if (link.removed !== undefined) {
    return 'revoked';
  }
  return link.expiresAt !== undefined && now > link.expiresAt ? 'expired' : 'live';
}

/** The body of the Share dialog (re-rendered whenever the membership changes). */
class ShareBody extends MembershipDialogBody<'create' | 'list'> {
  constructor(
    session: IEncryptedSession,
    trans: TranslationBundle,
    private _note = ''
  ) {
    super(session, trans, 'jp-secsync-Share');
    this._render();
  }

  protected _describe(error: unknown): string {
    return describeShareError(error, this._trans);
  }

  protected _render(): void {
    const trans = this._trans;
    const session = this._session;
    const state = session.membership;
    // keep what the admin typed across re-renders
    const typedLabel =
      (this.node.querySelector('.jp-secsync-Share-label') as HTMLInputElement | null)?.value ??
      '';
    const typedRole =
      (this.node.querySelector('.jp-secsync-Share-role') as HTMLSelectElement | null)?.value ??
      'viewer';
    const typedExpiry =
      (this.node.querySelector('.jp-secsync-Share-expiry') as HTMLSelectElement | null)?.value ??
      '0';
    this.node.textContent = '';
    if (!state) {
      this.node.append(
        el(
          'p',
          'jp-secsync-Share-none',
          trans.__(
            'This encrypted notebook has no member list: share it with its share link (Copy Share Link). Notebooks made with New Encrypted Notebook have invitation links.'
          )
        )
      );
      return;
    }
    const admin = state.canManage(session.ownPublicKey);
    if (this._note) {
      // opened by Copy Share Link (index.ts): why there is no key link to copy
      this.node.append(el('p', 'jp-secsync-Share-note', this._note));
    }
    this.node.append(
      el(
        'p',
        undefined,
        trans.__(
          'Whoever opens an invitation link joins as themselves, with the link’s role, until the link is revoked or expires. Revoking a link changes the notebook’s key; the people who joined through it stay members unless you remove them too.'
        )
      )
    );
    const rotated = rotationText(state, trans);
    if (rotated) {
      this.node.append(el('p', 'jp-secsync-Share-rotated', rotated + '.'));
    }

    // ---- create
    if (admin) {
      const create = el('div', 'jp-secsync-Share-create');
      create.append(el('h3', undefined, trans.__('Create an invitation link')));
      const role = el('select', 'jp-mod-styled jp-secsync-Share-role');
      for (const [value, text] of [
        ['viewer', trans.__('viewer (reads)')],
        ['editor', trans.__('editor (reads and writes)')]
      ]) {
        const option = el('option', undefined, text);
        option.value = value;
        role.append(option);
      }
      role.value = typedRole;
      const label = el('input', 'jp-mod-styled jp-secsync-Share-label');
      label.placeholder = trans.__('Label (who it is for)');
      label.value = typedLabel;
      label.maxLength = 100;
      const expiry = el('select', 'jp-mod-styled jp-secsync-Share-expiry');
      EXPIRY_CHOICES.forEach(([text, ms], i) => {
        const option = el(
          'option',
          undefined,
          ms === null ? trans.__('never expires') : trans.__('expires in %1', trans.__(text))
        );
        option.value = String(i);
        expiry.append(option);
      });
      expiry.value = typedExpiry;
      const button = el(
        'button',
        'jp-mod-styled jp-mod-accept jp-secsync-Share-createButton',
        trans.__('Create link')
      );
      button.disabled = this._busy;
      const submit = () => {
        const text = label.value.trim() || trans.__('link');
        const linkRole = role.value as LinkRole;
        const ms = EXPIRY_CHOICES[Number(expiry.value)]?.[1] ?? null;
        void this._run(
          async () => {
            const url = await session.createLink(
              linkRole,
              text,
              ms === null ? null : Date.now() + ms
            );
            this._newLink = { url, label: text, role: linkRole };
            copyText(url);
            label.value = '';
          },
          'create',
          trans.__('Link “%1” created and copied.', text),
          true
        );
      };
      button.addEventListener('click', submit);
      label.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          // (the dialog takes Enter in an input as "Close")
          event.preventDefault();
          event.stopPropagation();
          submit();
        }
      });
      const line = el('div', 'jp-secsync-Share-createLine');
      line.append(role, label, expiry, button);
      create.append(line);
      if (this._newLink) {
        const made = el('div', 'jp-secsync-Share-made');
        made.append(
          el(
            'p',
            undefined,
            trans.__(
              'Send this link privately (it is the invitation: anyone who has it can join as %1 until you revoke it). It is shown only now.',
              this._newLink.role === 'editor' ? trans.__('editor') : trans.__('viewer')
            )
          )
        );
        const url = el('input', 'jp-mod-styled jp-secsync-Share-newLink');
        url.readOnly = true;
        url.value = this._newLink.url;
        url.addEventListener('focus', () => url.select());
        const copy = el('button', 'jp-mod-styled jp-secsync-Share-copy', trans.__('Copy'));
        copy.addEventListener('click', () => {
          this._status = copyText(this._newLink?.url ?? '')
            ? trans.__('Copied.')
            : trans.__('Could not copy: select the link and copy it (Ctrl+C).');
          status.textContent = this._status;
        });
        const row = el('div', 'jp-secsync-Share-madeLine');
        row.append(url, copy);
        made.append(row);
        create.append(made);
      }
      const error = el('p', 'jp-secsync-Share-error jp-secsync-Share-createError');
      if (this._error?.place === 'create') {
        error.textContent = this._error.text;
      }
      create.append(error);
      this.node.append(create);
    }

    // ---- list
    const now = Date.now();
    const links = [...state.links.values()].sort((a, b) => b.seq - a.seq);
    this.node.append(el('h3', undefined, trans.__('Invitation links')));
    if (!links.length) {
      this.node.append(el('p', 'jp-secsync-Share-noLinks', trans.__('No invitation links yet.')));
    } else {
      const table = el('table', 'jp-secsync-Share-table');
      const head = table.insertRow();
      for (const h of [
        trans.__('Label'),
        trans.__('Role'),
        trans.__('State'),
        trans.__('Joined through it'),
        ''
      ]) {
        head.append(el('th', undefined, h));
      }
      for (const link of links) {
        const joined = [...state.members.values()].filter(m => m.via === link.pubKey);
        const kind = linkState(link, now);
        const row = table.insertRow();
        row.className = 'jp-secsync-ShareLink';
        row.dataset.pubkey = link.pubKey;
        row.dataset.state = kind;
        row.dataset.joined = String(joined.length);
        const labelCell = row.insertCell();
        labelCell.textContent = link.label;
        labelCell.title = trans.__(
          'Created by %1 at %2',
          nameOf(state, link.addedBy),
          new Date(link.at).toLocaleString()
        );
        row.insertCell().textContent = link.role === 'editor' ? trans.__('editor') : trans.__('viewer');
        const stateCell = row.insertCell();
        stateCell.className = 'jp-secsync-ShareLink-state';
        stateCell.textContent =
          kind === 'revoked'
            ? trans.__('revoked')
            : kind === 'expired'
              ? trans.__('expired')
              : link.expiresAt !== undefined
                ? trans.__('live until %1', new Date(link.expiresAt).toLocaleString())
                : trans.__('live');
        const who = row.insertCell();
        who.className = 'jp-secsync-ShareLink-joined';
        who.textContent = joined.length
          ? joined.map(m => nameOf(state, m.pubKey)).join(', ')
          : trans.__('nobody');
        const actions = el('td', 'jp-secsync-ShareLink-actions');
        if (admin && (kind !== 'revoked' || joined.length)) {
          const revoke = el(
            'button',
            'jp-mod-styled jp-secsync-ShareLink-revoke',
            kind === 'revoked' ? trans.__('Remove people…') : trans.__('Revoke…')
          );
          revoke.disabled = this._busy;
          revoke.addEventListener('click', () => {
            // an inline confirmation (no dialog over the dialog)
            actions.textContent = '';
            const box = el('label', 'jp-secsync-ShareLink-removeJoinedLabel');
            const check = el('input', 'jp-secsync-ShareLink-removeJoined');
            check.type = 'checkbox';
            check.checked = kind === 'revoked';
            check.disabled = !joined.length;
            box.append(
              check,
              document.createTextNode(
                ' ' +
                  (joined.length === 1
                    ? trans.__('also remove the person who joined through it')
                    : trans.__('also remove the %1 people who joined through it', joined.length))
              )
            );
            const yes = el(
              'button',
              'jp-mod-styled jp-mod-warn jp-secsync-ShareLink-confirmRevoke',
              kind === 'revoked' ? trans.__('Remove') : trans.__('Revoke')
            );
            const no = el('button', 'jp-mod-styled jp-secsync-ShareLink-cancel', trans.__('Cancel'));
            yes.addEventListener('click', () => {
              const removeJoined = check.checked && joined.length > 0;
              void this._run(
                () => session.revokeLink(link.pubKey, removeJoined),
                'list',
                removeJoined
                  ? trans.__(
                      'Link “%1” revoked, %2 removed; the key was changed.',
                      link.label,
                      joined.map(m => nameOf(state, m.pubKey)).join(', ')
                    )
                  : trans.__('Link “%1” revoked; the key was changed.', link.label),
                true
              );
            });
            no.addEventListener('click', () => this._render());
            actions.append(box, yes, no);
          });
          actions.append(revoke);
        }
        row.append(actions);
      }
      this.node.append(table);
    }
    const listError = el('p', 'jp-secsync-Share-error jp-secsync-Share-listError');
    if (this._error?.place === 'list') {
      listError.textContent = this._error.text;
    }
    const status = el('p', 'jp-secsync-Share-status', this._status);
    this.node.append(listError, status);
  }

  private _newLink: { url: string; label: string; role: LinkRole } | null = null;
}

/** The Share dialog of `session`. */
export async function showShare(
  session: IEncryptedSession,
  trans: TranslationBundle,
  note = ''
): Promise<void> {
  await showBodyDialog(
    trans.__('Share %1', session.path.split('/').pop()),
    new ShareBody(session, trans, note),
    trans
  );
}
