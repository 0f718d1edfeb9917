"""Key epochs in the Python client (issue 12): which key opens which message, lockboxes,
the keyring on disk, and rotating.

The rules are docs/protocol.md, "Key epochs, lockboxes and links"; the core is
:mod:`secsync_jupyter.protocol.epochs`. The engine (:class:`.engine.SyncEngine`) calls an
:class:`EpochKeys` (its ``epochs`` attribute, set by the driver for documents with a log):

* a snapshot is decrypted with the key of its ``publicData.epoch`` (absent: 0), updates with
  their snapshot's key; :meth:`EpochKeys.check_snapshot` applies ``check_message_epoch``
  (767 / 768 / 769) and 766 when we hold no key for the epoch;
* we write snapshots in the log's current epoch, and only while we hold its key
  (:meth:`EpochKeys.write_epoch`); an epoch-0 key that came from a lockbox is used for writing
  only once it decrypted a writer's epoch-0 snapshot (epoch 0 has no ``keyCheck``);
* lockboxes (the ``document`` frame's ``lockboxes`` and live ``lockbox`` frames) are opened
  with ``open_lockbox``: 760–766 are recorded as errors and the key is not used.

The keyring (epoch → key) and the newest epoch seen are kept in ``keyrings.json`` next to the
identity file (mode 0600), or in the file given as ``keyring_file=``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ..protocol import ProtocolError, SigningKeyPair
from ..protocol.epochs import Keyring, check_message_epoch, create_rotation, parse_lockbox
from ..protocol.membership import LogHead, MembershipError, MembershipState

__all__ = [
    "KEYRINGS_ENV",
    "EpochKeys",
    "KeyringFile",
    "rotate_key",
]

KEYRINGS_ENV = "SECSYNC_KEYRINGS"
KEYRINGS_FORMAT = "secsync-jupyter-keyrings"
#: how often a rotation that lost a race (707) is rebuilt on the new head
MAX_ROTATION_RETRIES = 5


def _err(code: int, detail: str, field: str | None = None) -> MembershipError:
    return MembershipError(detail, code=f"SECSYNC_ERROR_{code}", field=field)


class KeyringFile:
    """``{"format": "secsync-jupyter-keyrings", "version": 1, "documents": {docId: {"keys":
    {"0": b64, …}, "seen": n}}}``, written atomically with mode 0600. A damaged file is an
    error, never overwritten."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the keyring file {str(self.path)!r}: {exc}")
        if not isinstance(data, dict) or data.get("format") != KEYRINGS_FORMAT:
            raise ValueError(f"{str(self.path)!r} is not a secsync-jupyter keyring file")
        docs = data.get("documents")
        if not isinstance(docs, dict):
            raise ValueError(f"the keyring file {str(self.path)!r} is damaged")
        return docs

    def load(self, doc_id: str) -> tuple[Keyring, int | None]:
        entry = self._read().get(doc_id)
        if entry is None:
            return Keyring(), None
        try:
            ring = Keyring.from_json(entry.get("keys", {}))
        except MembershipError as exc:
            raise ValueError(f"the keyring of {doc_id} in {str(self.path)!r} is damaged: {exc}")
        seen = entry.get("seen")
        return ring, seen if type(seen) is int and seen >= 0 else None

    def save(self, doc_id: str, keyring: Keyring, seen: int | None) -> None:
        from .backup import _write_private

        docs = self._read()
        entry: dict[str, Any] = {"keys": keyring.to_json()}
        if seen is not None:
            entry["seen"] = seen
        if docs.get(doc_id) == entry:
            return
        docs[doc_id] = entry
        text = json.dumps({"format": KEYRINGS_FORMAT, "version": 1, "documents": docs}, indent=2)
        _write_private(self.path, text + "\n")


def default_keyring_file(identity_path: Path | None) -> KeyringFile | None:
    """``$SECSYNC_KEYRINGS``, else ``keyrings.json`` next to the identity file (``None`` for an
    identity given as a key pair: then the keyring lives in memory only)."""
    if os.environ.get(KEYRINGS_ENV):
        return KeyringFile(os.environ[KEYRINGS_ENV])
    if identity_path is not None:
        return KeyringFile(Path(identity_path).parent / "keyrings.json")
    return None


