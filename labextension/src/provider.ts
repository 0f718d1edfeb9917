/**
 * The document provider of encrypted notebooks: loads the pointer file, finds the key in
 * this browser, and syncs the shared model through a Secsync relay (ciphertext only).
 */
import { IDocumentProvider } from '@jupyter/collaborative-drive';
import type { IForkProvider } from '@jupyter/docprovider';
import type { DocumentChange, YDocument, YNotebook } from '@jupyter/ydoc';
import { Notification } from '@jupyterlab/apputils';
import type * as nbformat from '@jupyterlab/nbformat';
import { Contents, ServerConnection, User } from '@jupyterlab/services';
import type { TranslationBundle } from '@jupyterlab/translation';
import { PromiseDelegate } from '@lumino/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import {
  browserKeyringStore,
  getDocumentKey,
  getKeyring,
  getSigningKeyPair,
  rememberPointerPath
} from './keystore';
import {
  describeJoinError,
  describeLinkError,
  invitationLinkFor,
  parseLink,
  relayContext
} from './links';
import { displayNameOf } from './myidentity';
import { IPointer, parsePointer, relayDocumentUrl } from './pointer';
import { confirmRelay, storeKeyFromLink } from './prompts';
import { IEncryptedSession, IEncryptedStatus, registry } from './registry';
import { ensureHubServiceLogin, hubServiceBase } from './hubrelay';
import { classifyRelay, sessionKeyFor } from './relaypolicy';
import { collaboratorName, RelayAlerts } from './relayalerts';
import { b64encode } from './secsync/base64';
import { SecsyncStatus, SecsyncYjsClient, WebSocketConstructor } from './secsync/document';
import type { MembershipState, Role } from './secsync/membership';
import { MembershipError } from './secsync/membershipError';
import { parseShareLink } from './secsync/sharelink';
import { joinThroughLink, LinkJoinResult } from './secsync/linkJoin';
import { canAppend, createLinkOn, revokeLinkOn } from './secsync/linkCalls';
import { Keyring } from './secsync/lockbox';

/** True when this browser keeps epoch keys of `docId` (issue 12; a damaged entry: false). */
function hasStoredEpochKeys(docId: string): boolean {
  try {
    return getKeyring(docId).keyring.size > 0;
  } catch {
    return false;
  }
}
import { defaultRememberedStore } from './secsync/rememberedState';

/**
 * The membership part of the sync client (docs/labextension.md, "Members and roles: the sync
 * client's API").
 */
interface IMembershipClient {
  readonly membership: MembershipState | null;
  readonly myRole: Role | null;
  readonly readOnly: boolean;
  onMembershipChanged(
    listener: (state: MembershipState | null, myRole: Role | null) => void
  ): () => void;
  addMember(identity: string, role: Role): Promise<void>;
  setRole(pubKey: string, role: Role): Promise<void>;
  removeMember(pubKey: string): Promise<void>;
}

/** The relay refused this browser's reader proof (722) or revoked its access (725). */
function accessOf(reason: string | undefined | null): IEncryptedStatus['access'] | null {
  if (!reason) {
    return null;
  }
  if (reason.includes('SECSYNC_ERROR_725')) {
    return 'removed';
  }
  if (reason.includes('SECSYNC_ERROR_722')) {
    return 'not-member';
  }
  return null;
}

/** How long loading may take before a progress notification is shown. */
const PROGRESS_DELAY_MS = 400;
/** Checks (every 100 ms) for the progress toast's element before dismissing it anyway. */
const PROGRESS_DISMISS_TRIES = 100;

export function serverKey(serverSettings: ServerConnection.ISettings): string {
  return serverSettings.baseUrl;
}

