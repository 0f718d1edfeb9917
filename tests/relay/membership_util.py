"""Clients of documents with a membership log, for the relay tests (built from the protocol
core: create_log, create_entry, create_reader_proof)."""

from __future__ import annotations

import asyncio
from typing import Any

from secsync_jupyter.protocol import SigningKeyPair, Snapshot
from secsync_jupyter.protocol.encoding import b64encode
from secsync_jupyter.protocol.membership import (
    Entry,
    MembershipState,
    create_entry,
    create_log,
    create_reader_proof,
    parse_entry,
)

from .util import TIMEOUT, Author, RelayClient, url_for


class Member(Author):
    """An identity writing to a document with a log (its messages carry ``logHead``)."""

    def __init__(self, doc_id: str, key: bytes | None = None, keypair=None):
        super().__init__(doc_id, key, keypair or SigningKeyPair.generate())
        self.head: dict[str, Any] = {}

    def at(self, state: MembershipState) -> Member:
        self.head = state.head.to_json()
        return self

    def initial_snapshot(self, content: bytes = b"initial", **extra) -> Snapshot:
        return super().initial_snapshot(content, **{"logHead": self.head, **extra})

    def snapshot(self, parent, clocks, content: bytes = b"snap", **extra) -> Snapshot:
        return super().snapshot(parent, clocks, content, **{"logHead": self.head, **extra})

    def update(self, snapshot, clock, content: bytes = b"u", **extra):
        return super().update(snapshot, clock, content, **{"logHead": self.head, **extra})

    def ephemeral(self, content: bytes = b"hi"):
        return super().ephemeral(content)


class Team:
    """A document with a log: its owner and a state the test extends."""

    def __init__(self, owner_name: str = "Owner"):
        self.owner_keys = SigningKeyPair.generate()
        self.root, self.state = create_log(self.owner_keys, name=owner_name)
        self.doc_id = self.state.doc_id
        self.key = Member(self.doc_id).key  # one document key, shared by the members
        self.owner = self.member(self.owner_keys)
        self.entries: list[Entry] = [self.root]

    def member(self, keypair: SigningKeyPair | None = None) -> Member:
        return Member(self.doc_id, self.key, keypair or SigningKeyPair.generate()).at(self.state)

    def entry(self, signer: SigningKeyPair, kind: str, target, role=None) -> Entry:
        """The next entry (signed by ``signer``), applied to the test's state."""
        entry, self.state = create_entry(self.state, signer, kind, target, role)
        self.entries.append(entry)
        return entry


async def connect(
    base: str,
    doc_id: str,
    keypair: SigningKeyPair | None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    **kw,
) -> RelayClient:
    """Open a connection and answer the reader challenge with ``keypair`` (none: no answer).
    ``headers``: e.g. Jupyter's authorization header."""
    url = url_for(base, doc_id, **kw)
    if query:
        url += ("&" if "?" in url else "?") + query
    extra = {"additional_headers": headers} if headers else {}
    client = await RelayClient.open(url, **extra)
    challenge = await client.next("reader-challenge")
    if keypair is not None:
        await client.send(create_reader_proof(keypair, doc_id, challenge["nonce"]))
    return client


async def join(base: str, doc_id: str, keypair: SigningKeyPair, **kw) -> tuple[RelayClient, dict]:
    client = await connect(base, doc_id, keypair, **kw)
    return client, await client.next("document")


async def append(client: RelayClient, entry: Entry | dict) -> dict:
    """Send a log entry and return the answer (``log-entry-saved`` or ``log-entry-failed``)."""
    obj = entry.to_json() if isinstance(entry, Entry) else entry
    await client.send({"type": "log-entry", "entry": obj})
    return await answer(client, ("log-entry-saved", "log-entry-failed"))


async def remove_and_see_closed(
    team: Team, owner: RelayClient, member: RelayClient, member_pub: str
) -> Entry:
    """The owner removes a member (``owner``'s connection appends the entry): the member's
    open connection gets that entry, then ``unauthorized`` 725, and is closed with 1008. The
    entry is returned."""
    remove = team.entry(team.owner_keys, "remove-member", member_pub)
    assert (await append(owner, remove))["type"] == "log-entry-saved"
    assert await member.wait_closed() == 1008
    assert member.frames[-2:] == [
        {"type": "log-entry", "entry": remove.to_json()},
        {"type": "unauthorized", "code": "SECSYNC_ERROR_725", "reason": "removed"},
    ]
    return remove


async def answer(client: RelayClient, types: tuple[str, ...]) -> dict:
    """The next frame of one of ``types``; the frames before it stay unread."""

    async def wait() -> dict:
        async with client._arrived:
            while True:
                for i, frame in enumerate(client._unclaimed):
                    if frame.get("type") in types:
                        return client._unclaimed.pop(i)
                if client.closed:
                    raise ConnectionError(f"closed while waiting for {types}: {client.frames}")
                await client._arrived.wait()

    return await asyncio.wait_for(wait(), TIMEOUT)


def sign_entry(fields: dict[str, Any], keypair: SigningKeyPair) -> dict[str, Any]:
    """An entry with any fields, validly signed by ``keypair`` (no rule checked: for entries
    the protocol core's create_entry refuses to make)."""
    unsigned = parse_entry({**fields, "signature": "A" * 86})
    return {**fields, "signature": b64encode(keypair.sign(unsigned.signed_bytes))}


def next_fields(state: MembershipState, signer: SigningKeyPair, kind: str, target: str, **kw):
    """The fields of the entry after ``state``'s head (``kw`` overrides any of them)."""
    fields: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "docId": state.doc_id,
        "seq": state.head.seq + 1,
        "prev": state.head.hash,
        "signer": signer.public_key_b64,
        "target": target,
        "at": state.head_at + 1,
    }
    if kind != "remove-member":
        fields["role"] = "viewer"
    fields.update(kw)
    return fields