class EpochKeys:
    """The epoch keys of one document for one member; the engine's hook (``engine.epochs``).

    ``doc_key``: the epoch-0 key the user gave (``#key=`` link, creation): used for this
    session, kept in the keyring file only once it decrypted an epoch-0 snapshot (or, with
    ``trusted``, at once: the creator's own key) — a wrong key never overwrites a right one.
    ``keyring``: keys opened from a link's lockbox (a join). An epoch-0 key from a lockbox has
    no ``keyCheck``: it is used for writing only after it decrypted a writer's snapshot.
    Keys of later epochs are checked against their ``keyCheck`` and kept at once."""

    def __init__(
        self,
        doc_id: str,
        keypair: SigningKeyPair,
        *,
        doc_key: bytes | None = None,
        keyring: Keyring | None = None,
        store: KeyringFile | None = None,
        epoch0_from_lockbox: bool = False,
        trusted: bool = False,
    ):
        self.doc_id = doc_id
        self.keypair = keypair
        self.store = store
        self.seen: int | None = None
        stored = Keyring()
        if store is not None:
            stored, self.seen = store.load(doc_id)
        #: the confirmed epoch-0 key of the keyring file (written back as it is while the one
        #: in use is not confirmed)
        self._stored0 = stored.key(0) if 0 in stored else None
        self.keyring = Keyring({e: stored.key(e) for e in stored.epochs if e != 0})
        candidate0 = None
        for epoch in keyring.epochs if keyring is not None else []:
            if epoch == 0:
                candidate0 = keyring.key(0)
            else:
                self.keyring.add(epoch, keyring.key(epoch))  # 762 if it conflicts
        #: the epoch-0 key in use came from a lockbox and opened no snapshot yet: not for writing
        self.unconfirmed0 = False
        #: the epoch-0 key in use is confirmed (kept in the keyring file)
        self.confirmed0 = False
        if doc_key is not None:
            self.keyring.add(0, doc_key)
            self.confirmed0 = trusted or doc_key == self._stored0
        elif candidate0 is not None:
            self.keyring.add(0, candidate0)
            self.confirmed0 = candidate0 == self._stored0
            self.unconfirmed0 = epoch0_from_lockbox and not self.confirmed0
        elif self._stored0 is not None:
            self.keyring.add(0, self._stored0)
            self.confirmed0 = True
        #: an epoch whose snapshot came before we held its key (asked again on its lockbox)
        self.missing: int | None = None
        #: (epoch, recipient) -> None (saved) or the relay's code, for lockboxes we uploaded
        self.lockbox_results: dict[tuple[int, str], str | None] = {}
        self._save()

    # ------------------------------------------------------------------ keys

    def _save(self) -> None:
        if self.store is None:
            return
        ring = Keyring({e: self.keyring.key(e) for e in self.keyring.epochs if e != 0})
        if 0 in self.keyring and self.confirmed0:
            ring.add(0, self.keyring.key(0))
        elif self._stored0 is not None:
            ring.add(0, self._stored0)
        self.store.save(self.doc_id, ring, self.seen)

    def key(self, epoch: int) -> bytes:
        """The key of ``epoch`` (766 if we do not hold it)."""
        return self.keyring.key(epoch)

    def key_for(self, info: Any) -> bytes:
        """The key for a snapshot (``KnownSnapshot``) and the updates on it; ``None`` (no
        snapshot yet): the newest key we hold."""
        if info is None:
            newest = self.keyring.newest
            if newest is None:
                raise _err(766, "no epoch key yet", "epoch")
            return self.keyring.key(newest)
        return self.keyring.key(getattr(info, "epoch", 0))

    def add_key(self, epoch: int, key: bytes) -> None:
        self.keyring.add(epoch, key)
        self._save()

    def write_epoch(self, state: MembershipState) -> int | None:
        """The epoch we may write a snapshot in: the log's current one, if we hold its key
        (and, for epoch 0 from a lockbox, it opened a writer's snapshot); else ``None``."""
        epoch = state.epoch
        if epoch not in self.keyring or (epoch == 0 and self.unconfirmed0):
            return None
        return epoch

    # ------------------------------------------------------------- snapshots

    def check_snapshot(
        self,
        state: MembershipState,
        public_data: dict[str, Any],
        log_seq: int,
        parent: Any,
        live: bool,
    ) -> int:
        """``check_message_epoch`` for a received snapshot (whose ``logHead`` entry
        ``log_seq`` was checked), then 766 unless we hold the key. Returns the epoch."""
        head = LogHead(log_seq, state.hashes[log_seq])
        parent_epoch = getattr(parent, "epoch", None) if parent is not None else None
        epoch = check_message_epoch(
            state,
            public_data.get("epoch"),
            head,
            parent=parent_epoch,
            seen=self.seen,
            live=live,
        )
        if epoch not in self.keyring:
            self.missing = epoch
            raise _err(766, f"no key for epoch {epoch} (no lockbox of ours opened it)", "epoch")
        return epoch

    def accepted(self, epoch: int) -> None:
        """A snapshot of ``epoch`` was decrypted (key-committing AEAD) and applied."""
        changed = False
        if epoch == 0 and not self.confirmed0:  # it decrypted a writer's epoch-0 snapshot
            self.unconfirmed0 = False
            self.confirmed0 = changed = True
        if self.seen is None or epoch > self.seen:
            self.seen = epoch
            changed = True
        if self.missing is not None and self.missing <= epoch:
            self.missing = None
        if changed:
            self._save()

    # -------------------------------------------------------------- lockboxes

    def open(self, state: MembershipState, lockboxes: Any) -> list[ProtocolError]:
        """Open our lockboxes (a ``document`` frame's list, or one live). Each bad one is an
        error (760–766), its key is not used. Returns the errors."""
        if lockboxes is None:
            return []
        if not isinstance(lockboxes, list):
            return [_err(760, "lockboxes must be an array", "lockboxes")]
        errors: list[ProtocolError] = []
        added = False
        for raw in lockboxes:
            try:
                lb = parse_lockbox(raw)
                fresh0 = lb.epoch == 0 and 0 not in self.keyring
                self.keyring.add_from_lockbox(state, self.keypair, lb)
                if fresh0:  # no keyCheck for epoch 0: usable for writing once it opened one
                    self.unconfirmed0 = True
                added = True
            except MembershipError as exc:
                errors.append(exc)
        if added:
            self._save()
        return errors

    def on_frame(self, engine: Any, obj: dict[str, Any]) -> list[ProtocolError]:
        """A live ``lockbox`` / ``lockbox-saved`` / ``lockbox-failed`` frame."""
        kind = obj.get("type")
        if kind == "lockbox":
            if engine.log is None:
                return [_err(760, "lockbox before the log", "lockbox")]
            errors = self.open(engine.log, [obj.get("lockbox")])
            if not errors and self.missing is not None and self.missing in self.keyring:
                engine._request_reconnect()  # load the snapshot we could not open
            return errors
        epoch, recipient = obj.get("epoch"), obj.get("recipient")
        if type(epoch) is int and isinstance(recipient, str):
            code = obj.get("code")
            self.lockbox_results[(epoch, recipient)] = (
                None  # saved
                if kind != "lockbox-failed"
                else code
                if isinstance(code, str)
                else "SECSYNC_ERROR_750"  # refused without a code: never read as saved
            )
        if kind == "lockbox-failed":
            code = obj.get("code") if isinstance(obj.get("code"), str) else "SECSYNC_ERROR_750"
            return [ProtocolError(f"the relay refused our lockbox: {obj.get('reason')}", code=code)]
        return []


