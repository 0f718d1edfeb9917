"""Writes tests/vectors/epoch-vectors.json: cross-language vectors of key epochs, lockboxes
and invitation links (issue 12).

    .venv/bin/python tests/vectors/make_epoch_vectors.py [--out PATH]

Deterministic: the keys, link secrets, epoch keys and timestamps are fixed, Ed25519 is
deterministic, and the lockboxes here are sealed with fixed ephemeral keys (the sealed-box
construction of libsodium written out: ``epk || crypto_box(m, BLAKE2b-192(epk || pk), pk,
esk)``, which ``crypto_box_seal_open`` opens; the real ``crypto_box_seal`` is randomized, so
vectors pin opening, checking and the derivations, not sealing). tests/test_epochs.py checks
that the checked-in file is up to date. Every expected result (code, index, field, members,
links, epochs, keys) is written by hand here, never recorded from a verifier. The same file
runs in pytest (tests/test_epochs.py) and vitest (labextension/test/epochs.test.ts).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pathlib
import sys

import nacl.bindings as sodium

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from make_membership_vectors import KEYS, T0, sign  # noqa: E402

from secsync_jupyter.protocol.crypto import SigningKeyPair  # noqa: E402
from secsync_jupyter.protocol.encoding import b64encode  # noqa: E402
from secsync_jupyter.protocol.epochs import (  # noqa: E402
    DOMAIN_EPOCH_KEY_CHECK,
    DOMAIN_LOCKBOXES,
    epoch_key_check,
    lockbox_set_hash,
)
from secsync_jupyter.protocol.identity import box_public_key  # noqa: E402
from secsync_jupyter.protocol.links import DOMAIN_LINK_IDENTITY, link_keypair  # noqa: E402
from secsync_jupyter.protocol.membership import (  # noqa: E402
    MembershipState,
    create_entry,
    create_log,
    create_reader_proof,
    next_entry,
)
from secsync_jupyter.protocol.membership_codes import MEMBERSHIP_ERROR_MESSAGES  # noqa: E402

OUT = HERE / "epoch-vectors.json"
HOUR = 3_600_000


def h(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"epoch-vectors/{label}".encode(), digest_size=size).digest()


LINK_NAMES = ("LV", "LE", "LX", "LY")
SECRETS = {n: h(f"link-secret/{n}") for n in LINK_NAMES}
LINKS: dict[str, SigningKeyPair] = {n: link_keypair(s) for n, s in SECRETS.items()}
SIGNERS: dict[str, SigningKeyPair] = {**KEYS, **LINKS}


def key_of(name: str) -> str:
    return SIGNERS[name].public_key_b64


def epoch_key(label: str) -> bytes:
    return h(f"epoch-key/{label}")


def det_seal(message: bytes, recipient: str, label: str) -> str:
    """libsodium's sealed box with a fixed ephemeral key (opens with crypto_box_seal_open)."""
    esk = h(f"ephemeral/{label}")
    epk = sodium.crypto_scalarmult_base(esk)
    rpk = box_public_key(recipient)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    box = epk + sodium.crypto_box(message, nonce, rpk, esk)
    return b64encode(box)


def lockbox(doc_id: str, epoch: int, key: bytes, recipient: str, label: str) -> dict:
    return {
        "docId": doc_id,
        "epoch": epoch,
        "recipient": recipient,
        "box": det_seal(key, recipient, f"{label}/{epoch}/{recipient}"),
    }


