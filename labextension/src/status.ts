/**
 * Status bar item of encrypted notebooks (state + collaborator count) and the
 * collaborators popup (name + key fingerprint).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { usersIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { encryptedNotebookIcon } from './icons';
import { fingerprint, keyOnlyHere } from './keystore';
import { myRoleLabel } from './members';
import { collaboratorMarker, seenMarker } from './relayalerts';
import { IEncryptedSession, registry } from './registry';
import { rotationText } from './sharedialog';

/** What the collaborators popup offers besides the list (commands of index.ts). */
export interface IStatusActions {
  /** "My identity": copy this browser's identity string. */
  myIdentity(): void;
  /** The Members dialog of the session's notebook. */
  members(session: IEncryptedSession): void;
  /** Share: the Share dialog (a notebook with members) or its #key= link (without). */
  share(session: IEncryptedSession): void;
}

export interface ICollaborator {
  clientId: number;
  name: string;
  color: string;
  pubKey: string | null;
  fingerprint: string;
  isSelf: boolean;
}

export function collaborators(session: IEncryptedSession): ICollaborator[] {
  const awareness = session.sharedModel.awareness;
  const result: ICollaborator[] = [];
  awareness.getStates().forEach((state: any, clientId: number) => {
    if (!state || !state.user) {
      return;
    }
    // `pubKey` of remote states is checked by the sync client against the signer of the
    // ephemeral message that carried it (states claiming another key are dropped).
    const claimed = typeof state.pubKey === 'string' ? state.pubKey : state.secsync?.pubKey;
    const pubKey: string | null = typeof claimed === 'string' ? claimed : null;
    result.push({
      clientId,
      name: String(state.user.display_name || state.user.name || state.user.username || '?'),
      color: String(state.user.color || 'var(--jp-ui-font-color2)'),
      pubKey,
      fingerprint: pubKey ? fingerprint(pubKey) : '—',
      isSelf: clientId === awareness.clientID
    });
  });
  result.sort((a, b) => Number(b.isSelf) - Number(a.isSelf) || a.name.localeCompare(b.name));
  return result;
}

/**
 * One word for the state of a session: locked | not a member | removed | connecting |
 * syncing | synced | error.
 */
export function stateOf(session: IEncryptedSession): string {
  const s = session.status;
  if (s.locked) {
    return 'locked';
  }
  if (s.access === 'not-member') {
    return 'not a member';
  }
  if (s.access === 'removed') {
    return 'removed';
  }
  if (s.documentState === 'failed' || s.connection === 'failed' || (s.lastError && !s.loaded)) {
    return 'error';
  }
  if (!s.loaded || s.connection !== 'connected') {
    return 'connecting';
  }
  if (s.pendingChanges > 0) {
    return 'syncing';
  }
  return 'synced';
}

export class EncryptedStatusItem extends Widget {
  constructor(trans: TranslationBundle, actions: IStatusActions | null = null) {
    super({ node: document.createElement('div') });
    this._trans = trans;
    this.addClass('jp-secsync-StatusItem');
    this.node.title = trans.__('End-to-end encrypted notebook — click for collaborators');
    this.node.addEventListener('click', () => {
      if (this._session) {
        void showCollaborators(this._session, this._trans, actions);
      }
    });
    this._awarenessChanged = () => this.update();
    const lock = encryptedNotebookIcon.element({
      className: 'jp-secsync-StatusItem-lock',
      tag: 'span',
      height: '14px',
      width: '14px'
    });
    this._label = document.createElement('span');
    this._label.className = 'jp-secsync-StatusItem-label';
    this._role = document.createElement('span');
    this._role.className = 'jp-secsync-StatusItem-role';
    this._count = document.createElement('span');
    this._count.className = 'jp-secsync-StatusItem-count';
    this._countText = document.createTextNode('0');
    this._count.append(
      usersIcon.element({ tag: 'span', height: '14px', width: '14px' }),
      this._countText
    );
    // issue 13: shown once the relay was caught withholding, forking or rolling back
    this._alert = document.createElement('span');
    this._alert.className = 'jp-secsync-StatusItem-alert';
    this.node.append(lock, this._label, this._role, this._count, this._alert);
  }

  get session(): IEncryptedSession | null {
    return this._session;
  }