# ------------------------------------------------------------------ rotation


async def rotate_key(
    document: Any, *, timeout: float | None = 60.0, if_needed: bool = False
) -> MembershipState:
    """An admin's rotation on a :class:`.document.SecsyncDocument`: ``create_rotation`` (a
    fresh key, a lockbox for every member and live link), the ``rotate-key`` entry with the
    lockbox set, the key into the keyring once the relay saved it, then a snapshot in the new
    epoch. Lost a race (707 / 709): the new head is verified; rotated again only if still
    needed (someone else's rotation since ours was made counts)."""

    engine = document.engine
    epochs: EpochKeys | None = engine.epochs
    if not engine.has_log or epochs is None:
        raise _err(700, f"document {document.doc_id} has no membership log")

    async def run() -> MembershipState:
        start_epoch: int | None = None
        for _attempt in range(MAX_ROTATION_RETRIES + 1):

            def ready() -> bool:
                return engine.ready_to_append

            while not ready():
                await document._wait_for(ready, None)
            state = engine.log
            if if_needed and not state.rotation_needed(_now_ms(state)):
                return state
            if start_epoch is None:
                start_epoch = state.epoch
            elif state.epoch > start_epoch and not state.rotation_needed(_now_ms(state)):
                return state  # another admin rotated meanwhile: nothing left to do
            rotation = create_rotation(state, document.signing_key)
            document._entry_results.pop(rotation.entry.hash, None)
            engine.append_entry(rotation.entry, lockboxes=rotation.lockboxes)
            document._pump()
            h = rotation.entry.hash
            await document._wait_for(lambda h=h: h in document._entry_results, None)
            code = document._entry_results.pop(h)
            if code is None:  # dropped unanswered: the next log says whether it is there
                await document.loaded()
            log = engine.log
            if log is not None and h in log.hashes:  # stored: write the new epoch's snapshot
                epochs.add_key(rotation.epoch, rotation.key)
                engine.request_snapshot()
                engine.flush()
                document._pump()
                return log
            if code is None:
                continue
            if code not in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709"):
                raise _err(int(code.rsplit("_", 1)[-1]), "the relay refused the rotate-key entry")
        raise _err(707, f"the rotation lost {MAX_ROTATION_RETRIES + 1} races in a row")

    return await asyncio.wait_for(run(), timeout)