class Log:
    """A log with the issue-12 kinds, built step by step; the steps are what TS replays."""

    def __init__(self, label: str, creator: str = "A"):
        self.label = label
        nonce = h(f"root-nonce/{label}", 24)
        root, self.state = create_log(KEYS[creator], at=T0, nonce=nonce)
        self.steps: list[dict] = [
            {"op": "create", "signer": creator, "at": T0, "nonce": b64encode(nonce)}
        ]
        self.entries = [root.to_json()]
        self.lockboxes: dict[int, list[dict]] = {}
        self.keys: dict[int, bytes] = {}

    @property
    def doc_id(self) -> str:
        return self.state.doc_id

    def at(self) -> int:
        return T0 + 1000 * len(self.entries)

    def _push(self, step: dict, entry, state: MembershipState) -> dict:
        self.steps.append(step)
        self.entries.append(entry.to_json())
        self.state = state
        return entry.to_json()

    def member(self, signer: str, kind: str, target: str, role=None, name=None, at=None):
        at = self.at() if at is None else at
        entry, state = create_entry(
            self.state, SIGNERS[signer], kind, key_of(target), role, name=name, at=at
        )
        step = {"op": kind, "signer": signer, "target": target, "role": role, "at": at}
        if name is not None:
            step["name"] = name
        return self._push(step, entry, state)

    def add_link(self, signer: str, link: str, role: str, label: str, expires_at=None):
        at = self.at()
        fields = {"target": key_of(link), "role": role, "label": label}
        if expires_at is not None:
            fields["expiresAt"] = expires_at
        entry, state = next_entry(self.state, SIGNERS[signer], "add-link", fields, at=at)
        step = {"op": "add-link", "signer": signer, "fields": fields, "at": at}
        return self._push(step, entry, state)

    def remove_link(self, signer: str, link: str, at: int | None = None):
        at = self.at() if at is None else at
        fields = {"target": key_of(link)}
        entry, state = next_entry(self.state, SIGNERS[signer], "remove-link", fields, at=at)
        step = {"op": "remove-link", "signer": signer, "fields": fields, "at": at}
        return self._push(step, entry, state)

    def rotate(self, signer: str = "A", at: int | None = None):
        at = self.at() if at is None else at
        epoch = self.state.epoch + 1
        key = epoch_key(f"{self.label}/{epoch}")
        boxes = [lockbox(self.doc_id, epoch, key, r, self.label) for r in self.state.recipients(at)]
        fields = {
            "epoch": epoch,
            "keyCheck": epoch_key_check(self.doc_id, epoch, key),
            "lockboxHash": lockbox_set_hash(self.doc_id, epoch, boxes),
        }
        entry, state = next_entry(self.state, SIGNERS[signer], "rotate-key", fields, at=at)
        self.lockboxes[epoch] = boxes
        self.keys[epoch] = key
        step = {
            "op": "rotate-key",
            "signer": signer,
            "key": b64encode(key),
            "lockboxes": boxes,
            "at": at,
        }
        return self._push(step, entry, state)


def members(spec: dict[str, tuple]) -> dict:
    """Hand-written: name -> (role, added by, seq, at, name or None, via or None)."""
    out = {}
    for who, (role, by, seq, at, name, via) in spec.items():
        m = {"role": role, "addedBy": key_of(by), "at": at, "seq": seq}
        if name is not None:
            m["name"] = name
        if via is not None:
            m["via"] = key_of(via)
        out[key_of(who)] = m
    return dict(sorted(out.items()))


def links(spec: dict[str, tuple]) -> dict:
    """Hand-written: name -> (role, label, added by, seq, at, expiresAt, removed)."""
    out = {}
    for name, (role, label, by, seq, at, expires, removed) in spec.items():
        link = {"role": role, "label": label, "addedBy": key_of(by), "at": at, "seq": seq}
        if expires is not None:
            link["expiresAt"] = expires
        if removed is not None:
            link["removed"] = removed
        out[key_of(name)] = link
    return dict(sorted(out.items()))


def recipients(*names: str) -> list[str]:
    return sorted(key_of(n) for n in names)


# ---------------------------------------------------------------------------------------


def story() -> Log:
    """The main valid log: links, joins through them, rotations, a revocation."""
    log = Log("story")
    log.member("A", "add-member", "B", "editor", name="Bob")  # 1
    log.add_link("A", "LV", "viewer", "Team viewers", expires_at=T0 + HOUR)  # 2
    log.add_link("A", "LE", "editor", "Editors 🚀")  # 3
    log.member("LV", "add-member", "D", "viewer", name="Dana")  # 4 joins through LV
    log.member("LE", "add-member", "E", "viewer")  # 5 below the link's role
    log.rotate("A")  # 6: epoch 1 for A, B, D, E, LV, LE
    log.remove_link("A", "LV")  # 7 revoked: D stays
    log.rotate("A")  # 8: epoch 2 for A, B, D, E, LE
    log.member("A", "remove-member", "E")  # 9 a removal: rotation needed
    return log