  set session(session: IEncryptedSession | null) {
    if (session === this._session) {
      return;
    }
    if (this._session) {
      this._session.statusChanged.disconnect(this._onStatus, this);
      this._session.membershipChanged.disconnect(this._onStatus, this);
      this._session.sharedModel.awareness.off('change', this._awarenessChanged);
      this._session.relayAlerts.changed.disconnect(this._onStatus, this);
    }
    this._session = session;
    if (session) {
      session.statusChanged.connect(this._onStatus, this);
      session.membershipChanged.connect(this._onStatus, this);
      session.relayAlerts.changed.connect(this._onStatus, this);
      session.sharedModel.awareness.on('change', this._awarenessChanged);
    }
    this.update();
  }

  protected onUpdateRequest(): void {
    // Update in place (never rebuild the children: a click must survive awareness changes,
    // e.g. the editor losing focus on mousedown).
    const session = this._session;
    if (!session) {
      return;
    }
    const state = stateOf(session);
    this.node.dataset.state = state;
    const others = collaborators(session).filter(c => !c.isSelf).length;
    let text = this._trans.__('Encrypted · %1', this._trans.__(state));
    if (state === 'connecting' && session.status.progress && session.status.progress.total > 0) {
      const p = session.status.progress;
      text += ` ${Math.round((100 * p.loaded) / p.total)}%`;
    }
    if (state === 'syncing') {
      text += ` (${session.status.pendingChanges})`;
    }
    if (this._label.textContent !== text) {
      this._label.textContent = text;
    }
    // this browser's role in a document with a membership log
    const role = session.status.access === 'member' ? myRoleLabel(session, this._trans) : '';
    const roleText = !role
      ? ''
      : session.status.readOnly
        ? this._trans.__('%1 — read only', role)
        : role;
    if (this._role.textContent !== roleText) {
      this._role.textContent = roleText;
      this._role.dataset.role = session.myRole ?? '';
      this._role.title = roleText ? this._trans.__('Your role in this notebook: %1', roleText) : '';
    }
    if (this._count.dataset.collaborators !== String(others)) {
      this._countText.data = String(others);
      this._count.dataset.collaborators = String(others);
      this._count.title = this._trans._n(
        '%1 collaborator besides you',
        '%1 collaborators besides you',
        others
      );
    }
    const alerts = session.relayAlerts.count;
    const alertText = alerts > 0 ? '⚠ ' + this._trans.__('relay') : '';
    if (this._alert.textContent !== alertText) {
      this._alert.textContent = alertText;
      this._alert.dataset.alerts = String(alerts);
      this._alert.title = alertText
        ? this._trans.__(
            'The relay withheld, forked or rolled back changes of this notebook: click for who is concerned'
          )
        : '';
    }
    this.node.title = session.status.lastError
      ? this._trans.__('Last error: %1', session.status.lastError)
      : this._trans.__('End-to-end encrypted notebook — click for collaborators');
  }

  private _onStatus(): void {
    // The state attribute follows the session at once (the rest is redrawn in the next
    // frame): `data-state='synced'` never shows a change typed a moment ago as saved.
    if (this._session) {
      this.node.dataset.state = stateOf(this._session);
    }
    this.update();
  }

  private _trans: TranslationBundle;
  private _label: HTMLSpanElement;
  private _role: HTMLSpanElement;
  private _count: HTMLSpanElement;
  private _countText: Text;
  private _alert: HTMLSpanElement;
  private _session: IEncryptedSession | null = null;
  private _awarenessChanged: () => void;
}