export function defaultNotebookContent(
  kernelspec: { name: string; display_name: string; language?: string } | null
): nbformat.INotebookContent {
  const metadata: nbformat.INotebookMetadata = {} as nbformat.INotebookMetadata;
  if (kernelspec) {
    metadata.kernelspec = {
      name: kernelspec.name,
      display_name: kernelspec.display_name,
      ...(kernelspec.language ? { language: kernelspec.language } : {})
    };
    if (kernelspec.language) {
      metadata.language_info = { name: kernelspec.language };
    }
  }
  return {
    cells: [
      {
        cell_type: 'code',
        source: '',
        metadata: {},
        outputs: [],
        execution_count: null
      } as nbformat.ICodeCell
    ],
    metadata,
    nbformat: 4,
    nbformat_minor: 5
  };
}

export class EncryptedDocumentProvider
  implements IDocumentProvider, IForkProvider, IEncryptedSession
{
  constructor(options: EncryptedDocumentProvider.IOptions) {
    this._path = options.path;
    this._contentType = options.contentType;
    this._format = options.format;
    this._sharedModel = options.model;
    this._user = options.user;
    this._trans = options.translator;
    this._serverSettings = options.serverSettings ?? ServerConnection.makeSettings();
    this._drive = options.drive;
    this._defaultKernel = options.defaultKernel;
    this.relayAlerts = new RelayAlerts(
      this._trans,
      () => this._path,
      pubKey => collaboratorName(this._sharedModel.awareness, this.membership, pubKey)
    );

    this._user.userChanged.connect(this._onUserChanged, this);
    // An encrypted notebook is never "dirty": every change goes to the relay (encrypted) as it
    // is made; unacknowledged changes show in the status bar. JupyterLab sets the shared
    // `dirty` flag with each edit (the plaintext server clears it after saving the file):
    // for this model it is a constant false, so no dirty marker, no "save your work?" prompt,
    // and no extra encrypted update per keystroke to clear it.
    Object.defineProperty(this._sharedModel, 'dirty', {
      configurable: true,
      get: () => false,
      set: () => undefined
    });
    this._start().catch(err => this._failBeforeReady(err));
  }

  // ---- IDocumentProvider / IForkProvider -------------------------------------------------

  get ready(): Promise<void> {
    return this._ready.promise;
  }

  get contentType(): string {
    return this._contentType;
  }

  get format(): string {
    return this._format;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Ctrl+S: wait for pending edits to be acknowledged, then store a snapshot now. */
  async save(): Promise<void> {
    await this.snapshotNow();
  }

  async connectToForkDoc(_forkRoomId: string, _sessionId: string): Promise<void> {
    throw new Error(this._trans.__('Forks are not available for encrypted notebooks.'));
  }

  async reconnect(): Promise<void> {
    // The sync client reconnects on its own; nothing to redo here.
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._dismissProgress();
    if (this._progressTimer !== null) {
      window.clearTimeout(this._progressTimer);
    }
    this._user.userChanged.disconnect(this._onUserChanged, this);
    if (this._unlocked) {
      this._unlocked.reject(new Error('disposed while locked'));
      this._unlocked = null;
    }
    this._retryAccess?.reject(new Error('disposed'));
    this._anotherLink?.reject(new Error('disposed'));
    this._anotherLink = null;
    this._retryAccess = null;
    this._unsubscribeStatus?.();
    this._unsubscribeMembership?.();
    window.removeEventListener('pagehide', this._onPageHide);
    window.removeEventListener('pageshow', this._onPageShow);
    this._client?.destroy();
    this._client = null;
    registry.remove(this);
    // (`ready` stays pending if loading had not finished, as with the stock provider: a
    // tab closed while loading or locked is not a "File Load Error")
    Signal.clearData(this);
  }

  // ---- IEncryptedSession ----------------------------------------------------------------

  get docId(): string {
    return this._pointer?.docId ?? '';
  }

  get path(): string {
    return this._path;
  }

  get relayUrl(): string {
    return this._relayUrl;
  }

  get relayBase(): string | null {
    return this._pointer?.relay ?? null;
  }

  get sharedModel(): YDocument<DocumentChange> {
    return this._sharedModel;
  }

  get status(): IEncryptedStatus {
    return this._status;
  }

  get statusChanged(): ISignal<this, IEncryptedStatus> {
    return this._statusChanged;
  }

  get ownPublicKey(): string {
    return this._ownPublicKey;
  }

  readonly relayAlerts: RelayAlerts;

  // ---- IMembership ----------------------------------------------------------------------

  get membership(): MembershipState | null {
    return this._members?.membership ?? null;
  }

  get myRole(): Role | null {
    return this._members?.myRole ?? null;
  }

  /** True while the sync client sends no local change (viewer, not a member). */
  get readOnly(): boolean {
    return !!this._members?.readOnly;
  }

  get membershipChanged(): ISignal<this, MembershipState | null> {
    return this._membershipChanged;
  }

  addMember(identity: string, role: Role): Promise<void> {
    return this._membersClient().addMember(identity, role);
  }

  setRole(pubKey: string, role: Role): Promise<void> {
    return this._membersClient().setRole(pubKey, role);
  }

  removeMember(pubKey: string): Promise<void> {
    return this._membersClient().removeMember(pubKey);
  }

  async createLink(
    role: 'viewer' | 'editor',
    label: string,
    expiresAt: number | null
  ): Promise<string> {
    const client = this._linkClient();
    const keyPair = await getSigningKeyPair();
    const made = await createLinkOn(client, keyPair, role, label, { expiresAt, docKey: this._key });
    return invitationLinkFor(this.docId, made.secret, this.relayBase);
  }

  async revokeLink(linkPubKey: string, removeJoined: boolean): Promise<void> {
    const client = this._linkClient();
    const keyPair = await getSigningKeyPair();
    await revokeLinkOn(client, keyPair, linkPubKey, { removeJoined });
  }

  private _linkClient() {
    const client = this._client as unknown;
    if (!canAppend(client)) {
      throw new MembershipError(
        'SECSYNC_ERROR_700',
        null,
        this._trans.__('The encrypted notebook is not connected.')
      );
    }
    return client;
  }

  private _membersClient(): IMembershipClient {
    const members = this._members;
    if (!members || typeof members.addMember !== 'function') {
      throw new MembershipError(
        'SECSYNC_ERROR_700',
        null,
        this._trans.__('The encrypted notebook is not connected.')
      );
    }
    return members;
  }

  /** After access was refused or revoked: connect again (e.g. once an admin added us). */
  retryAccess(): void {
    const waiting = this._retryAccess;
    if (waiting) {
      this._retryAccess = null;
      this._status = { ...this._status, access: 'member', lastError: null };
      this._statusChanged.emit(this._status);
      waiting.resolve();
    }
  }

  private get _members(): IMembershipClient | null {
    return this._client as unknown as IMembershipClient | null;
  }

  documentKey(): Uint8Array {
    // (issue 12: after a join through a link the epoch-0 key is kept once confirmed)
    const key = this._key ?? (this.docId ? getDocumentKey(this.docId) : null);
    if (!key) {
      throw new Error('no key loaded');
    }
    return key;
  }

  async snapshotNow(): Promise<void> {
    const client = this._client;
    if (!client) {
      throw new Error(this._trans.__('The encrypted notebook is not connected.'));
    }
    if (this.readOnly) {
      // a viewer has nothing to save (and may not write): Ctrl+S does nothing
      return;
    }
    await client.synced();
    await client.createSnapshot();
  }

  // ---- internals --------------------------------------------------------------------------

  private async _start(): Promise<void> {
    // 1. The pointer file (small JSON, no secret in it).
    const file = await this._drive.get(this._path, {
      type: 'file',
      format: 'text',
      content: true
    });
    let pointer: IPointer;
    try {
      pointer = parsePointer(String(file.content ?? ''));
    } catch (e) {
      throw new Error(
        this._trans.__('%1 is not a valid encrypted notebook: %2', this._path, (e as Error).message)
      );
    }
    this._pointer = pointer;
    rememberPointerPath(serverKey(this._serverSettings), pointer.docId, this._path);

    // Known from here on (status bar, the locked view of the notebook panel).
    registry.add(this);

    // 2. The key: only in this browser. Without it the session is "locked": the notebook
    // panel shows a field for the share link (index.ts, locked.ts) — no modal, so that tabs
    // restored from a shared workspace do not block anyone.
    // An invitation link (issue 12) opened for this document joins first (step 4b), after
    // the relay is confirmed; pasted into the locked panel, it does the same.
    // (issue 12: a member who joined after a key rotation may hold only later epochs' keys,
    // kept in its keyring: it opens with those)
    let key = getDocumentKey(pointer.docId);
    const storedEpochs = !key && hasStoredEpochKeys(pointer.docId);
    let linkSecret = registry.takePendingLink(pointer.docId) ?? null;
    if (!key && !storedEpochs && !linkSecret) {
      key = await this._waitForKey();
      if (!key) {
        linkSecret = this._pastedLinkSecret;
        this._pastedLinkSecret = null;
      }
    }
    this._key = key;

    // 3. A relay other than this server's and the configured one: refused (plain ws:// to
    // another host) or confirmed by the user once (relaypolicy.ts).
    const origin = this._trans.__('The encrypted notebook %1', this._path);
    if (!(await confirmRelay(pointer.relay, origin, this._trans))) {
      throw new Error(
        this._trans.__('Not connected: the relay of %1 was not confirmed.', this._path)
      );
    }

    // 4. This browser's signing key pair.
    const signatureKeyPair = await getSigningKeyPair();
    this._ownPublicKey = b64encode(signatureKeyPair.publicKey);
    if (this._isDisposed) {
      return;
    }

    // 5. Connect.
    this._relayUrl = relayDocumentUrl(pointer.docId, pointer.relay, this._serverSettings.wsUrl);
    // Same-origin relay: Jupyter authenticates the WebSocket with the login cookie.
    const url = this._relayUrl;
    // The relay of the relayUrl setting as a JupyterHub service on this origin: the Hub's
    // OAuth cookie for the service authenticates the WebSocket (hubrelay.ts).
    const hubService =
      registry.settings.relayIsHubService &&
      pointer.relay &&
      classifyRelay(pointer.relay, relayContext()) === 'configured'
        ? hubServiceBase(pointer.relay, window.location.origin)
        : null;
    if (hubService) {
      await ensureHubServiceLogin(hubService);
      if (this._isDisposed) {
        return;
      }
    }
    const sessionKey = sessionKeyFor(pointer.relay, relayContext(), registry.settings.relaySessionKey);

    // 4b. Joining through an invitation link (issue 12, secsync/linkJoin.ts): connect as the
    // link, add our own identity (signed by the link) with a lockbox of the key sealed to us,
    // then we open the notebook as ourselves with the keys the link's lockboxes held (the
    // engine keeps them, browserKeyringStore; an epoch-0 key from a lockbox is kept and
    // written with only once it decrypted a writer's snapshot). A browser that holds keys
    // already opens as before if the link no longer works (revoked or expired). A link that
    // cannot be used leaves the panel saying why until another link is opened (joinLink).
    this._join = (secret: Uint8Array) =>
      joinThroughLink({
        url,
        docId: pointer.docId,
        secret,
        identity: signatureKeyPair,
        name: displayNameOf(this._user),
        sessionKey,
        WebSocketImpl: this._serverSettings.WebSocket as unknown as WebSocketConstructor
      });
    while (linkSecret) {
      let joined: LinkJoinResult | null = null;
      try {
        joined = await this._join(linkSecret);
      } catch (e) {
        if (!key && !storedEpochs) {
          console.warn('secsync-jupyter: joining through the invitation link failed', e);
          this._dismissProgress();
          this._status = { ...this._status, linkError: describeJoinError(e, this._trans) };
          this._statusChanged.emit(this._status);
          // the panel says why (locked.ts); the tab can be closed, or another link opened
          this._anotherLink = new PromiseDelegate<Uint8Array>();
          linkSecret = await this._anotherLink.promise;
          this._anotherLink = null;
          this._status = { ...this._status, linkError: null };
          this._statusChanged.emit(this._status);
          continue;
        }
      }
      if (this._isDisposed) {
        return;
      }
      // (a member already: its own lockboxes come when it connects as itself)
      this._joinedKeyring = joined?.keyring ?? null;
      break;
    }
    const awareness = this._sharedModel.awareness;
    this._onUserChanged(this._user);

    this._progressTimer = window.setTimeout(() => {
      this._progressTimer = null;
      if (!this._readyDone && !this._isDisposed) {
        this._showProgress();
      }
    }, PROGRESS_DELAY_MS);

    // A new document with a log: its root entry goes first (made by New Encrypted Notebook).
    const rootEntry = registry.takePendingLogRoot(pointer.docId);
    const newClient = () => new SecsyncYjsClient({
      url,
      docId: pointer.docId,
      ...(rootEntry ? { rootEntry } : {}),
      ...(key ? { key } : {}),
      // issue 12: the epoch keys (the keyring store of this browser; a join's keys; a
      // document with a log opens with only a keyring)
      ...(this._joinedKeyring
        ? { keyring: this._joinedKeyring, epoch0FromLockbox: !key }
        : key
          ? {}
          : { keyring: new Keyring() }),
      keyringStore: browserKeyringStore,
      signatureKeyPair,
      ydoc: this._sharedModel.ydoc,
      awareness,
      // the relay of the relayUrl setting authenticates connections with the session key
      // setting; no other relay (named by a link or a pointer file) ever receives it
      sessionKey,
      WebSocketImpl: this._serverSettings.WebSocket as unknown as WebSocketConstructor,
      snapshotPolicy: { maxUpdates: Math.max(1, registry.settings.snapshotEveryUpdates) },
      // the last snapshot, clocks and log head this browser verified (localStorage): a relay
      // that later serves an older or diverging state is detected after a reload (804 / 718)
      rememberedStore: defaultRememberedStore(),
      // Send each change at once (typing latency): up to 16 updates may be in flight, and
      // changes made while that many are unacknowledged are merged into the next one.
      batchDelayMs: 0,
      onProgress: (loaded: number, total: number) => {
        // (the status item shows the percentage; the progress toast is not updated: see
        // _progressMessage)
        this._status = { ...this._status, progress: { loaded, total } };
        this._statusChanged.emit(this._status);
      }
    } as ConstructorParameters<typeof SecsyncYjsClient>[0]);
    // issue 13: a relay that withholds, forks or rolls back what this browser sees is said
    // out loud, next to the collaborator concerned (relayalerts.ts; details in the console)
    const makeClient = () => {
      const client = newClient();
      client.heads?.onAlert(alert => this.relayAlerts.add(alert));
      // raised while the client was built (807: a damaged remembered state)
      for (const alert of client.heads?.alerts ?? []) {
        this.relayAlerts.add(alert);
      }
      this.relayAlerts.attach(client.heads);
      return client;
    };
    // A closed tab (or browser) leaves the others' presence at once: the removal of our
    // awareness state goes out while the page hides (the socket is still open then), instead
    // of the others timing the state out after 30 s.
    window.addEventListener('pagehide', this._onPageHide);
    window.addEventListener('pageshow', this._onPageShow);
    // Not a member (the relay refused our reader proof) or removed: the panel says so (no
    // modal, no reconnect loop) and offers to try again, e.g. once an admin has added us.
    this._makeClient = makeClient;
    for (;;) {
      const client = makeClient();
      this._client = client;
      this._unsubscribeStatus = client.onStatus(s => this._onClientStatus(s));
      this._unsubscribeMembership =
        typeof this._members?.onMembershipChanged === 'function'
          ? this._members.onMembershipChanged(state => this._onMembership(state))
          : null;
      client.connect();
      try {
        await client.loaded;
        break;
      } catch (e) {
        if (this._isDisposed || this._status.access === 'member') {
          throw e;
        }
        await this._waitForAccessRetry();
        if (this._isDisposed) {
          return;
        }
      }
    }
    if (this._isDisposed) {
      return;
    }
    this._onMembership(this.membership);

    // 6. A brand-new document: write its first content (becomes the first snapshot).
    // (A viewer writes nothing: not the first content, not the state map below.)
    const readOnly = this.readOnly;
    if (this._contentType === 'notebook' && !readOnly) {
      const nb = this._sharedModel as unknown as YNotebook;
      if (nb.cells.length === 0) {
        const imported = registry.takePendingImport(pointer.docId);
        nb.fromJSON(imported ?? defaultNotebookContent(this._defaultKernel()));
      }
    }

    // 7. The state map the plaintext server used to maintain (see docs/labextension.md).
    if (!readOnly) {
      this._sharedModel.transact(() => {
        const state = this._sharedModel;
        if (!state.getState('path')) {
          state.setState('path', this._path);
        }
        state.setState('document_id', 'secsync:' + pointer.docId);
        state.setState('dirty', false);
      }, false);
    }

    this._status = { ...this._status, loaded: true, progress: null };
    this._statusChanged.emit(this._status);
    this._readyDone = true;
    this._dismissProgress();
    this._ready.resolve();
  }


  /** Waits for retryAccess() after a refusal; the failed client is dropped. */
  private async _waitForAccessRetry(): Promise<void> {
    this._retryAccess = new PromiseDelegate<void>();
    const waiting = this._retryAccess.promise;
    await waiting;
    this._unsubscribeStatus?.();
    this._unsubscribeMembership?.();
    this._client?.destroy();
    this._client = null;
  }

  private _onMembership(state: MembershipState | null): void {
    const role = this.myRole;
    if (this._status.role !== role || this._status.readOnly !== this.readOnly) {
      this._status = { ...this._status, role, readOnly: this.readOnly };
      this._statusChanged.emit(this._status);
    }
    this._membershipChanged.emit(state);
  }

  /** Resolves with the key, or null when an invitation link was pasted (`_pastedLinkSecret`). */
  private _waitForKey(): Promise<Uint8Array | null> {
    this._unlocked = new PromiseDelegate<Uint8Array | null>();
    this._setLocked(true);
    return this._unlocked.promise;
  }

  private _setLocked(locked: boolean): void {
    this._status = { ...this._status, locked };
    this._statusChanged.emit(this._status);
  }

  async unlock(text: string): Promise<void> {
    const docId = this.docId;
    if (!this._unlocked || !docId) {
      return;
    }
    let link;
    try {
      const parsed = parseLink(text);
      if (parsed.linkSecret && !parsed.key.length) {
        // an invitation link (issue 12): join through it
        if (parsed.docId !== docId) {
          throw new Error(
            this._trans.__(
              'This link is for another encrypted notebook (document %1), not for %2.',
              parsed.docId,
              this._path
            )
          );
        }
        this._pastedLinkSecret = parsed.linkSecret;
        this._resolveKey(null);
        return;
      }
      link = parseShareLink(text.trim());
    } catch (e) {
      if (e instanceof Error && !(e as { code?: unknown }).code) {
        throw e;
      }
      throw new Error(describeLinkError(e, this._trans));
    }
    if (link.docId !== docId) {
      throw new Error(
        this._trans.__(
          'This link is for another encrypted notebook (document %1), not for %2.',
          link.docId,
          this._path
        )
      );
    }
    const key = await storeKeyFromLink(docId, link.key, this._trans);
    this._resolveKey(key);
  }

  /**
   * An invitation link opened for this document while its tab is open (issue 12): joins
   * when the panel waits for it — no key yet, a link that could not be used, not a member
   * (any more) — and connects again. Resolves false when there was nothing to do (a member
   * already), rejects with the reason in words when the join fails.
   */
  async joinLink(secret: Uint8Array): Promise<boolean> {
    if (this._unlocked) {
      this._pastedLinkSecret = secret;
      this._resolveKey(null);
      return true;
    }
    if (this._anotherLink) {
      this._anotherLink.resolve(secret);
      return true;
    }
    if (this._status.access === 'member' || !this._retryAccess || !this._join) {
      return false;
    }
    try {
      const joined = await this._join(secret);
      this._joinedKeyring = joined.keyring;
    } catch (e) {
      throw new Error(describeJoinError(e, this._trans));
    }
    this.retryAccess();
    return true;
  }

  retryStoredKey(): void {
    const key = this._unlocked && this.docId ? getDocumentKey(this.docId) : null;
    if (key) {
      this._resolveKey(key);
      return;
    }
    const link = this._unlocked && this.docId ? registry.takePendingLink(this.docId) : undefined;
    if (link) {
      this._pastedLinkSecret = link;
      this._resolveKey(null);
    }
  }

  private _resolveKey(key: Uint8Array | null): void {
    const waiting = this._unlocked;
    if (waiting) {
      this._unlocked = null;
      this._setLocked(false);
      waiting.resolve(key);
    }
  }

  private _onClientStatus(s: SecsyncStatus): void {
    let lastError: string | null = s.lastError ? s.lastError.message : null;
    if (s.connection === 'failed') {
      lastError = s.failureReason ?? lastError ?? 'failed';
    }
    const denied =
      s.connection === 'failed'
        ? accessOf(s.failureReason) ?? accessOf(s.lastError?.code)
        : null;
    this._status = {
      ...this._status,
      connection: s.connection,
      documentState: s.documentState,
      pendingChanges: s.unsyncedChanges,
      lastError,
      access: denied ?? this._status.access,
      role: this.myRole,
      readOnly: this.readOnly
    };
    if (denied) {
      // the panel shows the not-a-member state (locked.ts); nothing else is reported
      this._dismissProgress();
      if (this._readyDone && !this._retryAccess) {
        // (after loading: removed while open; try again = a new connection)
        void this._waitForAccessRetry().then(() => this._reconnectAfterRetry());
      }
      this._statusChanged.emit(this._status);
      return;
    }
    if (s.connection === 'failed' && !this._readyDone) {
      this._failBeforeReady(
        new Error(this._trans.__('Could not open the encrypted notebook: %1', lastError ?? 'failed'))
      );
    }

    this._statusChanged.emit(this._status);
  }

  private _failBeforeReady(err: unknown): void {
    this._dismissProgress();
    if (this._isDisposed) {
      return; // (closed while loading or locked: nothing to report)
    }
    if (this._readyDone) {
      console.error('secsync-jupyter:', err);
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    this._status = { ...this._status, lastError: message };
    this._statusChanged.emit(this._status);
    this._ready.reject(message);
    this._ready.promise.catch(() => undefined);
  }

  private _showProgress(): void {
    this._progressId = Notification.emit(this._progressMessage(), 'in-progress', {
      autoClose: false
    });
  }

  /**
   * The progress toast's text. The toast is emitted once and dismissed once, never updated:
   * JupyterLab's toasts (react-toastify 9) apply an update later (on a timer) and re-add the
   * toast then, so a dismiss right after an update (the last progress step, then loaded) left
   * "Loading …" on screen for good. The percentage is in the status item (status.ts).
   */
  private _progressMessage(): string {
    const name = this._path.split('/').pop();
    return this._trans.__('Loading encrypted notebook %1…', name);
  }

  private _dismissProgress(): void {
    if (this._progressId) {
      // A toast dismissed before JupyterLab's toast container has rendered it (it loads the
      // toast library on the page's first notification) stays on screen ("Loading …" after
      // the notebook loaded): dismiss once it is shown (its element has the id), or after
      // PROGRESS_DISMISS_TRIES checks if toasts are not shown at all.
      const id = this._progressId;
      const dismiss = (tries: number) => {
        if (tries <= 0) {
          Notification.dismiss(id);
        } else if (document.getElementById(id)) {
          // (shown: let the toast close itself, then drop it from the notification list)
          Notification.update({ id, message: this._trans.__('Loaded.'), autoClose: 1 });
          window.setTimeout(() => Notification.dismiss(id), 2000);
        } else {
          window.setTimeout(() => dismiss(tries - 1), 100);
        }
      };
      dismiss(PROGRESS_DISMISS_TRIES);
      this._progressId = null;
    }
  }

  private _onUserChanged(user: User.IManager): void {
    if (user.identity) {
      this._sharedModel.awareness.setLocalStateField('user', user.identity);
    }
  }

  /** A client again after a retry of access, on the loaded document. */
  private _reconnectAfterRetry(): void {
    if (this._isDisposed || !this._makeClient) {
      return;
    }
    const client = this._makeClient();
    this._client = client;
    this._unsubscribeStatus = client.onStatus(s => this._onClientStatus(s));
    this._unsubscribeMembership =
      typeof this._members?.onMembershipChanged === 'function'
        ? this._members.onMembershipChanged(state => this._onMembership(state))
        : null;
    client.connect();
  }

  private _path: string;
  private _contentType: string;
  private _format: string;
  private _sharedModel: YDocument<DocumentChange>;
  private _user: User.IManager;
  private _trans: TranslationBundle;
  private _serverSettings: ServerConnection.ISettings;
  private _drive: Contents.IDrive;
  private _defaultKernel: () => { name: string; display_name: string; language?: string } | null;
  private _pointer: IPointer | null = null;
  private _key: Uint8Array | null = null;
  private _unlocked: PromiseDelegate<Uint8Array | null> | null = null;
  /** joins through a link as this browser (set once connecting is possible; issue 12) */
  private _join: ((secret: Uint8Array) => Promise<LinkJoinResult>) | null = null;
  /** waiting for another link after one could not be used (issue 12) */
  private _anotherLink: PromiseDelegate<Uint8Array> | null = null;
  /** an invitation link pasted into the locked panel (issue 12) */
  private _pastedLinkSecret: Uint8Array | null = null;
  /** the keys the link's lockboxes gave (issue 12 join) */
  private _joinedKeyring: LinkJoinResult['keyring'] | null = null;
  private _ownPublicKey = '';
  private _relayUrl = '';
  private _client: SecsyncYjsClient | null = null;
  /** The awareness state we had when the page was hidden (restored if the page comes back). */
  private _hiddenState: Record<string, any> | null = null;

  private _onPageHide = (): void => {
    const awareness = this._sharedModel.awareness;
    this._hiddenState = awareness.getLocalState();
    this._client?.bridge?.leave();
  };

  private _onPageShow = (event: PageTransitionEvent): void => {
    // back from the back/forward cache: present again
    if (event.persisted && this._hiddenState !== null && this._client !== null) {
      this._sharedModel.awareness.setLocalState(this._hiddenState);
    }
    this._hiddenState = null;
  };
  private _unsubscribeStatus: (() => void) | null = null;
  private _unsubscribeMembership: (() => void) | null = null;
  private _retryAccess: PromiseDelegate<void> | null = null;
  private _makeClient: (() => SecsyncYjsClient) | null = null;
  private _membershipChanged = new Signal<this, MembershipState | null>(this);
  private _ready = new PromiseDelegate<void>();
  private _readyDone = false;
  private _isDisposed = false;
  private _progressId: string | null = null;
  private _progressTimer: number | null = null;
  private _status: IEncryptedStatus = {
    connection: 'connecting',
    documentState: 'loading',
    pendingChanges: 0,
    lastError: null,
    progress: null,
    loaded: false,
    locked: false,
    access: 'member',
    role: null,
    readOnly: false
  };
  private _statusChanged = new Signal<this, IEncryptedStatus>(this);
}

export namespace EncryptedDocumentProvider {
  export interface IOptions {
    path: string;
    contentType: string;
    format: string;
    model: YDocument<DocumentChange>;
    user: User.IManager;
    translator: TranslationBundle;
    serverSettings?: ServerConnection.ISettings;
    drive: Contents.IDrive;
    defaultKernel: () => { name: string; display_name: string; language?: string } | null;
  }
}