def valid_logs(s: Log) -> list[dict]:
    cases = []
    t = lambda seq: T0 + 1000 * seq  # noqa: E731
    cases.append(
        {
            "name": "links-joins-rotations",
            "description": "two links, a person joins through each, two rotations, a link "
            "revoked (who joined through it stays), a member removed",
            "docId": s.doc_id,
            "steps": s.steps,
            "log": s.entries,
            "expect": {
                "head": s.state.head.to_json(),
                "members": members(
                    {
                        "A": ("admin", "A", 0, T0, None, None),
                        "B": ("editor", "A", 1, t(1), "Bob", None),
                        "D": ("viewer", "LV", 4, t(4), "Dana", "LV"),
                    }
                ),
                "links": links(
                    {
                        "LV": ("viewer", "Team viewers", "A", 2, t(2), T0 + HOUR, 7),
                        "LE": ("editor", "Editors 🚀", "A", 3, t(3), None, None),
                    }
                ),
                "epoch": 2,
                "epochs": [
                    {"epoch": 0, "seq": 0, "signer": key_of("A"), "at": T0},
                    {
                        "epoch": 1,
                        "seq": 6,
                        "signer": key_of("A"),
                        "at": t(6),
                        "keyCheck": s.entries[6]["keyCheck"],
                        "lockboxHash": s.entries[6]["lockboxHash"],
                        "recipients": recipients("A", "B", "D", "E", "LV", "LE"),
                    },
                    {
                        "epoch": 2,
                        "seq": 8,
                        "signer": key_of("A"),
                        "at": t(8),
                        "keyCheck": s.entries[8]["keyCheck"],
                        "lockboxHash": s.entries[8]["lockboxHash"],
                        "recipients": recipients("A", "B", "D", "E", "LE"),
                    },
                ],
                # after each entry (0 … 9), at the entry's time: a removal (7, 9) needs one
                "rotationNeeded": [False] * 7 + [True, False, True],
                "epochAt": [0, 0, 0, 0, 0, 0, 1, 1, 2, 2],
            },
        }
    )

    exp = Log("expiry")
    exp.add_link("A", "LX", "editor", "Workshop", expires_at=T0 + 5000)  # 1
    exp.member("LX", "add-member", "C", "editor", at=T0 + 5000)  # 2: at == expiresAt: allowed
    exp.rotate("A", at=T0 + 6000)  # 3: the link expired: no lockbox for it
    exp.remove_link("A", "LX", at=T0 + 7000)  # 4: an expired link can still be removed (tidying up)
    cases.append(
        {
            "name": "expired-link",
            "description": "a join exactly at the expiry is allowed; a rotation after the "
            "expiry seals nothing to the expired link; an expired link held the old key; an "
            "expired link is removed",
            "docId": exp.doc_id,
            "steps": exp.steps,
            "log": exp.entries,
            "expect": {
                "head": exp.state.head.to_json(),
                "members": members(
                    {
                        "A": ("admin", "A", 0, T0, None, None),
                        "C": ("editor", "LX", 2, T0 + 5000, None, "LX"),
                    }
                ),
                "links": links({"LX": ("editor", "Workshop", "A", 1, t(1), T0 + 5000, 4)}),
                "epoch": 1,
                "epochs": [
                    {"epoch": 0, "seq": 0, "signer": key_of("A"), "at": T0},
                    {
                        "epoch": 1,
                        "seq": 3,
                        "signer": key_of("A"),
                        "at": T0 + 6000,
                        "keyCheck": exp.entries[3]["keyCheck"],
                        "lockboxHash": exp.entries[3]["lockboxHash"],
                        "recipients": recipients("A", "C"),
                    },
                ],
                # at each entry's time: nothing to rotate (the link is live until T0+5000);
                # (the removal at 4 needs none: the expired link got no key of epoch 1)
                "rotationNeeded": [False, False, False, False, False],
                "epochAt": [0, 0, 0, 1, 1],
            },
            # …but at T0+5001, before the rotation (state after entry 2), one is needed
            "rotationNeededLater": {"seq": 2, "now": T0 + 5001, "expect": True},
        }
    )
    return cases


def base() -> Log:
    """A admin, B editor, C viewer, links LV (viewer, expires T0+100 s) and LE (editor);
    rotated once (epoch 1). Head: seq 5."""
    log = Log("rules")
    log.member("A", "add-member", "B", "editor")
    log.member("A", "add-member", "C", "viewer")
    log.add_link("A", "LV", "viewer", "Viewers", expires_at=T0 + 100_000)
    log.add_link("A", "LE", "editor", "Editors")
    log.rotate("A")
    return log


