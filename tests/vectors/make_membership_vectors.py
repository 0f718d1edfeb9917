"""Writes tests/vectors/membership-vectors.json: cross-language vectors of the membership log.

    .venv/bin/python tests/vectors/make_membership_vectors.py [--out PATH]

Deterministic (fixed seeds, timestamps and root nonces; Ed25519 signatures are
deterministic), so the file is the same on every run and tests/test_membership.py checks that
the checked-in file is up to date. Entries are made with the Python implementation
(secsync_jupyter.protocol.membership) and, for the rejection cases, changed or re-signed by
hand here; every expected result (code, entry index, field, final membership) is written by
hand in this script, never recorded from a verifier. The same file runs in pytest
(tests/test_membership.py) and vitest (labextension/test/membership.test.ts).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from secsync_jupyter.protocol.crypto import SigningKeyPair  # noqa: E402
from secsync_jupyter.protocol.encoding import b64encode  # noqa: E402
from secsync_jupyter.protocol.identity import (  # noqa: E402
    box_public_key,
    box_secret_key,
    fingerprint_hex,
    format_identity,
)
from secsync_jupyter.protocol.membership import (  # noqa: E402
    DOMAIN_MEMBERSHIP_ENTRY,
    DOMAIN_READER_PROOF,
    MembershipState,
    create_entry,
    create_log,
    create_reader_proof,
    parse_entry,
)
from secsync_jupyter.protocol.membership_codes import MEMBERSHIP_ERROR_MESSAGES  # noqa: E402

OUT = pathlib.Path(__file__).with_name("membership-vectors.json")
NAMES = "ABCDEFGH"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def keypair(name: str) -> SigningKeyPair:
    return SigningKeyPair.from_seed(
        hashlib.blake2b(f"membership-vectors/{name}".encode(), digest_size=32).digest()
    )


KEYS = {n: keypair(n) for n in NAMES}


def pk(name: str) -> str:
    return KEYS[name].public_key_b64


def root_nonce(label: str) -> bytes:
    return hashlib.blake2b(f"root-nonce/{label}".encode(), digest_size=24).digest()


class Log:
    """A log being built step by step, remembering the steps (what TS replays)."""

    def __init__(self, label: str, creator: str = "A", name: str | None = None):
        self.steps = [
            {
                "op": "create",
                "signer": creator,
                "name": name,
                "at": T0,
                "nonce": b64encode(root_nonce(label)),
            }
        ]
        root, self.state = create_log(KEYS[creator], name=name, at=T0, nonce=root_nonce(label))
        self.entries = [root.to_json()]
        self.parsed = [root]

    @property
    def doc_id(self) -> str:
        return self.state.doc_id

    def add(
        self, signer: str, kind: str, target: str, role: str | None = None, name: str | None = None
    ) -> dict:
        at = T0 + 1000 * len(self.entries)
        entry, self.state = create_entry(
            self.state, KEYS[signer], kind, pk(target), role, name=name, at=at
        )
        self.steps.append(
            {"op": kind, "signer": signer, "target": target, "role": role, "name": name, "at": at}
        )
        self.entries.append(entry.to_json())
        self.parsed.append(entry)
        return entry.to_json()


def sign(fields: dict, signer: str) -> dict:
    """Re-sign an entry after changing it (the signature is over the entry as given)."""
    fields = {k: v for k, v in fields.items() if k != "signature"}
    unsigned = parse_entry({**fields, "signature": "A" * 86})
    return {**fields, "signature": b64encode(KEYS[signer].sign(unsigned.signed_bytes))}


def forge(base: dict, signer: str, **changes) -> dict:
    """An entry like ``base`` with ``changes``, validly signed by ``signer``."""
    out = {k: v for k, v in base.items() if k != "signature"}
    out.update(changes)
    out["signer"] = pk(signer)
    return sign(out, signer)


def next_fields(log: Log, kind: str, target: str, role: str | None = None, **extra) -> dict:
    """Fields of the entry that would come next on ``log`` (unsigned)."""
    out = {
        "v": 1,
        "kind": kind,
        "docId": log.doc_id,
        "seq": log.state.head.seq + 1,
        "prev": log.state.head.hash,
        "target": pk(target),
        "at": T0 + 1000 * len(log.entries),
    }
    if role is not None:
        out["role"] = role
    out.update(extra)
    return out


def state_json(state: MembershipState) -> dict:
    return state.to_json()


def expected_members(members: dict[str, tuple]) -> dict:
    """Hand-written membership: name -> (role, added_by, entry seq, display name or None)."""
    out = {}
    for who, (role, by, seq, name) in members.items():
        m = {"role": role, "addedBy": pk(by), "at": T0 + 1000 * seq, "seq": seq}
        if name is not None:
            m["name"] = name
        out[pk(who)] = m
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------


def valid_logs() -> list[dict]:
    cases = []

    basic = Log("basic", name="Ada")
    basic.add("A", "add-member", "B", "editor", name="Bob")
    basic.add("A", "add-member", "C", "viewer")
    basic.add("A", "set-role", "C", "editor")
    basic.add("A", "set-role", "B", "admin")
    basic.add("B", "remove-member", "A")
    basic.add("C", "remove-member", "C")  # a member may leave
    basic.add("B", "add-member", "D", "viewer", name='Zoë 山田 "quoted" \\ 🚀')
    cases.append(
        {
            "name": "basic",
            "description": "create, add, promote, admin removes the creator, "
            "a member leaves, a Unicode display name",
            "steps": basic.steps,
            "docId": basic.doc_id,
            "log": basic.entries,
            "expect": {
                "head": basic.state.head.to_json(),
                "members": expected_members(
                    {
                        "B": ("admin", "A", 1, "Bob"),
                        "D": ("viewer", "B", 7, basic.steps[7]["name"]),
                    }
                ),
            },
            "entries": [{"hash": e.hash, "signed": e.signed_bytes.decode()} for e in basic.parsed],
        }
    )

    demote = Log("self-demotion")
    demote.add("A", "add-member", "B", "editor")
    demote.add("B", "set-role", "B", "viewer")  # self-demotion needs no authority
    demote.add("A", "add-member", "C", "admin")
    demote.add("A", "set-role", "A", "editor")  # an admin steps down while another remains
    demote.add("A", "remove-member", "A")
    cases.append(
        {
            "name": "self-demotion-and-leave",
            "description": "an editor demotes itself; an "
            "admin steps down and leaves while another admin remains",
            "steps": demote.steps,
            "docId": demote.doc_id,
            "log": demote.entries,
            "expect": {
                "head": demote.state.head.to_json(),
                "members": expected_members(
                    {
                        "B": ("viewer", "A", 1, None),
                        "C": ("admin", "A", 3, None),
                    }
                ),
            },
            "entries": [{"hash": e.hash, "signed": e.signed_bytes.decode()} for e in demote.parsed],
        }
    )

    readd = Log("re-add")
    readd.add("A", "add-member", "B", "editor")
    readd.add("A", "remove-member", "B")
    readd.add("A", "add-member", "B", "viewer", name="Bob again")
    cases.append(
        {
            "name": "removed-then-added-again",
            "description": "a removed member is added again with another role",
            "steps": readd.steps,
            "docId": readd.doc_id,
            "log": readd.entries,
            "expect": {
                "head": readd.state.head.to_json(),
                "members": expected_members(
                    {
                        "A": ("admin", "A", 0, None),
                        "B": ("viewer", "A", 3, "Bob again"),
                    }
                ),
            },
            "entries": [{"hash": e.hash, "signed": e.signed_bytes.decode()} for e in readd.parsed],
        }
    )

    root_only = Log("root-only", creator="E")
    cases.append(
        {
            "name": "root-only",
            "description": "a new document: only the create entry",
            "steps": root_only.steps,
            "docId": root_only.doc_id,
            "log": root_only.entries,
            "expect": {
                "head": {"seq": 0, "hash": root_only.parsed[0].hash},
                "members": expected_members({"E": ("admin", "E", 0, None)}),
            },
            "entries": [
                {"hash": e.hash, "signed": e.signed_bytes.decode()} for e in root_only.parsed
            ],
        }
    )

    # numbers are compared by value, as JavaScript's JSON.parse sees them: 1.0 is 1
    floats = Log("integral-floats")
    floats.add("A", "add-member", "B", "editor")
    entries = copy.deepcopy(floats.entries)
    entries[1]["seq"] = 1.0
    entries[1]["v"] = 1.0
    cases.append(
        {
            "name": "integral-floats",
            "description": "JSON numbers 1.0 are the integer 1 (same canonical form and hash)",
            "docId": floats.doc_id,
            "log": entries,
            "expect": {
                "head": floats.state.head.to_json(),
                "members": expected_members(
                    {
                        "A": ("admin", "A", 0, None),
                        "B": ("editor", "A", 1, None),
                    }
                ),
            },
        }
    )
    return cases


def base_log(label: str = "rules") -> Log:
    """A: admin, B: editor, C: viewer."""
    log = Log(label)
    log.add("A", "add-member", "B", "editor")
    log.add("A", "add-member", "C", "viewer")
    return log


def invalid_logs() -> list[dict]:
    cases: list[dict] = []

    def case(name, log_entries, doc_id, code, index, field, description, known_head=None):
        c = {
            "name": name,
            "description": description,
            "docId": doc_id,
            "log": log_entries,
            "error": {"code": f"SECSYNC_ERROR_{code}", "index": index, "field": field},
        }
        if known_head is not None:
            c["knownHead"] = known_head
        cases.append(c)

    log = base_log()
    e = log.entries
    nxt = lambda *a, **k: next_fields(log, *a, **k)  # noqa: E731

    # signatures
    bad = copy.deepcopy(e)
    sig = bytearray(KEYS["A"].sign(b"x"))
    bad[1]["signature"] = b64encode(bytes(sig))
    case("bad-signature", bad, log.doc_id, 704, 1, "signature", "a signature over other bytes")
    bad = copy.deepcopy(e)
    bad[2]["role"] = "admin"
    case(
        "tampered-role",
        bad,
        log.doc_id,
        704,
        2,
        "signature",
        "role changed after signing (viewer -> admin)",
    )
    bad = copy.deepcopy(e)
    bad[1]["signer"] = pk("B")
    case(
        "wrong-signer-key",
        bad,
        log.doc_id,
        704,
        1,
        "signature",
        "signed by A but claims B as signer",
    )
    bad = copy.deepcopy(e)
    bad[0]["name"] = "Mallory"
    case("tampered-root", bad, log.doc_id, 704, 0, "signature", "root changed after signing")

    # authority: one entry appended to the base log, validly signed by `signer`
    def rule(name, signer, kind, target, role, code, field, description, **changes):
        extra = sign({**nxt(kind, target, role), "signer": pk(signer), **changes}, signer)
        case(name, [*e, extra], log.doc_id, code, 3, field, description)

    rule(
        "signer-not-member",
        "D",
        "add-member",
        "D",
        "editor",
        711,
        "signer",
        "a non-member adds itself",
    )
    rule(
        "signer-not-member-adds-other",
        "D",
        "add-member",
        "E",
        "viewer",
        711,
        "signer",
        "a non-member adds someone",
    )
    rule(
        "editor-adds-member",
        "B",
        "add-member",
        "D",
        "viewer",
        712,
        "signer",
        "an editor may not add members",
    )
    rule(
        "viewer-removes-member",
        "C",
        "remove-member",
        "B",
        None,
        712,
        "signer",
        "a viewer may not remove others",
    )
    rule(
        "editor-changes-role",
        "B",
        "set-role",
        "C",
        "editor",
        712,
        "signer",
        "an editor may not change roles",
    )
    rule(
        "self-promotion-viewer",
        "C",
        "set-role",
        "C",
        "editor",
        713,
        "role",
        "a viewer promotes itself to editor",
    )
    rule(
        "self-promotion-editor",
        "B",
        "set-role",
        "B",
        "admin",
        713,
        "role",
        "an editor promotes itself to admin",
    )
    rule(
        "self-promotion-by-add",
        "B",
        "add-member",
        "B",
        "admin",
        713,
        "role",
        "an editor re-adds itself as admin",
    )
    rule(
        "remove-last-admin", "A", "remove-member", "A", None, 714, "target", "the only admin leaves"
    )
    rule(
        "demote-last-admin",
        "A",
        "set-role",
        "A",
        "editor",
        714,
        "role",
        "the only admin steps down",
    )
    rule(
        "add-existing-member",
        "A",
        "add-member",
        "B",
        "viewer",
        715,
        "target",
        "adding someone who is a member",
    )
    rule(
        "set-role-non-member",
        "A",
        "set-role",
        "D",
        "editor",
        716,
        "target",
        "changing the role of a non-member",
    )
    rule(
        "remove-non-member", "A", "remove-member", "D", None, 716, "target", "removing a non-member"
    )
    rule(
        "role-unchanged",
        "A",
        "set-role",
        "B",
        "editor",
        717,
        "role",
        "a set-role that changes nothing",
    )
    # document, chain, order
    other = base_log("other-document")
    rule(
        "entry-naming-another-document",
        "A",
        "add-member",
        "D",
        "viewer",
        705,
        "docId",
        "an admin's entry that names another document",
        docId=other.doc_id,
    )
    rule(
        "fork-same-seq",
        "A",
        "add-member",
        "D",
        "viewer",
        707,
        "seq",
        "a second entry on the parent of the head (a fork)",
        seq=2,
        prev=log.parsed[1].hash,
    )
    rule(
        "fork-wrong-prev",
        "A",
        "add-member",
        "D",
        "viewer",
        707,
        "prev",
        "the next seq, but prev names an older entry",
        prev=log.parsed[1].hash,
    )
    rule("seq-gap", "A", "add-member", "D", "viewer", 709, "seq", "seq skips one", seq=4)
    rule(
        "timestamp-backwards",
        "A",
        "add-member",
        "D",
        "viewer",
        710,
        "at",
        "older than the previous entry",
        at=T0 + 1500,
    )
    case(
        "entry-for-another-document",
        [*e, other.entries[1]],
        log.doc_id,
        705,
        3,
        "docId",
        "a valid entry of another document's log",
    )
    case("replayed-entry", [*e, e[1]], log.doc_id, 708, 3, "seq", "entry 1 sent again")
    case("replayed-root", [*e, e[0]], log.doc_id, 708, 3, "seq", "the root sent again")
    case(
        "second-root",
        [*e, other.entries[0]],
        log.doc_id,
        707,
        3,
        "seq",
        "another document's root in the middle of the log",
    )

    def later(log2: Log, signer, kind, target, role):
        return [
            *log2.entries,
            sign({**next_fields(log2, kind, target, role), "signer": pk(signer)}, signer),
        ]

    removed = base_log("removed-signer")
    removed.add("A", "remove-member", "B")
    case(
        "removed-member-signs",
        later(removed, "B", "add-member", "D", "viewer"),
        removed.doc_id,
        711,
        4,
        "signer",
        "a removed member keeps signing",
    )
    demoted = base_log("demoted-admin")
    demoted.add("A", "add-member", "D", "admin")
    demoted.add("D", "set-role", "A", "viewer")
    case(
        "demoted-admin-adds",
        later(demoted, "A", "add-member", "E", "viewer"),
        demoted.doc_id,
        712,
        5,
        "signer",
        "an admin demoted to viewer tries to add a member",
    )

    # root binding
    case(
        "root-of-another-document",
        e,
        other.doc_id,
        706,
        0,
        "root",
        "a valid log whose root is another document's (relay substitutes the log)",
    )
    case(
        "substituted-root-same-creator",
        other.entries,
        log.doc_id,
        706,
        0,
        "root",
        "the creator's other document's log served for this document",
    )
    case("first-entry-not-create", e[1:], log.doc_id, 706, 0, "kind", "a log without its root")
    case("empty-log", [], log.doc_id, 706, None, "log", "no entries at all")
    case("log-not-an-array", {"0": e[0]}, log.doc_id, 701, None, "log", "not an array")
    case(
        "rollback-to-shorter-log",
        e[:2],
        log.doc_id,
        718,
        None,
        "log",
        "a head seen before is past the end of the served log",
        known_head={"seq": 2, "hash": log.parsed[2].hash},
    )
    fork2 = [
        *e[:2],
        sign(
            {
                **next_fields(log, "add-member", "D", "editor"),
                "seq": 2,
                "prev": log.parsed[1].hash,
                "signer": pk("A"),
            },
            "A",
        ),
    ]
    case(
        "fork-of-known-head",
        fork2,
        log.doc_id,
        718,
        None,
        "log",
        "the served log differs from the head seen before at the same seq",
        known_head={"seq": 2, "hash": log.parsed[2].hash},
    )

    # malformed entries (the signature is not reached)
    def malformed(name, index_entry, mutate, code, field, description):
        bad = copy.deepcopy(e)
        mutate(bad[index_entry])
        case(name, bad, log.doc_id, code, index_entry, field, description)

    def setter(key, value):
        return lambda d: d.__setitem__(key, value)

    def deleter(key):
        return lambda d: d.pop(key)

    for args in (
        ("missing-signer", 1, deleter("signer"), 701, "signer", "no signer"),
        ("missing-signature", 1, deleter("signature"), 701, "signature", "no signature"),
        ("missing-target", 1, deleter("target"), 701, "target", "add-member without target"),
        ("missing-role", 1, deleter("role"), 701, "role", "add-member without role"),
        ("missing-docId", 1, deleter("docId"), 701, "docId", "no docId"),
        ("missing-v", 1, deleter("v"), 701, "v", "no format version"),
        ("missing-kind", 1, deleter("kind"), 701, "kind", "no kind"),
        ("unknown-field", 1, setter("extra", 1), 701, "extra", "an unknown field"),
        (
            "unknown-fields-first-sorted",
            1,
            lambda d: d.update(zz=1, Zz=2, epoch=3),
            701,
            "Zz",
            "several unknown fields: the first in UTF-16 order is named",
        ),
        (
            "docId-in-create",
            0,
            setter("docId", log.doc_id),
            701,
            "docId",
            "the root cannot name the document (its id is its hash)",
        ),
        (
            "name-in-set-role",
            2,
            lambda d: d.update(kind="set-role", name="x"),
            701,
            "name",
            "set-role carries no name",
        ),
        (
            "role-in-remove",
            2,
            setter("kind", "remove-member"),
            701,
            "role",
            "remove-member carries no role",
        ),
        ("seq-string", 1, setter("seq", "1"), 701, "seq", "seq is a string"),
        ("seq-bool", 1, setter("seq", True), 701, "seq", "seq is a boolean"),
        ("seq-negative", 1, setter("seq", -1), 701, "seq", "seq is negative"),
        ("seq-fraction", 1, setter("seq", 1.5), 701, "seq", "seq is not an integer"),
        ("seq-too-large", 1, setter("seq", 2**53), 701, "seq", "seq beyond 2^53-1"),
        ("seq-zero-not-create", 1, setter("seq", 0), 701, "seq", "seq 0 is the root's"),
        ("root-seq-not-zero", 0, setter("seq", 1), 701, "seq", "the root has seq 0"),
        (
            "root-prev-not-empty",
            0,
            setter("prev", log.parsed[1].hash),
            701,
            "prev",
            "the root has no previous entry",
        ),
        ("prev-empty", 1, setter("prev", ""), 701, "prev", "a non-root entry without prev"),
        (
            "prev-padded",
            1,
            lambda d: d.update(prev=d["prev"] + "="),
            701,
            "prev",
            "base64 with padding",
        ),
        (
            "prev-standard-alphabet",
            1,
            setter("prev", "+" * 42 + "A"),
            701,
            "prev",
            "'+' is not URL-safe base64",
        ),
        (
            "prev-trailing-bits",
            1,
            lambda d: d.update(prev=d["prev"][:42] + "B"),
            701,
            "prev",
            "non-canonical trailing bits",
        ),
        (
            "signer-short",
            1,
            lambda d: d.update(signer=d["signer"][:42]),
            701,
            "signer",
            "a public key of the wrong length",
        ),
        ("target-number", 1, setter("target", 7), 701, "target", "target is a number"),
        ("role-owner", 1, setter("role", "owner"), 701, "role", "not a role name"),
        ("role-array", 1, setter("role", ["admin"]), 701, "role", "role is an array"),
        ("role-upper", 1, setter("role", "Editor"), 701, "role", "roles are lower case"),
        ("name-empty", 1, setter("name", ""), 701, "name", "empty display name"),
        ("name-null", 1, setter("name", None), 701, "name", "null display name"),
        ("name-control", 1, setter("name", "Bob\nAdmin"), 701, "name", "a line break in a name"),
        (
            "name-bidi",
            1,
            setter("name", "Bob\u202eredro"),
            701,
            "name",
            "a right-to-left override in a name",
        ),
        (
            "name-zero-width",
            1,
            setter("name", "B\u200bob"),
            701,
            "name",
            "a zero-width space in a name",
        ),
        ("name-leading-space", 1, setter("name", " Bob"), 701, "name", "leading white space"),
        (
            "name-trailing-nbsp",
            1,
            setter("name", "Bob\xa0"),
            701,
            "name",
            "trailing no-break space",
        ),
        (
            "name-too-long",
            1,
            setter("name", "é" * 51),
            701,
            "name",
            "102 bytes of UTF-8 (the limit is 100)",
        ),
        ("name-lone-surrogate", 1, setter("name", "Bob\ud800"), 701, "name", "a lone surrogate"),
        (
            "nonce-short",
            0,
            lambda d: d.update(nonce=d["nonce"][:31]),
            701,
            "nonce",
            "a root nonce of the wrong length",
        ),
        ("at-float", 1, setter("at", T0 + 0.5), 701, "at", "a fractional timestamp"),
        ("at-negative", 1, setter("at", -1), 701, "at", "a negative timestamp"),
        (
            "docId-bad-chars",
            1,
            setter("docId", "m1_ not an id"),
            701,
            "docId",
            "a document id with spaces",
        ),
        (
            "signature-short",
            1,
            lambda d: d.update(signature=d["signature"][:85]),
            701,
            "signature",
            "a signature of the wrong length",
        ),
        ("version-2", 1, setter("v", 2), 702, "v", "another format version"),
        ("version-string", 1, setter("v", "1"), 701, "v", "version as a string"),
        (
            "kind-unknown",
            1,
            setter("kind", "transfer-ownership"),
            703,
            "kind",
            "a kind this version does not know (fail closed)",
        ),
        ("kind-number", 1, setter("kind", 3), 701, "kind", "kind is a number"),
    ):
        malformed(*args)
    bad = copy.deepcopy(e)
    bad[1] = ["not", "an", "object"]
    case("entry-not-object", bad, log.doc_id, 701, 1, "entry", "an entry that is an array")
    return cases


def identities() -> dict:
    a, b = KEYS["A"], KEYS["B"]
    valid = []
    for key, name in (
        (a, None),
        (b, "Bob"),
        (KEYS["C"], "Zoë Ö:50% ~x_y.z-"),
        (KEYS["D"], "山田 🚀"),
    ):
        text = format_identity(key.public_key, name)
        valid.append(
            {
                "text": text,
                "pubKey": key.public_key_b64,
                "name": name,
                "fingerprint": fingerprint_hex(key.public_key),
            }
        )
    base = valid[1]["text"]
    prefix, key_b64, fp, _name = base.rsplit(":", 3)
    # a key whose fingerprint matches but which is a small-order point (no usable key)
    zero = bytes(32)
    invalid = [
        ("not-a-string", 42, 730, "identity"),
        ("wrong-prefix", base.replace("secsync-id:1:", "secsync-id:2:"), 730, "identity"),
        ("no-fingerprint", f"{prefix}:{key_b64}", 730, "identity"),
        ("too-many-parts", base + ":x", 730, "identity"),
        (
            "fingerprint-mismatch",
            f"{prefix}:{key_b64}:{fingerprint_hex(a.public_key)}:Bob",
            731,
            "fingerprint",
        ),
        ("fingerprint-upper", f"{prefix}:{key_b64}:{fp.upper()}:Bob", 730, "fingerprint"),
        ("fingerprint-spaced", f"{prefix}:{key_b64}:{fp[:4]} {fp[4:]}:Bob", 730, "fingerprint"),
        ("key-short", f"{prefix}:{key_b64[:42]}:{fp}:Bob", 730, "pubKey"),
        ("key-padded", f"{prefix}:{key_b64}=:{fp}:Bob", 730, "pubKey"),
        ("key-small-order", f"{prefix}:{b64encode(zero)}:{fingerprint_hex(zero)}", 730, "pubKey"),
        ("name-empty", f"{prefix}:{key_b64}:{fp}:", 730, "name"),
        ("name-raw-space", f"{prefix}:{key_b64}:{fp}:Bob Smith", 730, "name"),
        ("name-lowercase-escape", f"{prefix}:{key_b64}:{fp}:Zo%c3%ab", 730, "name"),
        ("name-needless-escape", f"{prefix}:{key_b64}:{fp}:%42ob", 730, "name"),
        ("name-bad-escape", f"{prefix}:{key_b64}:{fp}:Bob%2", 730, "name"),
        ("name-invalid-utf8", f"{prefix}:{key_b64}:{fp}:Bob%FF", 730, "name"),
        ("name-bidi-override", f"{prefix}:{key_b64}:{fp}:Bob%E2%80%AE", 730, "name"),
        ("name-leading-space", f"{prefix}:{key_b64}:{fp}:%20Bob", 730, "name"),
        ("name-non-ascii-raw", f"{prefix}:{key_b64}:{fp}:Zoë", 730, "name"),
        ("too-long", base + "x" * 600, 730, "identity"),
    ]
    return {
        "valid": valid,
        "whitespace": {"text": f"  {base}\n", "pubKey": b.public_key_b64, "name": "Bob"},
        "invalid": [
            {"name": n, "text": t, "error": {"code": f"SECSYNC_ERROR_{c}", "field": f}}
            for n, t, c, f in invalid
        ],
    }


def reader_proofs(log: Log) -> list[dict]:
    nonce = b64encode(hashlib.blake2b(b"challenge", digest_size=32).digest())
    other_nonce = b64encode(hashlib.blake2b(b"challenge-2", digest_size=32).digest())
    doc = log.doc_id
    good = create_reader_proof(KEYS["B"], doc, nonce)
    cases = [
        {"name": "member", "proof": good, "result": pk("B")},
        {
            "name": "viewer-member",
            "proof": create_reader_proof(KEYS["C"], doc, nonce),
            "result": pk("C"),
        },
        {
            "name": "non-member",
            "proof": create_reader_proof(KEYS["D"], doc, nonce),
            "error": {"code": "SECSYNC_ERROR_722", "field": "pubKey"},
        },
        {
            "name": "non-member-without-state",
            "proof": create_reader_proof(KEYS["D"], doc, nonce),
            "withoutState": True,
            "result": pk("D"),
        },
        {
            "name": "answer-to-another-challenge",
            "proof": create_reader_proof(KEYS["B"], doc, other_nonce),
            "error": {"code": "SECSYNC_ERROR_721", "field": "signature"},
        },
        {
            "name": "answer-for-another-document",
            "proof": create_reader_proof(KEYS["B"], "m1_" + "A" * 43, nonce),
            "error": {"code": "SECSYNC_ERROR_721", "field": "signature"},
        },
        {
            "name": "claims-another-key",
            "proof": {**good, "pubKey": pk("A")},
            "error": {"code": "SECSYNC_ERROR_721", "field": "signature"},
        },
        {
            "name": "missing-pubKey",
            "proof": {"type": "reader-proof", "signature": good["signature"]},
            "error": {"code": "SECSYNC_ERROR_720", "field": "pubKey"},
        },
        {
            "name": "short-signature",
            "proof": {**good, "signature": good["signature"][:80]},
            "error": {"code": "SECSYNC_ERROR_720", "field": "signature"},
        },
        {
            "name": "not-an-object",
            "proof": "proof",
            "error": {"code": "SECSYNC_ERROR_720", "field": "proof"},
        },
    ]
    return {
        "docId": doc,
        "nonce": nonce,
        "log": log.entries,
        "signed": DOMAIN_READER_PROOF
        + json.dumps(
            {"docId": doc, "nonce": nonce, "pubKey": pk("B")}, separators=(",", ":"), sort_keys=True
        ),
        "cases": cases,
    }


def build() -> dict:
    keys = {}
    for n, k in KEYS.items():
        keys[n] = {
            "seed": k.seed.hex(),
            "pubKey": k.public_key_b64,
            "fingerprint": fingerprint_hex(k.public_key),
            "boxPublicKey": b64encode(box_public_key(k.public_key)),
            "boxSecretKey": b64encode(box_secret_key(k)),
        }
    return {
        "format": "secsync-jupyter membership vectors",
        "version": 1,
        "generator": "tests/vectors/make_membership_vectors.py",
        "domains": {"entry": DOMAIN_MEMBERSHIP_ENTRY, "readerProof": DOMAIN_READER_PROOF},
        "errorCodes": MEMBERSHIP_ERROR_MESSAGES,
        "keys": keys,
        "validLogs": valid_logs(),
        "invalidLogs": invalid_logs(),
        "identities": identities(),
        "readerProofs": reader_proofs(base_log("reader")),
        "logHeads": {
            "valid": [{"value": {"seq": 3, "hash": "A" * 43}}],
            "invalid": [
                {"value": [3], "field": "logHead"},
                {"value": {"seq": 3}, "field": "logHead"},
                {"value": {"seq": 3, "hash": "A" * 43, "x": 1}, "field": "logHead"},
                {"value": {"seq": -1, "hash": "A" * 43}, "field": "logHead.seq"},
                {"value": {"seq": 3, "hash": "A" * 42}, "field": "logHead.hash"},
            ],
        },
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    args.out.write_text(render(), encoding="ascii")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
