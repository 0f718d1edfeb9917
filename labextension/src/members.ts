/**
 * The Members dialog of an encrypted notebook with a membership log (issue 11): every
 * member's name, fingerprint, role (the creator shown as owner), who added them and when.
 * Admins add members by pasted identity string with a role, change roles and remove members
 * (with a confirmation); everyone else sees the list. Every change is a signed log entry made
 * by the session (provider.ts → the sync client), which the relay and every member verify.
 */
import type { User } from '@jupyterlab/services';
import type { TranslationBundle } from '@jupyterlab/translation';

import { codeOf, el, MembershipDialogBody, showBodyDialog } from './dialogbase';
import { copyText, fingerprintGroups, myIdentity } from './myidentity';
import { IEncryptedSession } from './registry';
import type { Member, MembershipState, Role } from './secsync/membership';
import { parseIdentity } from './secsync/identity';

export const ROLE_CHOICES: Role[] = ['viewer', 'editor', 'admin'];

/** The creator (signer of the root entry) while it is an admin is shown as the owner. */
export function isOwner(member: Member): boolean {
  return member.seq === 0 && member.role === 'admin';
}

/** The word shown for a member's role. */
export function roleLabel(member: Member | null, role: Role | null, trans: TranslationBundle): string {
  if (member && isOwner(member)) {
    return trans.__('owner');
  }
  switch (role) {
    case 'admin':
      return trans.__('admin');
    case 'editor':
      return trans.__('editor');
    case 'viewer':
      return trans.__('viewer');
    default:
      return trans.__('not a member');
  }
}

/** The role word of this browser in a session ('' for a document without a log). */
export function myRoleLabel(session: IEncryptedSession, trans: TranslationBundle): string {
  const state = session.membership;
  if (!state) {
    return '';
  }
  const me = state.members.get(session.ownPublicKey) ?? null;
  return roleLabel(me, session.myRole, trans);
}

/** What the user is told about a refused membership change or identity string (no codes). */
export function describeMembershipError(error: unknown, trans: TranslationBundle): string {
  const field = (error as { field?: unknown })?.field;
  switch (codeOf(error)) {
    case 730:
      if (field === 'identity') {
        return trans.__(
          'This is not an identity string. An identity string starts with secsync-id:1: (ask for it again: My identity copies it).'
        );
      }
      if (field === 'name') {
        return trans.__('The name at the end of this identity string is damaged. Ask for it again.');
      }
      return trans.__(
        'This identity string is damaged or cut off (its %1 is not valid). Copy the whole string, exactly as it was sent.',
        String(field ?? 'key')
      );
    case 731:
      return trans.__(
        'The fingerprint in this identity string does not match its key: the string was changed or mixed up. Ask for it again and compare the fingerprint with its owner.'
      );
    case 711:
    case 712:
      return trans.__('Only owners and admins can change the members.');
    case 713:
      return trans.__('Nobody can give themselves a higher role.');
    case 714:
      return trans.__(
        'The notebook must keep at least one owner or admin: make someone else admin first.'
      );
    case 715:
      return trans.__('This person is already a member.');
    case 716:
      return trans.__('This person is not a member (any more).');
    case 717:
      return trans.__('This member already has that role.');
    case 707:
    case 709:
      return trans.__('Someone else changed the members at the same moment. Try again.');
    case 741:
      return trans.__('This identity cannot be added (%1).', String(field ?? 'invalid'));
    default: {
      const message = error instanceof Error ? error.message : String(error);
      return message.replace(/^SECSYNC_ERROR_\w+: /, '');
    }
  }
}

function roleSelect(value: Role, trans: TranslationBundle, className: string): HTMLSelectElement {
  const select = el('select', `jp-mod-styled ${className}`);
  for (const role of ROLE_CHOICES) {
    const option = el('option', undefined, roleLabel(null, role, trans));
    option.value = role;
    select.append(option);
  }
  select.value = value;
  return select;
}

/** The body of the Members dialog (re-rendered whenever the membership changes). */
class MembersBody extends MembershipDialogBody<'row' | 'add'> {
  constructor(
    session: IEncryptedSession,
    trans: TranslationBundle,
    private _user: User.IManager | null
  ) {
    super(session, trans, 'jp-secsync-Members');
    this._render();
  }

  protected _describe(error: unknown): string {
    return describeMembershipError(error, this._trans);
  }