def invalid_logs(b: Log) -> list[dict]:
    cases: list[dict] = []
    e = b.entries
    head = b.state.head
    at = T0 + 10_000

    def case(name, log, code, index, field, description):
        cases.append(
            {
                "name": name,
                "description": description,
                "docId": b.doc_id,
                "log": log,
                "error": {"code": f"SECSYNC_ERROR_{code}", "index": index, "field": field},
            }
        )

    def entry(signer, kind, seq=None, prev=None, when=None, **fields):
        out = {
            "v": 1,
            "kind": kind,
            "docId": b.doc_id,
            "seq": head.seq + 1 if seq is None else seq,
            "prev": head.hash if prev is None else prev,
            "signer": key_of(signer),
            **fields,
            "at": at if when is None else when,
        }
        return sign(out, signer) if signer in KEYS else _sign_link(out, signer)

    def rule(name, signer, kind, code, field, description, **fields):
        case(name, [*e, entry(signer, kind, **fields)], code, len(e), field, description)

    key2 = epoch_key("rules/x")
    rot = {
        "keyCheck": epoch_key_check(b.doc_id, 2, key2),
        "lockboxHash": "A" * 43,
    }
    rule(
        "rotate-skips-an-epoch", "A", "rotate-key", 751, "epoch", "epoch 3 after 1", epoch=3, **rot
    )
    rule("rotate-same-epoch", "A", "rotate-key", 751, "epoch", "epoch 1 again", epoch=1, **rot)
    rule("rotate-by-editor", "B", "rotate-key", 712, "signer", "an editor rotates", epoch=2, **rot)
    rule("rotate-by-link", "LE", "rotate-key", 753, "kind", "a link rotates", epoch=2, **rot)
    link_fields = {"target": key_of("LX"), "role": "viewer", "label": "New"}
    rule(
        "add-link-admin-role",
        "A",
        "add-link",
        752,
        "role",
        "a link with the admin role",
        **{**link_fields, "role": "admin"},
    )
    rule(
        "add-link-by-editor", "B", "add-link", 712, "signer", "an editor adds a link", **link_fields
    )
    rule("add-link-by-link", "LE", "add-link", 753, "kind", "a link adds a link", **link_fields)
    rule(
        "add-link-already-expired",
        "A",
        "add-link",
        759,
        "expiresAt",
        "expiresAt equal to the entry's time",
        **link_fields,
        expiresAt=at,
    )
    rule(
        "add-link-twice",
        "A",
        "add-link",
        758,
        "target",
        "a link that exists already",
        **{**link_fields, "target": key_of("LV")},
    )
    rule(
        "add-link-member-key",
        "A",
        "add-link",
        715,
        "target",
        "a member's key as a link",
        **{**link_fields, "target": key_of("B")},
    )
    rule(
        "remove-link-of-member",
        "A",
        "remove-link",
        757,
        "target",
        "remove-link naming a member",
        target=key_of("B"),
    )
    rule(
        "remove-link-unknown",
        "A",
        "remove-link",
        757,
        "target",
        "remove-link naming no link",
        target=key_of("LX"),
    )
    rule(
        "remove-link-by-viewer",
        "C",
        "remove-link",
        712,
        "signer",
        "a viewer revokes a link",
        target=key_of("LV"),
    )
    rule(
        "remove-link-by-the-link",
        "LE",
        "remove-link",
        753,
        "kind",
        "a link revokes itself",
        target=key_of("LE"),
    )
    rule(
        "link-joins-above-its-role",
        "LV",
        "add-member",
        756,
        "role",
        "a viewer link adds an editor",
        target=key_of("D"),
        role="editor",
    )
    rule(
        "link-joins-as-admin",
        "LE",
        "add-member",
        756,
        "role",
        "an editor link adds an admin",
        target=key_of("D"),
        role="admin",
    )
    rule(
        "link-adds-a-member",
        "LV",
        "add-member",
        715,
        "target",
        "a link adds someone who is a member",
        target=key_of("B"),
        role="viewer",
    )
    rule(
        "link-adds-a-link",
        "LE",
        "add-member",
        758,
        "target",
        "a link adds another link's key as a person",
        target=key_of("LV"),
        role="viewer",
    )
    rule(
        "link-adds-itself",
        "LE",
        "add-member",
        758,
        "target",
        "a link adds its own key as a person",
        target=key_of("LE"),
        role="viewer",
    )
    rule(
        "expired-link-joins",
        "LV",
        "add-member",
        754,
        "at",
        "a join after the link's expiry",
        target=key_of("D"),
        role="viewer",
        when=T0 + 100_001,
    )
    rule(
        "link-changes-a-role",
        "LE",
        "set-role",
        753,
        "kind",
        "a link changes a role",
        target=key_of("C"),
        role="editor",
    )
    rule(
        "link-removes-a-member",
        "LE",
        "remove-member",
        753,
        "kind",
        "a link removes a member",
        target=key_of("C"),
    )
    rule(
        "admin-adds-a-link-key",
        "A",
        "add-member",
        758,
        "target",
        "an admin adds a link's key as a person",
        target=key_of("LE"),
        role="viewer",
    )
    rule(
        "set-role-of-a-link",
        "A",
        "set-role",
        716,
        "target",
        "set-role is for people (a link's role is fixed)",
        target=key_of("LE"),
        role="viewer",
    )
    rule(
        "remove-member-of-a-link",
        "A",
        "remove-member",
        716,
        "target",
        "links are removed with remove-link",
        target=key_of("LE"),
    )
    rule(
        "non-member-rotates",
        "D",
        "rotate-key",
        711,
        "signer",
        "a non-member rotates",
        epoch=2,
        **rot,
    )
    # two admins rotate at once: the second rotate-key on the same parent is a fork (one chain)
    from secsync_jupyter.protocol.membership import parse_entry as _parse

    rival = entry(
        "A",
        "rotate-key",
        seq=head.seq,
        prev=_parse(e[head.seq - 1]).hash,
        when=e[head.seq]["at"],
        epoch=1,
        **rot,
    )
    case(
        "concurrent-rotation",
        [*e, rival],
        707,
        len(e),
        "seq",
        "a second rotate-key to epoch 1 on the parent of the first (a concurrent rotation)",
    )
    # a revoked link
    removal = entry("A", "remove-link", target=key_of("LV"))
    from secsync_jupyter.protocol.membership import parse_entry

    removal_hash = parse_entry(removal).hash
    after = dict(seq=head.seq + 2, prev=removal_hash, when=at + 1)
    case(
        "revoked-link-joins",
        [*e, removal, entry("LV", "add-member", target=key_of("D"), role="viewer", **after)],
        755,
        len(e) + 1,
        "signer",
        "a join through a revoked link",
    )
    case(
        "revoked-link-added-again",
        [*e, removal, entry("A", "add-link", **{**link_fields, "target": key_of("LV")}, **after)],
        758,
        len(e) + 1,
        "target",
        "a revoked link never comes back",
    )
    case(
        "revoked-link-revoked-again",
        [*e, removal, entry("A", "remove-link", target=key_of("LV"), **after)],
        757,
        len(e) + 1,
        "target",
        "revoking a revoked link",
    )
    # a tampered rotation
    bad = copy.deepcopy(e)
    bad[5]["keyCheck"] = epoch_key_check(b.doc_id, 1, key2)
    case("tampered-key-check", bad, 704, 5, "signature", "keyCheck changed after signing")
    bad = copy.deepcopy(e)
    bad[5]["lockboxHash"] = "B" * 42 + "A"
    case("tampered-lockbox-hash", bad, 704, 5, "signature", "lockboxHash changed after signing")
    bad = copy.deepcopy(e)
    bad[3]["expiresAt"] = T0 + 10**9
    case("tampered-expiry", bad, 704, 3, "signature", "a link's expiry extended after signing")

    # malformed (the signature is not reached)
    def malformed(name, index, mutate, field, description, code=701):
        bad = copy.deepcopy(e)
        mutate(bad[index])
        case(name, bad, code, index, field, description)

    def setter(k, v):
        return lambda d: d.__setitem__(k, v)

    def deleter(k):
        return lambda d: d.pop(k)

    for args in (
        ("rotate-missing-keyCheck", 5, deleter("keyCheck"), "keyCheck", "no keyCheck"),
        ("rotate-missing-lockboxHash", 5, deleter("lockboxHash"), "lockboxHash", "no hash"),
        ("rotate-missing-epoch", 5, deleter("epoch"), "epoch", "no epoch"),
        ("rotate-epoch-zero", 5, setter("epoch", 0), "epoch", "epoch 0 is the root's"),
        ("rotate-epoch-string", 5, setter("epoch", "1"), "epoch", "epoch as a string"),
        ("rotate-epoch-fraction", 5, setter("epoch", 1.5), "epoch", "a fractional epoch"),
        (
            "rotate-keyCheck-short",
            5,
            lambda d: d.update(keyCheck=d["keyCheck"][:42]),
            "keyCheck",
            "a key check of the wrong length",
        ),
        (
            "rotate-lockboxHash-padded",
            5,
            lambda d: d.update(lockboxHash=d["lockboxHash"] + "="),
            "lockboxHash",
            "base64 with padding",
        ),
        ("rotate-with-target", 5, setter("target", key_of("B")), "target", "unknown field"),
        ("rotate-with-role", 5, setter("role", "admin"), "role", "unknown field"),
        ("rotate-with-expiresAt", 5, setter("expiresAt", 1), "expiresAt", "unknown field"),
        ("add-link-missing-label", 3, deleter("label"), "label", "no label"),
        ("add-link-missing-role", 3, deleter("role"), "role", "no role"),
        ("add-link-missing-target", 3, deleter("target"), "target", "no target"),
        ("add-link-empty-label", 3, setter("label", ""), "label", "an empty label"),
        ("add-link-bidi-label", 3, setter("label", "a\u202eb"), "label", "bidi override"),
        ("add-link-label-number", 3, setter("label", 5), "label", "label is a number"),
        ("add-link-with-name", 3, setter("name", "x"), "name", "add-link carries a label"),
        ("add-link-expiresAt-null", 3, setter("expiresAt", None), "expiresAt", "null expiry"),
        ("add-link-expiresAt-negative", 3, setter("expiresAt", -1), "expiresAt", "negative"),
        ("add-link-expiresAt-bool", 3, setter("expiresAt", True), "expiresAt", "a boolean"),
        ("add-link-with-epoch", 3, setter("epoch", 1), "epoch", "unknown field"),
        ("add-member-with-label", 1, setter("label", "x"), "label", "unknown field"),
        ("add-member-with-keyCheck", 1, setter("keyCheck", "A" * 43), "keyCheck", "unknown"),
        (
            "remove-link-with-role",
            4,
            lambda d: d.update(kind="remove-link", label=None) or d.pop("label"),
            "role",
            "remove-link carries no role",
        ),
    ):
        malformed(*args)
    return cases