def _now_ms(state: MembershipState) -> int:
    import time

    return max(int(time.time() * 1000), state.head_at)


# ------------------------------------------------------------------ the driver's hooks


def attach_epoch_keys(document: Any, key: bytes | None, keyring: Any, keyring_file: Any) -> None:
    """Give a document with a log its :class:`EpochKeys`: the user's key is epoch 0; a
    ``keyring`` (a link join) adds the keys opened from the link's lockbox; the keyring file
    (``keyring_file=``: a path, or ``False`` for none; default :func:`default_keyring_file`)
    keeps them across sessions."""
    if keyring_file is False:
        store = None
    elif keyring_file is not None:
        store = KeyringFile(keyring_file)
    else:
        identity = getattr(document, "identity", None)
        store = default_keyring_file(getattr(identity, "path", None))
    from_link = keyring is not None and key is None
    document.engine.epochs = EpochKeys(
        document.doc_id,
        document.signing_key,
        doc_key=None if key is None else bytes(key),
        keyring=keyring,
        store=store,
        epoch0_from_lockbox=from_link,
        trusted=document.engine.log_root_pending is not None,  # we create it: our own key
    )


def entry_lockboxes(engine: Any, entry: Any) -> list[Any] | None:
    """The lockbox that goes with an ``add-member``: the current epoch's key sealed to the
    new member (when we hold it), so that it can read at once."""
    from ..protocol.epochs import seal_lockbox

    epochs: EpochKeys | None = engine.epochs
    state = engine.log
    if epochs is None or state is None or entry.kind != "add-member":
        return None
    if state.epoch not in epochs.keyring:
        return None
    return [seal_lockbox(state.doc_id, state.epoch, epochs.key(state.epoch), entry.target)]


def rotate_if_needed(document: Any) -> None:
    """After a load: an admin whose log says a rotation is due (a member left, a link expired,
    the removing admin went offline before rotating) rotates, in the background."""
    engine = document.engine
    state = engine.log
    if (
        state is None
        or engine.role != "admin"
        or getattr(document, "_rotating", None) is not None
        or not state.rotation_needed(_now_ms(state))
    ):
        return

    async def run() -> None:
        try:
            await rotate_key(document, if_needed=True)
        except Exception as exc:  # recorded; the next load tries again
            engine._record(ProtocolError(f"automatic key rotation failed: {exc}"))
        finally:
            document._rotating = None

    document._rotating = asyncio.ensure_future(run())
