"""Conformance runner for Secsync test vectors (format of ``shared/vectors/*.json``).

For every vector it recomputes the intermediates (canonical JSON, additional data,
commitment tag, signed string, hashes, proofs), re-creates the message from its inputs and
its recorded (deterministic) nonce and compares the bytes, verifies the message and checks
that each negative case yields its expected error code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import protocol as p
from .protocol.crypto import commitment_tag, signed_bytes

#: canonicalize vectors that exercise JavaScript-only corners outside the protocol's domain
#: (protocol.md): they pass when our canonicalizer rejects them with a protocol error.
_JS_ONLY_CANON = ("string escapes", "numbers")


@dataclass
class Outcome:
    section: str
    name: str
    ok: bool
    detail: str = ""


class _Mismatch(Exception):
    pass


def _eq(what: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        raise _Mismatch(f"{what}: expected {expected!r}, got {actual!r}")


def _keypair(keys: dict, signer: str) -> p.SigningKeyPair:
    pair = p.SigningKeyPair.from_seed(p.b64decode(keys["signers"][signer]["seed"]))
    _eq(f"signer {signer} public key", pair.public_key_b64, keys["signers"][signer]["publicKey"])
    return pair


def _content(inputs: dict) -> bytes:
    if "contentB64" in inputs:
        return p.b64decode(inputs["contentB64"])
    return inputs["contentUtf8"].encode("utf-8")


def _check_intermediate(message: dict, inter: dict, key: bytes, domain: str) -> None:
    canon = p.canonicalize(message["publicData"]).decode("utf-8")
    _eq("publicDataCanonical", canon, inter["publicDataCanonical"])
    ad = p.canonicalize_b64(message["publicData"])
    _eq("additionalData", ad, inter["additionalData"])
    raw = p.b64decode(message["ciphertext"])
    _eq("robustnessTag", p.b64encode(raw[:32]), inter["robustnessTag"])
    _eq("aeadCiphertext", p.b64encode(raw[32:]), inter["aeadCiphertext"])
    _eq("aeadCiphertextLength", len(raw) - 32, inter["aeadCiphertextLength"])
    tag = commitment_tag(key, message["nonce"], inter["aeadCiphertext"], ad)
    _eq("recomputed robustnessTag", p.b64encode(tag), inter["robustnessTag"])
    _eq("domain", domain, inter["domain"])
    signed = signed_bytes(domain, message["nonce"], message["ciphertext"], ad).decode("utf-8")
    _eq("signedString", signed, inter["signedString"])
    if "snapshotCiphertextHash" in inter:
        _eq(
            "snapshotCiphertextHash",
            p.hash_b64(message["ciphertext"]),
            inter["snapshotCiphertextHash"],
        )
    if "decryptedPlaintext" in inter:
        plain = p.decrypt_aead(raw, ad, key, message["nonce"])
        _eq("decryptedPlaintext", p.b64encode(plain), inter["decryptedPlaintext"])


def _entry(obj: dict | None) -> p.SnapshotProofChainEntry | None:
    return None if obj is None else p.SnapshotProofChainEntry.from_json(obj)


def _verify(vector: dict, keys: dict) -> dict:
    """Run the vector's verify call; return the result normalised like the generator does."""
    fn = vector["verify"]["function"]
    a = vector["verify"]["args"]
    key = p.b64decode(a["key"])
    msg = vector["message"]
    try:
        if fn == "verifyAndDecryptSnapshot":
            content = p.verify_and_decrypt_snapshot(
                p.Snapshot.from_json(msg),
                key,
                a["currentDocId"],
                a["currentClientPublicKey"],
                _entry(a.get("parentSnapshotProofInfo")),
                a.get("parentSnapshotUpdateClock"),
            )
            return {"error": None, "content": p.b64encode(content)}
        if fn == "verifyAndDecryptUpdate":
            update = p.Update.from_json(msg)
            content = p.verify_and_decrypt_update(
                update, key, a["currentActiveSnapshotId"], a["currentClock"]
            )
            return {
                "error": None,
                "content": p.b64encode(content),
                "clock": update.public_data.clock,
            }
        if fn == "verifyAndDecryptEphemeralMessage":
            session = a["ephemeralMessagesSession"]
            r = p.verify_and_decrypt_ephemeral_message(
                p.EphemeralMessage.from_json(msg),
                key,
                a["currentDocId"],
                session["id"],
                session["validSessions"],
                _keypair(keys, a["receiver"]),
            )
            out: dict[str, Any] = {"error": r.error.code if r.error else None}
            if r.content is not None:
                out["content"] = p.b64encode(r.content)
            if r.proof is not None:
                out["proof"] = p.b64encode(r.proof)
            if r.request_proof is not None:
                out["requestProof"] = r.request_proof
            if r.valid_sessions is not None:
                out["validSessions"] = r.valid_sessions
            return out
    except p.ProtocolError as exc:
        return {"error": exc.code}
    raise _Mismatch(f"unknown verify function {fn}")