def _sign_link(fields: dict, link: str) -> dict:
    from secsync_jupyter.protocol.membership import parse_entry

    unsigned = parse_entry({**fields, "signature": "A" * 86})
    return {**fields, "signature": b64encode(LINKS[link].sign(unsigned.signed_bytes))}


# ---------------------------------------------------------------------------------------


def lockbox_cases(s: Log) -> dict:
    doc = s.doc_id
    k1, k2 = s.keys[1], s.keys[2]
    boxes1 = s.lockboxes[1]
    by = {lb["recipient"]: lb for lb in boxes1}
    d_box = by[key_of("D")]
    other = Log("other-document")
    wrong_key = epoch_key("not-the-committed-key")
    corrupt = bytearray(__import__("base64").urlsafe_b64decode(d_box["box"] + "="))
    corrupt[40] ^= 1
    corrupt_b64 = b64encode(bytes(corrupt))
    open_ok = [
        {"name": "member-epoch-1", "who": "D", "lockbox": d_box, "key": b64encode(k1)},
        {
            "name": "link-epoch-1",
            "who": "LE",
            "lockbox": by[key_of("LE")],
            "key": b64encode(k1),
        },
        {
            "name": "member-epoch-2",
            "who": "B",
            "lockbox": next(x for x in s.lockboxes[2] if x["recipient"] == key_of("B")),
            "key": b64encode(k2),
        },
        {
            "name": "epoch-0-unchecked",
            "who": "D",
            "lockbox": lockbox(doc, 0, epoch_key("epoch-0"), key_of("D"), "e0"),
            "key": b64encode(epoch_key("epoch-0")),
            "description": "epoch 0 has no rotate-key: the key is checked by decrypting",
        },
    ]

    def err(code, field):
        return {"code": f"SECSYNC_ERROR_{code}", "field": field}

    open_bad = [
        ("someone-elses", "B", d_box, err(763, "recipient")),
        ("another-document", "D", {**d_box, "docId": other.doc_id}, err(763, "docId")),
        ("unknown-epoch", "D", {**d_box, "epoch": 3}, err(766, "epoch")),
        ("corrupted-box", "D", {**d_box, "box": corrupt_b64}, err(761, "box")),
        (
            "other-epochs-box",
            "D",
            {**d_box, "epoch": 2},
            err(762, "keyCheck"),
        ),
        (
            "substituted-key",
            "D",
            lockbox(doc, 1, wrong_key, key_of("D"), "substitute"),
            err(762, "keyCheck"),
        ),
        (
            "removed-link-opens-new-epoch-box-of-other",
            "LV",
            next(x for x in s.lockboxes[2] if x["recipient"] == key_of("D")),
            err(763, "recipient"),
        ),
        ("not-an-object", "D", [d_box], err(760, "lockbox")),
        ("unknown-field", "D", {**d_box, "key": "x"}, err(760, "key")),
        ("missing-box", "D", {k: v for k, v in d_box.items() if k != "box"}, err(760, "box")),
        ("null-epoch", "D", {**d_box, "epoch": None}, err(760, "epoch")),
        ("epoch-negative", "D", {**d_box, "epoch": -1}, err(760, "epoch")),
        ("epoch-string", "D", {**d_box, "epoch": "1"}, err(760, "epoch")),
        ("docId-without-log", "D", {**d_box, "docId": "A" * 32}, err(760, "docId")),
        ("recipient-short", "D", {**d_box, "recipient": key_of("D")[:42]}, err(760, "recipient")),
        ("box-short", "D", {**d_box, "box": d_box["box"][:106]}, err(760, "box")),
        (
            "box-trailing-bits",
            "D",
            {**d_box, "box": d_box["box"][:106] + "B"},
            err(760, "box"),
        ),
    ]
    extra = lockbox(doc, 1, k1, key_of("F"), "extra")
    dup = lockbox(doc, 1, k1, key_of("D"), "duplicate")
    reseal = [dup if x["recipient"] == key_of("D") else x for x in boxes1]
    idx_d = [x["recipient"] for x in boxes1].index(key_of("D"))
    set_bad = [
        (
            "missing-one",
            1,
            [x for x in boxes1 if x["recipient"] != key_of("E")],
            None,
            err(765, "recipient"),
        ),
        ("one-too-many", 1, [*boxes1, extra], len(boxes1), err(765, "recipient")),
        ("duplicate", 1, [*boxes1, dup], len(boxes1), err(765, "recipient")),
        ("resealed-box", 1, reseal, None, err(764, "lockboxHash")),
        ("other-epoch", 1, [*boxes1[:idx_d], {**d_box, "epoch": 2}], idx_d, err(763, "epoch")),
        ("other-document", 1, [{**boxes1[0], "docId": other.doc_id}], 0, err(763, "docId")),
        ("epoch-0", 0, boxes1, None, err(766, "epoch")),
        ("epoch-beyond", 3, boxes1, None, err(766, "epoch")),
        ("not-an-array", 1, {"0": boxes1[0]}, None, err(760, "lockboxes")),
        ("malformed-one", 1, [*boxes1[:2], {**boxes1[2], "box": 1}], 2, err(760, "box")),
    ]
    # relay's check of a single lockbox given outside a rotation
    single = [
        ("new-member", lockbox(doc, 2, k2, key_of("B"), "single"), T0 + 20_000, None),
        ("older-epoch", lockbox(doc, 1, k1, key_of("D"), "single"), T0 + 20_000, None),
        ("live-link", lockbox(doc, 2, k2, key_of("LE"), "single"), T0 + 20_000, None),
        (
            "revoked-link",
            lockbox(doc, 2, k2, key_of("LV"), "single"),
            T0 + 20_000,
            err(765, "recipient"),
        ),
        (
            "removed-member",
            lockbox(doc, 2, k2, key_of("E"), "single"),
            T0 + 20_000,
            err(765, "recipient"),
        ),
        ("unknown-epoch", lockbox(doc, 3, k2, key_of("B"), "single"), T0, err(766, "epoch")),
        (
            "another-document",
            lockbox(other.doc_id, 1, k2, key_of("B"), "single"),
            T0,
            err(763, "docId"),
        ),
    ]
    return {
        "docId": doc,
        "log": s.entries,
        "sets": {str(e): boxes for e, boxes in s.lockboxes.items()},
        "open": {
            "valid": open_ok,
            "invalid": [
                {"name": n, "who": w, "lockbox": lb, "error": x} for n, w, lb, x in open_bad
            ],
        },
        "setInvalid": [
            {"name": n, "epoch": ep, "lockboxes": lbs, "index": i, "error": x}
            for n, ep, lbs, i, x in set_bad
        ],
        "single": [
            {"name": n, "lockbox": lb, "now": now, **({"error": x} if x else {})}
            for n, lb, now, x in single
        ],
    }