  protected _render(): void {
    const trans = this._trans;
    const session = this._session;
    const state = session.membership;
    const me = session.ownPublicKey;
    // keep what the admin typed across re-renders
    const typed =
      (this.node.querySelector('.jp-secsync-Members-identity') as HTMLTextAreaElement | null)?.value ??
      '';
    const typedRole =
      (this.node.querySelector('.jp-secsync-Members-addRole') as HTMLSelectElement | null)?.value ??
      'editor';
    this.node.textContent = '';
    if (!state) {
      this.node.append(
        el(
          'p',
          'jp-secsync-Members-none',
          trans.__(
            'This encrypted notebook has no member list: anyone with its share link can read and edit it. Notebooks made with New Encrypted Notebook have one (to restrict an older notebook, Duplicate it).'
          )
        )
      );
      return;
    }
    const admin = state.canManage(me);
    this.node.append(
      el(
        'p',
        undefined,
        admin
          ? trans.__(
              'Only members can open this notebook, even with its share link. Viewers read, editors also write, owners and admins also manage members. Check a new member’s fingerprint with them before adding them.'
            )
          : trans.__(
              'Only members can open this notebook, even with its share link. Owners and admins manage the members.'
            )
      )
    );
    const table = el('table', 'jp-secsync-Members-table');
    const head = table.insertRow();
    for (const h of [
      trans.__('Name'),
      trans.__('Fingerprint'),
      trans.__('Role'),
      trans.__('Added by'),
      trans.__('Added'),
      ''
    ]) {
      head.append(el('th', undefined, h));
    }
    const members = [...state.members.values()].sort(
      (a, b) => Number(b.pubKey === me) - Number(a.pubKey === me) || a.seq - b.seq
    );
    const nameOf = (key: string) => {
      const m = state.members.get(key);
      // issue 12: people who joined through an invitation link were added by the link
      const link = m ? undefined : state.links.get(key);
      return m?.name || (link ? trans.__('link “%1”', link.label) : fingerprintGroups(key));
    };
    const rowError = el('p', 'jp-secsync-Members-error');
    for (const m of members) {
      const row = table.insertRow();
      row.className = 'jp-secsync-Member';
      row.dataset.pubkey = m.pubKey;
      row.dataset.role = m.role;
      const name = m.name || trans.__('(no name)');
      const nameCell = row.insertCell();
      nameCell.className = 'jp-secsync-Member-name';
      nameCell.textContent = name + (m.pubKey === me ? ' ' + trans.__('(you)') : '');
      const fp = row.insertCell();
      fp.className = 'jp-secsync-Member-fingerprint';
      fp.textContent = fingerprintGroups(m.pubKey);
      const role = row.insertCell();
      role.className = 'jp-secsync-Member-role';
      const actions = el('td', 'jp-secsync-Member-actions');
      if (admin) {
        const select = roleSelect(m.role, trans, 'jp-secsync-Member-roleSelect');
        select.title = trans.__('Change the role of %1', name);
        if (isOwner(m)) {
          // (the owner is an admin; the label says owner)
          select.options[ROLE_CHOICES.indexOf('admin')].textContent = trans.__('owner');
        }
        select.addEventListener('change', () => {
          const value = select.value as Role;
          void this._run(
            () => session.setRole(m.pubKey, value),
            'row',
            trans.__('%1 is now %2.', name, roleLabel(null, value, trans))
          );
        });
        role.append(select);
        const remove = el('button', 'jp-mod-styled jp-secsync-Member-remove', trans.__('Remove'));
        remove.title = trans.__('Remove %1 from this notebook', name);
        remove.addEventListener('click', () => {
          // an inline confirmation (no dialog over the dialog)
          actions.textContent = '';
          const question = el(
            'span',
            'jp-secsync-Member-confirmText',
            m.pubKey === me
              ? trans.__('Leave this notebook?')
              : trans.__('Remove %1?', name)
          );
          const yes = el(
            'button',
            'jp-mod-styled jp-mod-warn jp-secsync-Member-confirmRemove',
            trans.__('Remove')
          );
          const no = el('button', 'jp-mod-styled jp-secsync-Member-cancelRemove', trans.__('Cancel'));
          yes.addEventListener('click', () =>
            void this._run(
              () => session.removeMember(m.pubKey),
              'row',
              trans.__('%1 was removed.', name)
            )
          );
          no.addEventListener('click', () => this._render());
          actions.append(question, yes, no);
        });
        actions.append(remove);
      } else {
        role.textContent = roleLabel(m, m.role, trans);
      }
      const addedBy = row.insertCell();
      addedBy.className = 'jp-secsync-Member-addedBy';
      addedBy.textContent = m.seq === 0 ? trans.__('(created the notebook)') : nameOf(m.addedBy);
      const added = row.insertCell();
      added.className = 'jp-secsync-Member-addedAt';
      // (the entry's time, machine-readable for tests and tools)
      added.dataset.at = String(m.at);
      added.textContent = new Date(m.at).toLocaleString();
      row.append(actions);
    }
    if (this._error?.place === 'row') {
      rowError.textContent = this._error.text;
    }
    this.node.append(table, rowError);
    if (admin) {
      const add = el('div', 'jp-secsync-Members-add');
      add.append(
        el('h3', undefined, trans.__('Add a member')),
        el(
          'p',
          undefined,
          trans.__(
            'Paste the identity string they sent you (My identity copies it: secsync-id:1:…), choose a role.'
          )
        )
      );
      // (a one-line text area: the dialog takes Enter in an <input> as "Close")
      const input = el('textarea', 'jp-mod-styled jp-secsync-Members-identity');
      input.rows = 1;
      input.placeholder = 'secsync-id:1:…';
      input.spellcheck = false;
      input.value = typed;
      const preview = el('p', 'jp-secsync-Members-preview');
      const select = roleSelect(typedRole as Role, trans, 'jp-secsync-Members-addRole');
      const button = el('button', 'jp-mod-styled jp-mod-accept jp-secsync-Members-addButton', trans.__('Add'));
      const error = el('p', 'jp-secsync-Members-error jp-secsync-Members-addError');
      const showPreview = () => {
        preview.textContent = '';
        const text = input.value.trim();
        if (!text) {
          return;
        }
        try {
          const id = parseIdentity(text);
          preview.textContent = trans.__(
            'Fingerprint %1%2 — compare it with them.',
            fingerprintGroups(id.pubKey),
            id.name ? ` (${id.name})` : ''
          );
        } catch {
          // (the error is shown when adding)
        }
      };
      input.addEventListener('input', showPreview);
      showPreview();
      const submit = () => {
        const text = input.value.trim();
        if (!text) {
          this._error = { place: 'add', text: trans.__('Paste an identity string first.') };
          error.textContent = this._error.text;
          return;
        }
        let name = '';
        try {
          const id = parseIdentity(text);
          name = id.name || fingerprintGroups(id.pubKey);
        } catch (e) {
          this._error = { place: 'add', text: describeMembershipError(e, trans) };
          error.textContent = this._error.text;
          return;
        }
        const role = select.value as Role;
        void this._run(async () => {
          await session.addMember(text, role);
          input.value = '';
        }, 'add', trans.__('%1 was added as %2.', name, roleLabel(null, role, trans)));
      };
      button.addEventListener('click', submit);
      input.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          event.preventDefault();
          event.stopPropagation();
          submit();
        }
      });
      const line = el('div', 'jp-secsync-Members-addLine');
      line.append(input, select, button);
      add.append(line, preview, error);
      this.node.append(add);
      if (this._error?.place === 'add') {
        error.textContent = this._error.text;
      }
    }
    const status = el('p', 'jp-secsync-Members-status', this._status);
    const mine = el('div', 'jp-secsync-Members-mine');
    const copy = el('button', 'jp-mod-styled jp-secsync-Members-copyIdentity', trans.__('Copy my identity'));
    copy.addEventListener('click', async () => {
      const me = await myIdentity(this._user);
      copyText(me.text);
      this._status = trans.__('Your identity string is copied (fingerprint %1).', me.fingerprint);
      status.textContent = this._status;
    });
    mine.append(
      el('span', undefined, trans.__('Your role: %1.', myRoleLabel(session, trans))),
      copy
    );
    this.node.append(status, mine);
  }
}

/** The Members dialog of `session`. */
export async function showMembers(
  session: IEncryptedSession,
  trans: TranslationBundle,
  user: User.IManager | null
): Promise<void> {
  await showBodyDialog(
    trans.__('Members of %1', session.path.split('/').pop()),
    new MembersBody(session, trans, user),
    trans
  );
}

export type { MembershipState };