def _message_vectors(data: dict, section: str, domain: str) -> Iterator[tuple[str, Callable]]:
    keys = data["keys"]
    for v in data[section]:

        def run(v=v):
            key = p.b64decode(v["inputs"]["key"])
            msg = v["message"]
            _check_intermediate(msg, v["intermediate"], key, domain)
            pair = _keypair(keys, v["inputs"]["signer"])
            nonce = p.b64decode(msg["nonce"])
            inputs = v["inputs"]
            if v["function"] == "createInitialSnapshot":
                made = p.create_initial_snapshot(
                    _content(inputs), inputs["publicData"], key, pair, nonce=nonce
                )
            elif v["function"] == "createSnapshot":
                made = p.create_snapshot(
                    _content(inputs),
                    inputs["publicData"],
                    key,
                    pair,
                    inputs["parentSnapshotCiphertextHash"],
                    inputs["grandParentSnapshotProof"],
                    nonce=nonce,
                )
            elif v["function"] == "createUpdate":
                made = p.create_update(
                    _content(inputs), inputs["publicData"], key, pair, inputs["clock"], nonce=nonce
                )
            elif v["function"] == "createEphemeralMessage":
                made = p.create_ephemeral_message(
                    p.b64decode(inputs["contentB64"]),
                    inputs["type"],
                    inputs["publicData"],
                    key,
                    pair,
                    inputs["authorSessionId"],
                    inputs["authorSessionCounter"],
                    nonce=nonce,
                )
            else:
                raise _Mismatch(f"unknown create function {v['function']}")
            _eq(
                "re-created message",
                json.dumps(made.to_json(), sort_keys=True),
                json.dumps(msg, sort_keys=True),
            )
            _eq("verify result", _verify(v, keys), v["expected"])

        yield v["name"], run


def _negative_vectors(data: dict) -> Iterator[tuple[str, Callable]]:
    keys = data["keys"]
    for v in data["negative"]:

        def run(v=v):
            actual = _verify(v, keys)
            expected = v["expected"]
            if expected.get("error") is None and "QUIRK" in v.get("note", ""):
                # The reference accepts these; reproduce that (the stateless check) and show
                # that our strict checks (docId binding) reject them.
                _eq("verify result (reference behaviour)", actual, expected)
                _strict_rejects(v, keys)
                return
            _eq("verify result", actual, expected)

        yield v["name"], run


def _strict_rejects(v: dict, keys: dict) -> None:
    a = v["verify"]["args"]
    key = p.b64decode(a["key"])
    if v["target"] == "update":
        try:
            p.verify_and_decrypt_update(
                p.Update.from_json(v["message"]),
                key,
                a["currentActiveSnapshotId"],
                a["currentClock"],
                current_doc_id=keys["docId"],
            )
        except p.UpdateError as exc:
            _eq("strict update docId check", exc.code, "SECSYNC_ERROR_213")
            return
        if v["message"]["publicData"]["docId"] != keys["docId"]:
            raise _Mismatch("strict check accepted an update for another document")
    elif v["target"] == "ephemeralMessage":
        s = a["ephemeralMessagesSession"]
        session = p.EphemeralSession(
            a["currentDocId"],
            key,
            _keypair(keys, a["receiver"]),
            session_id=s["id"],
            counter=s["counter"],
        )
        msg = p.EphemeralMessage.from_json(v["message"])
        if msg.public_data.doc_id != a["currentDocId"]:
            try:
                session.receive(msg)
            except p.EphemeralError as exc:
                _eq("strict ephemeral docId check", exc.code, "SECSYNC_ERROR_306")
                return
            raise _Mismatch("strict session accepted an ephemeral message for another document")
        received = session.receive(msg)
        if received.content is not None:
            raise _Mismatch("strict session delivered content from an invalid proof")