def derivations(s: Log) -> dict:
    return {
        "domains": {
            "linkIdentity": DOMAIN_LINK_IDENTITY,
            "epochKeyCheck": DOMAIN_EPOCH_KEY_CHECK,
            "lockboxes": DOMAIN_LOCKBOXES,
        },
        "links": [
            {
                "secret": b64encode(SECRETS[n]),
                "seed": hashlib.blake2b(
                    DOMAIN_LINK_IDENTITY.encode(), key=SECRETS[n], digest_size=32
                ).hexdigest(),
                "pubKey": key_of(n),
                "boxPublicKey": b64encode(box_public_key(key_of(n))),
            }
            for n in LINK_NAMES
        ],
        "keyChecks": [
            {
                "docId": s.doc_id,
                "epoch": e,
                "key": b64encode(k),
                "keyCheck": s.entries[s.state.epochs[e].seq]["keyCheck"],
                "message": DOMAIN_EPOCH_KEY_CHECK
                + json.dumps({"docId": s.doc_id, "epoch": e}, separators=(",", ":")),
            }
            for e, k in sorted(s.keys.items())
        ],
        "lockboxHashes": [
            {
                "docId": s.doc_id,
                "epoch": e,
                "lockboxes": list(reversed(boxes)),  # any order: the hash sorts
                "hash": s.entries[s.state.epochs[e].seq]["lockboxHash"],
            }
            for e, boxes in sorted(s.lockboxes.items())
        ],
    }