export async function showCollaborators(
  session: IEncryptedSession,
  trans: TranslationBundle,
  actions: IStatusActions | null = null
): Promise<void> {
  const body = new Widget();
  body.addClass('jp-secsync-Collaborators');
  const render = () => {
    body.node.textContent = '';
    const intro = document.createElement('p');
    intro.textContent = trans.__(
      'People with this notebook open. Compare key fingerprints out of band to be sure who is editing.'
    );
    body.node.appendChild(intro);
    const table = document.createElement('table');
    const head = table.insertRow();
    for (const h of [trans.__('Name'), trans.__('Key fingerprint'), trans.__('Relay')]) {
      const th = document.createElement('th');
      th.textContent = h;
      head.appendChild(th);
    }
    const alerts = session.relayAlerts;
    const rows: ICollaborator[] = collaborators(session);
    // authors the relay withheld who are not here now get a row too (named by the log)
    for (const pubKey of alerts.byCollaborator.keys()) {
      if (!rows.some(c => c.pubKey === pubKey)) {
        rows.push({
          clientId: -1,
          name: session.membership?.members.get(pubKey)?.name || trans.__('(not connected)'),
          color: 'transparent',
          pubKey,
          fingerprint: fingerprint(pubKey),
          isSelf: false
        });
      }
    }
    for (const c of rows) {
      const row = table.insertRow();
      row.className = 'jp-secsync-Collaborator';
      row.dataset.pubkey = c.pubKey ?? '';
      const name = row.insertCell();
      const dot = document.createElement('span');
      dot.className = 'jp-secsync-Collaborator-dot';
      dot.style.background = c.color;
      name.append(dot, document.createTextNode(c.name + (c.isSelf ? ' ' + trans.__('(you)') : '')));
      const fp = row.insertCell();
      fp.className = 'jp-secsync-Collaborator-fingerprint';
      fp.textContent = c.fingerprint;
      // issue 13: what the relay did to this collaborator's changes, and "seen by"
      const relay = row.insertCell();
      relay.className = 'jp-secsync-Collaborator-relay';
      if (c.pubKey && !c.isSelf) {
        const marker = collaboratorMarker(alerts.byCollaborator.get(c.pubKey), trans);
        const seen = c.clientId >= 0 ? seenMarker(alerts.seenBy(c.pubKey), trans) : null;
        relay.append(...[marker, seen].filter((e): e is HTMLElement => e !== null));
      }
    }
    body.node.appendChild(table);
    for (const text of alerts.general) {
      const p = document.createElement('p');
      p.className = 'jp-secsync-Collaborators-relayAlert';
      p.textContent = '⚠ ' + text;
      body.node.appendChild(p);
    }
    const state = document.createElement('p');
    state.className = 'jp-secsync-Collaborators-state';
    state.textContent = trans.__(
      'Document %1 · relay %2 · %3',
      session.docId,
      session.relayBase ?? trans.__('this Jupyter server'),
      stateOf(session)
    );
    body.node.appendChild(state);
    // issue 12: the latest key rotation (sharedialog.ts)
    const rotated = rotationText(session.membership, trans);
    if (rotated) {
      const p = document.createElement('p');
      p.className = 'jp-secsync-Collaborators-rotated';
      p.textContent = rotated + '.';
      body.node.appendChild(p);
    }
    if (keyOnlyHere(session.docId)) {
      const warn = document.createElement('p');
      warn.className = 'jp-secsync-Collaborators-backupWarning';
      warn.style.color = 'var(--jp-warn-color0)';
      warn.textContent = trans.__(
        'The key of this notebook exists only in this browser (not in a key backup): if this browser profile is lost, so is the notebook for everyone without its share link. Use Encryption → Back Up Keys….'
      );
      body.node.appendChild(warn);
    }
    if (actions) {
      const buttons = document.createElement('div');
      buttons.className = 'jp-secsync-Collaborators-actions';
      const role = myRoleLabel(session, trans);
      if (role) {
        const mine = document.createElement('span');
        mine.textContent = trans.__('Your role: %1.', role) + ' ';
        buttons.append(mine);
      }
      const identity = document.createElement('button');
      identity.className = 'jp-mod-styled jp-secsync-Collaborators-myIdentity';
      identity.textContent = trans.__('My identity…');
      identity.addEventListener('click', () => actions.myIdentity());
      const members = document.createElement('button');
      members.className = 'jp-mod-styled jp-secsync-Collaborators-members';
      members.textContent = trans.__('Members…');
      members.addEventListener('click', () => actions.members(session));
      const share = document.createElement('button');
      share.className = 'jp-mod-styled jp-secsync-Collaborators-share';
      share.textContent = trans.__('Share…');
      share.addEventListener('click', () => actions.share(session));
      buttons.append(identity, members, share);
      body.node.appendChild(buttons);
    }
  };
  render();
  const onChange = () => render();
  session.sharedModel.awareness.on('change', onChange);
  session.relayAlerts.changed.connect(onChange);
  // "seen by" follows the collaborators' heads (about every 5 s): redraw when it changes
  const seenNow = () =>
    collaborators(session)
      .map(c => (c.pubKey ? String(session.relayAlerts.seenBy(c.pubKey)) : ''))
      .join();
  let seen = seenNow();
  const timer = window.setInterval(() => {
    if (seenNow() !== seen) {
      seen = seenNow();
      render();
    }
  }, 1000);
  try {
    await showDialog({
      title: trans.__('Collaborators on %1', session.path.split('/').pop()),
      body,
      buttons: [Dialog.okButton({ label: trans.__('Close') })]
    });
  } finally {
    window.clearInterval(timer);
    session.relayAlerts.changed.disconnect(onChange);
    session.sharedModel.awareness.off('change', onChange);
  }
}

/** All open encrypted sessions. */
export function sessions(): IEncryptedSession[] {
  return registry.all();
}
