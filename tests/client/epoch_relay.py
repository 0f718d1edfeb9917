"""An in-test relay for one document with a membership log that speaks the issue-12 frames
(docs/protocol.md, "Key epochs, lockboxes and links"; /tmp/team/FRAMES12.md): lockboxes in
the ``document`` frame (only the connection's own), ``log-entry`` with ``lockboxes`` (the full
set for ``rotate-key``: check_lockbox_set; single ones: check_lockbox), live ``lockbox``
frames to the recipient after the entry, link connections (reader proof by a live link, no
content, only the link's ``add-member``), the epoch rules on writes (767 / 768
write-refused). Switches make it misbehave: ``lax_epochs`` (forwards writes in any epoch),
``leak_lockboxes`` (sends every connection everyone's lockboxes), ``serve`` (replaces the
document frame's snapshot)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from secsync_jupyter.protocol.epochs import check_lockbox, check_lockbox_set, parse_epoch
from secsync_jupyter.protocol.membership import (
    MembershipError,
    new_reader_challenge,
    parse_entry,
    verify_entry,
    verify_log,
    verify_reader_proof,
)

from .scripted import Conn, frame_kind


def now_ms() -> int:
    return int(time.time() * 1000)


def _proof(snap: dict[str, Any]) -> dict[str, Any]:
    from secsync_jupyter.protocol import snapshot_ciphertext_hash
    from secsync_jupyter.protocol.messages import Snapshot

    s = Snapshot.from_json(snap)
    return {
        "snapshotId": s.public_data.snapshot_id,
        "parentSnapshotProof": s.public_data.parent_snapshot_proof,
        "snapshotCiphertextHash": snapshot_ciphertext_hash(s),
    }


class EpochRelay:
    def __init__(self, entries: list[dict[str, Any]], snapshot: dict[str, Any] | None = None):
        self.entries = list(entries)
        self.doc_id = "m1_" + parse_entry(entries[0]).hash
        self.state = verify_log(self.entries, self.doc_id)
        self.snapshots: list[dict[str, Any]] = [snapshot] if snapshot else []
        self.updates: dict[str, list[dict[str, Any]]] = {}
        self.lockboxes: dict[tuple[int, str], dict[str, Any]] = {}
        self.conns: dict[Conn, tuple[str, bool]] = {}
        self.lax_epochs = False
        self.leak_lockboxes = False
        #: replaces the document frame's snapshot (a relay serving an old one)
        self.serve: dict[str, Any] | None = None
        self.refused: list[tuple[str, str]] = []
        #: admit any proven key (a relay that ignores the log)
        self.admit_anyone = False
        #: keep a removed member's connection open and keep sending it everything
        self.keep_removed = False
        #: hold the entries (and lockboxes) for this key until its next write arrives, then
        #: send them right before answering it (a rotation racing that write)
        self.hold: str | None = None
        self.held: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()

    # ----------------------------------------------------------------- helpers

    @property
    def active(self) -> dict[str, Any] | None:
        return self.snapshots[-1] if self.snapshots else None

    def own_lockboxes(self, key: str) -> list[dict[str, Any]]:
        if self.leak_lockboxes:
            return [lb for _, lb in sorted(self.lockboxes.items())]
        return [lb for (e, r), lb in sorted(self.lockboxes.items()) if r == key]

    def _chain_from(self, known_id: str | None) -> list[dict[str, Any]] | None:
        ids = [s["publicData"]["snapshotId"] for s in self.snapshots]
        if known_id not in ids:
            return None
        return [_proof(s) for s in self.snapshots[ids.index(known_id) + 1 :]]

    async def _others(self, conn: Conn, frame: dict[str, Any], links_too: bool = False) -> None:
        for other, (_key, is_link) in list(self.conns.items()):
            if other is not conn and (links_too or not is_link):
                with contextlib.suppress(Exception):
                    await other.send(frame)

    # --------------------------------------------------------------- a connection

    async def __call__(self, conn: Conn) -> None:
        nonce = new_reader_challenge()
        await conn.send({"type": "reader-challenge", "nonce": nonce})
        proof = await conn.recv("reader-proof")
        try:
            state = None if self.admit_anyone else self.state
            key = verify_reader_proof(proof, self.doc_id, nonce, state, now=now_ms())
        except MembershipError as exc:
            await conn.send({"type": "unauthorized", "code": exc.code, "reason": str(exc)})
            await conn.ws.close(1008)
            return
        is_link = key in self.state.links
        self.conns[conn] = (key, is_link)
        try:
            await self._document(conn, key, is_link)
            while True:
                try:
                    frame = await conn.recv(timeout=0.2)
                except TimeoutError:
                    if conn.ws.state.name == "CLOSED":
                        return
                    continue
                async with self.lock:
                    await self._frame(conn, key, is_link, frame)
        finally:
            self.conns.pop(conn, None)

    async def _document(self, conn: Conn, key: str, is_link: bool) -> None:
        frame: dict[str, Any] = {
            "type": "document",
            "log": self.entries,
            "logFrom": 0,
            "lockboxes": self.own_lockboxes(key),
        }
        if is_link:
            frame.update(link=True, snapshot=None, updates=[])
            await conn.send(frame)
            return
        active = self.serve or self.active
        updates = list(self.updates.get(active["publicData"]["snapshotId"], [])) if active else []
        q = conn.query
        if q.get("mode") == "delta" and active is not None and q.get("knownSnapshotId"):
            import json

            known = q["knownSnapshotId"]
            clocks = json.loads(q.get("knownSnapshotUpdateClocks") or "{}")
            if known == active["publicData"]["snapshotId"]:
                updates = [
                    u
                    for u in updates
                    if u["publicData"]["clock"] > clocks.get(u["publicData"]["pubKey"], -1)
                ]
                active = None
            else:
                chain = self._chain_from(known)
                if chain is not None:
                    frame["snapshotProofChain"] = chain
        frame["snapshot"] = active
        frame["updates"] = updates
        await conn.send(frame)

    async def _frame(self, conn: Conn, key: str, is_link: bool, frame: dict[str, Any]) -> None:
        kind = frame_kind(frame)
        if frame.get("type") == "lockbox":
            try:
                lb = check_lockbox(self.state, frame.get("lockbox"), now=now_ms())
            except MembershipError as exc:
                await conn.send({"type": "lockbox-failed", "code": exc.code, "reason": str(exc)})
                return
            self.lockboxes.setdefault((lb.epoch, lb.recipient), lb.to_json())
            await conn.send({"type": "lockbox-saved", "epoch": lb.epoch, "recipient": lb.recipient})
            return
        if kind == "log-entry":
            await self._entry(conn, key, is_link, frame)
            return
        if is_link:
            await conn.send({"type": "write-refused", "of": kind, "code": "SECSYNC_ERROR_753"})
            return
        if key == self.hold and self.held and kind in ("snapshot", "update"):
            for f in self.held:
                await conn.send(f)
            self.hold, self.held = None, []
        if kind == "snapshot":
            await self._snapshot(conn, frame)
        elif kind == "update":
            await self._update(conn, frame)
        elif kind == "ephemeral":
            await self._others(conn, {**frame, "type": "ephemeral-message"})

    async def _entry(self, conn: Conn, key: str, is_link: bool, frame: dict[str, Any]) -> None:
        raw = frame.get("entry")
        try:
            entry = parse_entry(raw)
            if is_link and (entry.kind != "add-member" or entry.signer != key):
                raise MembershipError("a link may only add", code="SECSYNC_ERROR_753")
            state = verify_entry(self.state, raw)
            boxes = frame.get("lockboxes") or []
            if entry.kind == "rotate-key":
                parsed = check_lockbox_set(state, state.epoch, boxes)
            else:
                parsed = [check_lockbox(state, lb, now=now_ms()) for lb in boxes]
        except MembershipError as exc:
            seq = raw.get("seq") if isinstance(raw, dict) else None
            out: dict[str, Any] = {"type": "log-entry-failed", "seq": seq, "code": exc.code}
            if exc.code in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709") and type(seq) is int:
                out["log"] = self.entries[seq:]
            await conn.send(out)
            return
        self.state = state
        self.entries.append(entry.to_json())
        for lb in parsed:
            self.lockboxes.setdefault((lb.epoch, lb.recipient), lb.to_json())
        await conn.send({"type": "log-entry-saved", **state.head.to_json()})
        for other, (okey, _link) in list(self.conns.items()):
            if other is conn:
                continue
            with contextlib.suppress(Exception):
                frames = [{"type": "log-entry", "entry": entry.to_json()}]
                for lb in parsed:
                    if lb.recipient == okey or self.leak_lockboxes:
                        frames.append({"type": "lockbox", "lockbox": lb.to_json()})
                if okey == self.hold:
                    self.held += frames
                    continue
                for f in frames:
                    await other.send(f)
                if not _link and okey not in state.members and not self.keep_removed:
                    await other.send(
                        {"type": "unauthorized", "code": "SECSYNC_ERROR_725", "reason": "removed"}
                    )
                    await other.ws.close(1008)

    def _epoch_error(self, snap: dict[str, Any]) -> str | None:
        pd = snap["publicData"]
        head = pd.get("logHead") or {}
        try:
            epoch = parse_epoch(pd.get("epoch"))
        except MembershipError:
            return "SECSYNC_ERROR_767"
        if epoch != self.state.epoch_at(head.get("seq", 0)):
            return "SECSYNC_ERROR_767"
        if epoch < self.state.epoch:
            return "SECSYNC_ERROR_768"
        return None

    async def broadcast(self, frame: dict[str, Any]) -> None:
        """Send ``frame`` to every member connection (a relay injecting something)."""
        await self._others(None, frame)  # type: ignore[arg-type]

    async def _snapshot(self, conn: Conn, snap: dict[str, Any]) -> None:
        snap = {k: snap[k] for k in ("nonce", "ciphertext", "publicData", "signature")}
        pd = snap["publicData"]
        code = None if self.lax_epochs else self._epoch_error(snap)
        if code is not None:
            self.refused.append(("snapshot", code))
            await conn.send(
                {
                    "type": "write-refused",
                    "of": "snapshot",
                    "code": code,
                    "snapshotId": pd["snapshotId"],
                }
            )
            return
        active = self.active
        if active is not None and pd.get("parentSnapshotId") != active["publicData"]["snapshotId"]:
            out: dict[str, Any] = {"type": "snapshot-save-failed", "snapshot": active}
            out["updates"] = self.updates.get(active["publicData"]["snapshotId"], [])
            chain = self._chain_from(pd.get("parentSnapshotId"))
            if chain is not None:
                out["snapshotProofChain"] = chain
            await conn.send(out)
            return
        self.snapshots.append(snap)
        await conn.send({"type": "snapshot-saved", "snapshotId": pd["snapshotId"]})
        await self._others(conn, {"type": "snapshot", "snapshot": snap})

    async def _update(self, conn: Conn, upd: dict[str, Any]) -> None:
        upd = {k: upd[k] for k in ("nonce", "ciphertext", "publicData", "signature")}
        pd = upd["publicData"]
        active = self.active
        if active is None or pd["refSnapshotId"] != active["publicData"]["snapshotId"]:
            await conn.send(
                {
                    "type": "update-save-failed",
                    "snapshotId": pd["refSnapshotId"],
                    "clock": pd["clock"],
                }
            )
            return
        epoch = parse_epoch(active["publicData"].get("epoch"))
        if not self.lax_epochs and epoch < self.state.epoch:
            self.refused.append(("update", "SECSYNC_ERROR_768"))
            await conn.send(
                {
                    "type": "write-refused",
                    "of": "update",
                    "code": "SECSYNC_ERROR_768",
                    "snapshotId": pd["refSnapshotId"],
                    "clock": pd["clock"],
                }
            )
            return
        self.updates.setdefault(pd["refSnapshotId"], []).append(upd)
        await conn.send(
            {"type": "update-saved", "snapshotId": pd["refSnapshotId"], "clock": pd["clock"]}
        )
        await self._others(conn, {**upd, "type": "update"})