def fragments() -> dict:
    k = b64encode(h("fragment-key"))
    ln = b64encode(SECRETS["LV"])
    valid = [
        {"text": f"#key={k}", "key": k, "link": None},
        {"text": f"#link={ln}", "key": None, "link": ln},
        {"text": f"#key={k}&link={ln}", "key": k, "link": ln},
        {"text": f"link={ln}&key={k}", "key": k, "link": ln, "noncanonical": True},
    ]

    def bad(name, text, field):
        return {"name": name, "text": text, "error": {"code": "SECSYNC_ERROR_770", "field": field}}

    invalid = [
        bad("empty", "#", "fragment"),
        bad("not-a-string", 7, "fragment"),
        bad("unknown-name", f"#key={k}&role=admin", "fragment"),
        bad("no-equals", f"#{k}", "fragment"),
        bad("twice", f"#link={ln}&link={ln}", "link"),
        bad("key-short", f"#key={k[:42]}", "key"),
        bad("link-padded", f"#link={ln}=", "link"),
        bad("link-percent-encoded", "#link=" + ln[:40] + "%41" + ln[41:], "link"),
        bad("empty-part", f"#key={k}&", "fragment"),
        bad("too-long", "#link=" + "A" * 300, "fragment"),
    ]
    return {"valid": valid, "invalid": invalid}