def _other_vectors(data: dict) -> Iterator[tuple[str, str, Callable]]:
    for h in data["hash"]:

        def run_hash(h=h):
            value = p.b64decode(h["input"]) if "input" in h else h["inputUtf8"]
            _eq("hash", p.hash_b64(value), h["output"])

        yield "hash", h["name"], run_hash
    for c in data["canonicalize"]:

        def run_canon(c=c):
            value = json.loads(c["inputJson"])
            if c["name"].startswith(_JS_ONLY_CANON):
                try:
                    out = p.canonicalize(value).decode("utf-8")
                except p.ProtocolError:
                    return "rejected (JavaScript-only corner outside the protocol's domain)"
                _eq("canonical", out, c["canonical"])
                return None
            _eq("canonical", p.canonicalize(value).decode("utf-8"), c["canonical"])
            _eq("canonicalAndBase64", p.canonicalize_b64(value), c["canonicalAndBase64"])
            return None

        yield "canonicalize", c["name"], run_canon
    for i, pp in enumerate(data["parentSnapshotProof"]):

        def run_proof(pp=pp):
            canon = p.canonicalize(
                {
                    "grandParentSnapshotProof": pp["grandParentSnapshotProof"],
                    "parentSnapshotCiphertextHash": pp["parentSnapshotCiphertextHash"],
                    "parentSnapshotId": pp["parentSnapshotId"],
                }
            ).decode("utf-8")
            _eq("canonical", canon, pp["canonical"])
            proof = p.create_parent_snapshot_proof(
                pp["grandParentSnapshotProof"],
                pp["parentSnapshotId"],
                pp["parentSnapshotCiphertextHash"],
            )
            _eq("proof", proof, pp["proof"])

        yield "parentSnapshotProof", f"#{i}", run_proof
    for c in data["snapshotProofChain"]:

        def run_chain(c=c):
            known = p.SnapshotProofChainEntry.from_json(c["knownSnapshotProofEntry"])
            chain = p.parse_snapshot_proof_chain(c["snapshotProofChain"])
            current = p.Snapshot.from_json(c["currentSnapshot"])
            _eq(
                "isValidAncestorSnapshot",
                p.is_valid_ancestor_snapshot(known, chain, current),
                c["expected"],
            )

        yield "snapshotProofChain", c["name"], run_chain
    for q in data.get("quirks", []):
        yield "quirks", q["name"], lambda q=q: _run_quirk(q, data["keys"])


def _run_quirk(q: dict, keys: dict) -> None:
    """The two documented reference quirks (the labextension's runner checks the same)."""
    if "snapshotCiphertextHash" in q:
        # snapshotCiphertextHash hashes the base64url TEXT of the ciphertext, not its bytes
        _eq("hash of base64 text", p.hash_b64(q["ciphertext"]), q["snapshotCiphertextHash"])
        _eq("hash of bytes", p.hash_b64(p.b64decode(q["ciphertext"])), q["hashOfDecodedBytes"])
        return
    if "expectedByteSafeLength" in q:
        # the reference turns string content into a non-byte-safe plaintext; we take bytes only
        inputs, message = q["inputs"], q["message"]
        key = p.b64decode(inputs["key"])
        pair = _keypair(keys, inputs["signer"])
        args = (
            "message",
            message["publicData"],
            key,
            pair,
            inputs["authorSessionId"],
            inputs["authorSessionCounter"],
        )
        try:
            p.create_ephemeral_message(inputs["contentUtf8"], *args)
        except p.ProtocolError as exc:
            _eq("string content refused with", exc.code, "SECSYNC_ERROR_601")
        else:
            raise _Mismatch("string content was accepted (ephemeral content is bytes only)")
        ad = p.canonicalize_b64(message["publicData"])
        byte_safe = p.create_ephemeral_message(inputs["contentUtf8"].encode("utf-8"), *args)
        plain = p.decrypt_aead(p.b64decode(byte_safe.ciphertext), ad, key, byte_safe.nonce)
        _eq("byte-safe plaintext length", len(plain), q["expectedByteSafeLength"])
        _eq("byte-safe content", plain[29:].decode("utf-8"), inputs["contentUtf8"])
        theirs = p.decrypt_aead(p.b64decode(message["ciphertext"]), ad, key, message["nonce"])
        _eq("reference plaintext length", len(theirs), q["decryptedPlaintextLength"])
        _eq("reference plaintext", p.b64encode(theirs), q["decryptedPlaintext"])
        return
    raise _Mismatch("unknown quirk (no runner for it: add one to both runners)")


def run_vectors(data: dict) -> list[Outcome]:
    """Run every vector of one decoded vectors file."""
    tasks: list[tuple[str, str, Callable]] = []
    tasks += list(_other_vectors(data))
    for section, domain in (
        ("snapshots", p.DOMAIN_SNAPSHOT),
        ("updates", p.DOMAIN_UPDATE),
        ("ephemeralMessages", p.DOMAIN_EPHEMERAL_MESSAGE),
    ):
        tasks += [(section, name, fn) for name, fn in _message_vectors(data, section, domain)]
    tasks += [("negative", name, fn) for name, fn in _negative_vectors(data)]
    outcomes = []
    for section, name, fn in tasks:
        try:
            note = fn()
            outcomes.append(Outcome(section, name, True, note or ""))
        except _Mismatch as exc:
            outcomes.append(Outcome(section, name, False, str(exc)))
        except Exception as exc:
            outcomes.append(Outcome(section, name, False, f"{type(exc).__name__}: {exc}"))
    return outcomes


def main(paths: list[str], out=None) -> int:
    import sys

    out = out or sys.stdout
    passed = failed = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            outcomes = run_vectors(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"FAIL {path}: cannot read vectors file: {exc}", file=out)
            failed += 1
            continue
        for o in outcomes:
            if o.ok:
                passed += 1
                if o.detail:
                    print(f"note {path}: {o.section}: {o.name}: {o.detail}", file=out)
            else:
                failed += 1
                print(f"FAIL {path}: {o.section}: {o.name}: {o.detail}", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0