def reader_proofs(b: Log) -> dict:
    nonce = b64encode(h("challenge"))
    removed_log = base()
    removed_log.remove_link("A", "LV")
    return {
        "docId": b.doc_id,
        "nonce": nonce,
        "log": b.entries,
        "logLinkRemoved": removed_log.entries,
        "cases": [
            {
                "name": "live-link",
                "proof": create_reader_proof(LINKS["LE"], b.doc_id, nonce),
                "now": T0 + 10**9,
                "result": key_of("LE"),
            },
            {
                "name": "link-before-expiry",
                "proof": create_reader_proof(LINKS["LV"], b.doc_id, nonce),
                "now": T0 + 100_000,
                "result": key_of("LV"),
            },
            {
                "name": "expired-link",
                "proof": create_reader_proof(LINKS["LV"], b.doc_id, nonce),
                "now": T0 + 100_001,
                "error": {"code": "SECSYNC_ERROR_754", "field": "pubKey"},
            },
            {
                "name": "revoked-link",
                "proof": create_reader_proof(LINKS["LV"], b.doc_id, nonce),
                "now": T0 + 1,
                "linkRemoved": True,
                "error": {"code": "SECSYNC_ERROR_755", "field": "pubKey"},
            },
            {
                "name": "unknown-link",
                "proof": create_reader_proof(LINKS["LX"], b.doc_id, nonce),
                "now": T0,
                "error": {"code": "SECSYNC_ERROR_722", "field": "pubKey"},
            },
        ],
    }


def message_epochs(s: Log) -> list[dict]:
    hashes = [e for e in s.state.hashes]

    def head(seq):
        return {"seq": seq, "hash": hashes[seq]}

    def c(name, epoch, seq, result=None, code=None, field="epoch", **opts):
        out = {"name": name, "epoch": epoch, "logHead": head(seq), "options": opts}
        if code is None:
            out["result"] = result
        else:
            out["error"] = {"code": f"SECSYNC_ERROR_{code}", "field": field}
        return out

    return [
        c("current-epoch", 2, 9, 2),
        c("at-the-rotation", 2, 8, 2),
        c("epoch-of-an-older-head-live", 1, 7, code=768),
        c("previous-epoch-in-document-frame", 1, 7, 1, live=False),
        c("epoch-0-in-document-frame", 0, 3, 0, live=False),
        c("rolled-back-served-epoch", 1, 6, code=769, live=False, seen=2),
        c("older-than-parent", 1, 7, code=768, live=False, parent=2),
        c("same-as-parent", 2, 9, 2, parent=2),
        c("not-the-epoch-of-its-head", 2, 7, code=767),
        c("newer-than-its-head", 3, 9, code=767),
        c("absent-under-epoch-2", None, 9, code=767),
        c("absent-is-epoch-0", None, 3, 0, live=False),
        c("absent-is-epoch-0-superseded", None, 3, code=768),
        c("string", "2", 9, code=767),
        c("negative", -1, 9, code=767),
        {
            "name": "head-not-in-log",
            "epoch": 2,
            "logHead": {"seq": 9, "hash": hashes[8]},
            "options": {},
            "error": {"code": "SECSYNC_ERROR_767", "field": "logHead"},
        },
    ]


def keyrings() -> dict:
    k0, k1 = b64encode(epoch_key("ring/0")), b64encode(epoch_key("ring/1"))
    return {
        "valid": [{"json": {"0": k0, "1": k1}, "epochs": [0, 1]}, {"json": {}, "epochs": []}],
        "invalid": [
            {"name": "not-an-object", "json": [k0]},
            {"name": "leading-zero", "json": {"01": k0}},
            {"name": "negative", "json": {"-1": k0}},
            {"name": "short-key", "json": {"0": k0[:42]}},
            {"name": "key-number", "json": {"0": 5}},
        ],
    }


def build() -> dict:
    s = story()
    b = base()
    return {
        "format": "secsync-jupyter epoch vectors",
        "version": 1,
        "generator": "tests/vectors/make_epoch_vectors.py",
        "errorCodes": {k: v for k, v in MEMBERSHIP_ERROR_MESSAGES.items() if int(k[-3:]) >= 750},
        "linkSecrets": {n: b64encode(v) for n, v in SECRETS.items()},
        "validLogs": valid_logs(s),
        "invalidLogs": invalid_logs(b),
        "lockboxes": lockbox_cases(s),
        "derivations": derivations(s),
        "fragments": fragments(),
        "readerProofs": reader_proofs(b),
        "messageEpochs": {"docId": s.doc_id, "log": s.entries, "cases": message_epochs(s)},
        "keyrings": keyrings(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=True) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    args.out.write_text(render(), encoding="ascii")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
