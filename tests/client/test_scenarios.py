"""The shared conformance scenarios (``tests/scenarios/*.json``) through the Python engine.

The browser engine runs the same files in ``labextension/test/scenarios.test.ts``; the format
is described in ``tests/scenarios/README.md``. No relay: the runner feeds the engine the
scenario's frames, plays the ephemeral peers, and checks what the engine sends (verified and
decrypted with the scenario key), its events, errors, states and the document's text.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import re
from typing import Any

import pytest
from pycrdt import Doc, Text

from secsync_jupyter.client.engine import (
    KnownSnapshot,
    SnapshotPolicyInfo,
    SyncEngine,
    backoff_delay,
    default_snapshot_policy,
)
from secsync_jupyter.client.epochs_client import EpochKeys
from secsync_jupyter.client.heads import HEADS_PREFIX
from secsync_jupyter.client.link_join import JoinPlan, plan_join, plan_on
from secsync_jupyter.client.ydoc import YDocAdapter, deserialize_updates
from secsync_jupyter.protocol import (
    EphemeralMessage,
    EphemeralSession,
    MessageType,
    ProtocolError,
    SigningKeyPair,
    Snapshot,
    Update,
    b64decode,
    b64encode,
    verify_and_decrypt_snapshot,
    verify_and_decrypt_update,
)
from secsync_jupyter.protocol.ephemeral import decrypt_ephemeral
from secsync_jupyter.protocol.epochs import Keyring, open_lockbox
from secsync_jupyter.protocol.links import link_keypair
from secsync_jupyter.protocol.membership import MembershipError, extend_log, verify_reader_proof

from .scripted import frame_kind

SCENARIOS = pathlib.Path(__file__).resolve().parent.parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.json"))
EPHEMERAL_TYPES = {
    MessageType.INITIALIZE: "initialize",
    MessageType.PROOF_AND_REQUEST_PROOF: "proofAndRequestProof",
    MessageType.PROOF: "proof",
    MessageType.MESSAGE: "message",
}
#: every error code a client records (reference numbering; 200 "unknown" is never produced)
CLIENT_CODES = [
    *(f"SECSYNC_ERROR_{n}" for n in (100, 101, 102, 103, 104, 105, 110, 111, 112, 113, 114, 115)),
    *(f"SECSYNC_ERROR_{n}" for n in (201, 202, 203, 204, 205, 206, 211, 212, 213, 214, 215)),
    *(f"SECSYNC_ERROR_{n}" for n in (300, 301, 302, 303, 304, 305, 306, 307, 308)),
    "SECSYNC_ERROR_401",
    "SECSYNC_ERROR_501",
    "SECSYNC_ERROR_601",
]
#: the membership-log codes a client records (issue 11); 707 / 708 / 710–717 are the relay's
#: answers or caught by create_entry before anything is sent
MEMBERSHIP_CODES = [f"SECSYNC_ERROR_{n}" for n in (701, 704, 706, 709, 718, 722, 724, 725)]
#: the issue 13 codes a client records (causal heads, heads between peers, remembered state)
HEADS_CODES = [f"SECSYNC_ERROR_{n}" for n in (801, 802, 803, 804, 805, 806, 807)]
#: the issue 12 codes a client records (lockboxes, keys per epoch, epochs of snapshots)
EPOCH_CODES = [f"SECSYNC_ERROR_{n}" for n in (761, 762, 763, 766, 767, 768, 769)]
#: the issue 10 decisions (docs/client.md, "Engine rules") each pinned by a scenario
DECISIONS = [
    "decision:snapshot-policy-300",
    "decision:snapshot-policy-1000000-bytes",
    "decision:backoff-cap-10s",
    "decision:update-save-failed-bound",
    "decision:requeue-stale-updates",
    "decision:merge-pending-changes",
    "decision:first-rejected-update-ends-the-load",
    "decision:102-with-proof-chain",
    "decision:own-clock-after-reconnect",
    "decision:invalid-session-proof-ignored",
]


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


class Fault(RuntimeError):
    """Raised by a faulted hook (the scenario asked for it)."""


class FaultyAdapter(YDocAdapter):
    """The pycrdt adapter, with hooks a scenario can make fail."""

    def __init__(self, doc: Doc, faults: set[str], **kw: Any):
        super().__init__(doc, **kw)
        self.faults = faults

    def _check(self, hook: str) -> None:
        if hook in self.faults:
            raise Fault(f"{hook} failed (scenario fault)")

    def apply_snapshot(self, content: bytes) -> None:
        self._check("applySnapshot")
        super().apply_snapshot(content)

    def apply_changes(self, changes: list[bytes]) -> None:
        self._check("applyChanges")
        super().apply_changes(changes)

    def serialize_changes(self, changes: list[bytes]) -> bytes:
        self._check("serializeChanges")
        return super().serialize_changes(changes)

    def deserialize_changes(self, data: bytes) -> list[bytes]:
        self._check("deserializeChanges")
        return deserialize_updates(data)

    def snapshot_content(self) -> bytes:
        self._check("snapshotContent")
        return super().snapshot_content()

    def apply_ephemeral(self, content: bytes, author: str) -> None:
        self._check("applyEphemeral")
        super().apply_ephemeral(content, author)


class MemoryKeyrings:
    """A keyring store in memory (the scenario's ``client.epochs``: keyring and seen)."""

    def __init__(self, keys: dict[str, str], seen: int | None):
        self.keys, self.seen = keys, seen

    def load(self, doc_id: str) -> tuple[Keyring, int | None]:
        return Keyring.from_json(self.keys), self.seen

    def save(self, doc_id: str, keyring: Keyring, seen: int | None) -> None:
        self.keys, self.seen = keyring.to_json(), seen


def _text_of(state: bytes | None = None) -> tuple[Doc, Text]:
    doc = Doc()
    text = doc.get("content", type=Text)
    if state:
        doc.apply_update(state)
    return doc, text


class Runner:
    def __init__(self, scenario: dict[str, Any]):
        self.sc = scenario
        self.doc_id = scenario["docId"]
        self.key = b64decode(scenario["key"])
        self.signers = {
            name: SigningKeyPair.from_seed(bytes.fromhex(k["seed"]))
            for name, k in scenario["keys"].items()
        }
        for name, k in scenario["keys"].items():
            assert self.signers[name].public_key_b64 == k["pubKey"], name
        self.bindings: dict[str, Any] = {n: kp.public_key_b64 for n, kp in self.signers.items()}
        self.names = {kp.public_key_b64: n for n, kp in self.signers.items()}
        self.faults: set[str] = set()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.delivered: list[list[str]] = []
        client = scenario["client"]
        self.doc = Doc(client_id=client["clientId"])
        self.text = self.doc.get("content", type=Text)
        if client.get("initialState"):
            self.doc.apply_update(b64decode(client["initialState"]))
        self.adapter = FaultyAdapter(
            self.doc,
            self.faults,
            on_local_update=lambda update: self.engine.add_changes([update]),
            on_ephemeral=lambda content, author: self.delivered.append(
                [b64encode(content), self.names.get(author, author)]
            ),
        )
        allowed = client.get("allowedClients")
        allowed_keys = None if allowed is None else {self.bindings[n] for n in allowed}
        policy = client.get("snapshotPolicy")
        known = client.get("knownSnapshot")
        self.engine = SyncEngine(
            self.doc_id,
            self._key,
            self.adapter,
            self.signers[client["signer"]],
            snapshot_policy=None if policy is None else self._policy(policy),
            is_valid_client=lambda pub, pd: self._valid(pub, allowed_keys),
            known_snapshot=None if known is None else KnownSnapshot.from_json(known),
            load_mode=client.get("loadMode", "delta"),
            write_heads=client.get("writeHeads", False),
            on_event=lambda kind, data: self.events.append((kind, data)),
            known_log_head=client.get("knownLogHead"),
            log_root=client.get("logRoot"),
            remembered=client.get("remembered"),
        )
        #: issue 12: the scenario's epoch keys (epoch 0: ``key``) and the engine's keyring
        self.epoch_keys = {0: self.key} | {
            int(e): b64decode(k) for e, k in scenario.get("epochKeys", {}).items()
        }
        epochs = client.get("epochs")
        if epochs is not None:
            self.engine.epochs = EpochKeys(
                self.doc_id,
                self.signers[client["signer"]],
                store=MemoryKeyrings(epochs.get("keyring", {}), epochs.get("seen")),
                keyring=Keyring.from_json(epochs.get("given", {})),
                epoch0_from_lockbox=epochs.get("epoch0FromLockbox", False),
            )
        #: the nonce of the latest reader-challenge fed to the engine
        self.challenge: str | None = None
        self.mirror, self.mirror_text = _text_of()
        self.peers: dict[str, EphemeralSession] = {}
        self.peer_sent: dict[str, list[dict[str, Any]]] = {}
        for name, p in scenario.get("peers", {}).items():
            self.peers[name] = EphemeralSession(
                p.get("docId", self.doc_id),
                b64decode(p["key"]) if "key" in p else self.key,
                self.signers[p["signer"]],
                session_id=p["sessionId"],
                counter=p["counter"],
            )
            self.peer_sent[name] = []
        self.engine_ephemeral: list[dict[str, Any]] = []

    # engine callbacks
    def _key(self, info: KnownSnapshot | None) -> bytes:
        if "key" in self.faults:
            raise Fault("key lookup failed (scenario fault)")
        return self.key

    def _valid(self, pub: str, allowed: set[str] | None) -> bool:
        if "isValidClient" in self.faults:
            raise Fault("author check failed (scenario fault)")
        return allowed is None or pub in allowed

    @staticmethod
    def _policy(spec: dict[str, int]):
        max_updates = spec.get("maxUpdates", math.inf)
        max_bytes = spec.get("maxUpdateBytes", math.inf)

        def policy(info: SnapshotPolicyInfo) -> bool:
            return (
                info.updates_since_snapshot >= max_updates
                or info.update_bytes_since_snapshot >= max_bytes
            )

        return policy

    # substitution of "$name"
    def sub(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("$"):
            assert value[1:] in self.bindings, f"unbound {value}"
            return self.bindings[value[1:]]
        if isinstance(value, dict):
            return {self.sub(k): self.sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        return value

    # steps
    def run(self) -> None:
        for index, step in enumerate(self.sc["steps"]):
            try:
                self.step(step)
            except AssertionError as exc:
                raise AssertionError(
                    f"{self.sc['name']} step {index} ({json.dumps(step)[:300]}): {exc}"
                ) from exc

    def _feed(self, frame: dict[str, Any] | str) -> None:
        self.engine.receive(frame if isinstance(frame, str) else json.dumps(frame))

    def _peer_feed(self, name: str, message: EphemeralMessage) -> None:
        frame = {**message.to_json(), "type": "ephemeral-message"}
        self.peer_sent[name].append(frame)
        self._feed(frame)

    def step(self, step: dict[str, Any]) -> None:
        self.events = []
        do = step["do"]
        expect = step.get("expect", {})
        engine = self.engine
        result: Any = None
        thrown: str | None = None
        if do == "connect":
            engine.connecting()
            engine.connected()
        elif do == "disconnect":
            engine.disconnected()
        elif do == "close":
            engine.close()
        elif do == "receive":
            mirror = step.get("mirror") or {}
            if "reset" in mirror:
                self.mirror, self.mirror_text = _text_of(b64decode(mirror["reset"]))
            for update in mirror.get("apply", []):
                self.mirror.apply_update(b64decode(update))
            frame = step.get("frame")
            if isinstance(frame, dict) and frame.get("type") == "reader-challenge":
                self.challenge = frame.get("nonce")
            self._feed(self.sub(frame) if "frame" in step else step["text"])
        elif do == "edit":
            with self.doc.transaction():
                if "insert" in step:
                    index, value = step["insert"]
                    self.text.insert(index, value)
                else:
                    index, length = step["delete"]
                    del self.text[index : index + length]
        elif do == "flush":
            engine.flush()
        elif do == "requestSnapshot":
            engine.request_snapshot()
        elif do == "appendEntry":
            try:
                engine.append_entry(step["entry"], lockboxes=step.get("lockboxes"))
            except ProtocolError as exc:
                thrown = exc.code
        elif do == "sendEphemeral":
            result = engine.send_ephemeral(b64decode(step["content"]))
        elif do == "addEpochKey":
            engine.epochs.add_key(step["epoch"], b64decode(step["key"]))
        elif do == "fault":
            (self.faults.add if step["on"] else self.faults.discard)(step["hook"])
        elif do == "peer":
            self._peer_step(step)
        elif do == "tick":
            engine.tick(step["now"])
        elif do == "backoff":
            result = backoff_delay(step["retries"]) * 1000
        elif do == "policy":
            info = step["info"]
            result = default_snapshot_policy(
                SnapshotPolicyInfo(
                    "s", info["updatesSinceSnapshot"], info["updateBytesSinceSnapshot"], 1
                )
            )
        else:
            raise AssertionError(f"unknown step {do!r}")
        assert thrown == expect.get("throws"), f"threw {thrown}, expected {expect.get('throws')}"
        self.check(expect, engine.take_outbox(), result)

    def _peer_step(self, step: dict[str, Any]) -> None:
        name = step["peer"]
        session = self.peers[name]
        if "send" in step:
            if step["send"] == "initialize":
                message = session.initialize()
            else:
                message = session.create(b64decode(step["content"]))
            self._peer_feed(name, message)
        elif step.get("answer"):
            assert self.engine_ephemeral, "the engine sent no ephemeral message to answer"
            received = session.receive(EphemeralMessage.from_json(self.engine_ephemeral[-1]))
            assert received.error is None, received.error
            if received.reply is not None:
                self._peer_feed(name, received.reply)
        else:
            self._feed(self.peer_sent[name][-step["replay"]])

    # checks
    def check(self, expect: dict[str, Any], frames: list[str], result: Any) -> None:
        self.check_sent(self.sub(expect.get("sent", [])), [json.loads(f) for f in frames])
        e = self.engine
        actual = {
            "state": lambda: e.state,
            "documentState": lambda: e.document_state,
            "errors": lambda: [x.code for x in e.errors],
            "ephemeralErrors": lambda: [x.code for x in e.ephemeral_errors],
            "ephemeralAuthoringErrors": lambda: [x.code for x in e.ephemeral_authoring_errors],
            "reconnectRequested": lambda: e.reconnect_requested,
            "isSynced": lambda: e.is_synced,
            "servedIncompletely": lambda: e.served_incompletely,
            "pending": lambda: len(e.pending),
            "text": lambda: str(self.text),
            "delivered": lambda: self.delivered,
            "activeSnapshot": lambda: e.active.snapshot_id if e.active else None,
            "activeClocks": lambda: dict(e.active.update_clocks) if e.active else None,
            "connectionParams": self._params,
            "returns": lambda: result,
            "role": lambda: e.role,
            "readOnly": lambda: e.read_only,
            "logHead": lambda: e.log.head.to_json() if e.log is not None else None,
            "rememberedLog": self._remembered_log,
            # issue 13: the remembered state given could not be adopted (807)
            "rememberedDamaged": lambda: e.remembered_damaged is not None,
            "rememberedSnapshot": self._remembered_snapshot,
            "keyringEpochs": lambda: e.epochs.keyring.epochs,
            "seenEpoch": lambda: e.epochs.seen,
        }
        for field, want in expect.items():
            want = self.sub(want)
            if field in ("sent", "throws"):
                continue
            if field == "events":
                self.check_events(want)
            elif field == "delayMs":
                assert math.isclose(result, want, rel_tol=1e-9), f"delay {result} != {want}"
            elif field == "snapshot":
                assert result is want, f"policy says {result}, expected {want}"
            else:
                got = actual[field]()
                assert got == want, f"{field}: {got!r} != {want!r}"

    def _remembered_log(self) -> int | None:
        """How many log entries the state to remember holds (None: no state or no log)."""
        state = self.engine.remembered_state()
        return None if state is None or "log" not in state else len(state["log"])

    def _remembered_snapshot(self) -> str | None:
        """The active snapshot of the state to remember (None: no state or no snapshot)."""
        state = self.engine.remembered_state()
        return (
            None if state is None or state["snapshot"] is None else state["snapshot"]["snapshotId"]
        )

    def _params(self) -> dict[str, Any]:
        params = dict(self.engine.connection_params())
        if "knownSnapshotUpdateClocks" in params:
            params["knownSnapshotUpdateClocks"] = json.loads(params["knownSnapshotUpdateClocks"])
        return params

    def check_events(self, want: list[Any]) -> None:
        got = []
        for kind, data in self.events:
            if kind == "error":
                fields = {"code": data["error"].code, "fatal": data["fatal"]}
            else:
                fields = {_camel(k): v for k, v in data.items()}
            got.append((kind, fields))
        names = [k for k, _ in got]
        assert names == [n for n, _ in want], f"events {got} != {want}"
        for (kind, fields), (_, wanted) in zip(got, want, strict=True):
            for k, v in wanted.items():
                assert fields.get(k) == v, f"event {kind}.{k}: {fields.get(k)!r} != {v!r}"

    def check_sent(self, expected: list[dict[str, Any]], frames: list[dict[str, Any]]) -> None:
        kinds = [frame_kind(f) for f in frames]
        assert kinds == [x["kind"] for x in expected], f"sent {kinds}, expected {expected}"
        for want, frame in zip(expected, frames, strict=True):
            if want["kind"] == "reader-proof":
                assert self.challenge is not None, "a reader proof without a challenge"
                proven = verify_reader_proof(frame, self.doc_id, self.challenge)
                assert proven == want["pubKey"], f"reader proof by {proven}"
                assert set(frame) == {"type", "pubKey", "signature"}, frame
                continue
            if want["kind"] == "log-entry":
                lockboxes = {"lockboxes": want["lockboxes"]} if "lockboxes" in want else {}
                assert frame == {"type": "log-entry", "entry": want["entry"], **lockboxes}, frame
                continue
            key = self.epoch_keys[want.get("epoch", 0)]  # issue 12: the epoch's key
            if want["kind"] == "ephemeral":
                for k, v in want.get("publicData", {}).items():
                    got = frame["publicData"].get(k)
                    assert got == self.sub(v), f"publicData.{k}: {got!r} != {v!r}"
                self.engine_ephemeral.append(frame)
                decoded = decrypt_ephemeral(EphemeralMessage.from_json(frame), key)
                assert EPHEMERAL_TYPES[decoded.type] == want["ephemeralType"]
                if "content" in want:
                    assert b64encode(decoded.content) == want["content"]
                if "heads" in want:
                    assert decoded.content.startswith(HEADS_PREFIX), decoded.content[:20]
                    heads = json.loads(decoded.content[len(HEADS_PREFIX) :])
                    assert heads == want["heads"], f"heads {heads} != {want['heads']}"
                continue
            pd = frame["publicData"]
            for k, v in want.get("publicData", {}).items():
                assert pd.get(k) == self.sub(v), f"publicData.{k}: {pd.get(k)!r} != {v!r}"
            if want["kind"] == "snapshot":
                content = verify_and_decrypt_snapshot(
                    Snapshot.from_json(frame), self.epoch_keys[pd.get("epoch", 0)], self.doc_id
                )
                if "bind" in want:
                    self.bindings[want["bind"]] = pd["snapshotId"]
                self.mirror, self.mirror_text = _text_of(content)
            else:
                content = verify_and_decrypt_update(
                    Update.from_json(frame),
                    key,
                    pd["refSnapshotId"],
                    pd["clock"] - 1,
                    current_doc_id=self.doc_id,
                )
                changes = deserialize_updates(content)
                if "changes" in want:
                    assert len(changes) == want["changes"], f"{len(changes)} changes"
                for change in changes:
                    self.mirror.apply_update(change)
            if "text" in want:
                assert str(self.mirror_text) == want["text"], (
                    f"{want['kind']} content: {str(self.mirror_text)!r} != {want['text']!r}"
                )


def _load(path: pathlib.Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _check_plan(plan: JoinPlan, want: dict[str, Any], joiner: SigningKeyPair) -> None:
    """A link join's plan against ``expect`` (README.md, "Joining through a link")."""
    head = plan.state.head
    assert {"seq": head.seq, "hash": head.hash} == want["logHead"]
    assert plan.joined is want["joined"]
    assert plan.role == want["role"]
    assert plan.keyring.epochs == want["keyringEpochs"]
    assert (plan.entry.to_json() if plan.entry else None) == want["entry"]
    if want["lockbox"] is None:
        assert plan.lockbox is None
        return
    box = plan.lockbox.to_json()
    assert set(box) == {"docId", "epoch", "recipient", "box"}
    assert (box["docId"], box["epoch"], box["recipient"]) == (
        plan.state.doc_id,
        want["lockbox"]["epoch"],
        want["lockbox"]["recipient"],
    )
    # sealed to the joiner itself: it opens with the joiner's key and holds the epoch's key
    assert b64encode(open_lockbox(plan.state, joiner, box)) == want["lockbox"]["key"]


def run_link_join(sc: dict[str, Any]) -> None:
    """A ``"kind": "link-join"`` scenario through ``plan_join`` (and ``plan_on`` after a race)."""
    link = link_keypair(sc["link"]["secret"])
    joiner = SigningKeyPair.from_seed(bytes.fromhex(sc["joiner"]["seed"]))
    me = joiner.public_key_b64
    assert me == sc["joiner"]["pubKey"]
    want = sc["expect"]
    if "error" in want:
        with pytest.raises(MembershipError) as info:
            plan_join(sc["frame"], link, me, sc["docId"], sc["now"], name=sc["memberName"])
        assert info.value.code == want["error"]
        assert info.value.field == want["field"]
        assert str(info.value).strip()  # said in words
        return
    plan = plan_join(sc["frame"], link, me, sc["docId"], sc["now"], name=sc["memberName"])
    _check_plan(plan, want, joiner)
    race = sc.get("race")
    if race is not None:  # log-entry-failed 707 with the relay's log: rebuild on the new head
        state = extend_log(plan.state, [e for e in race["log"] if e["seq"] > plan.state.head.seq])
        again = plan_on(state, plan.keyring, link, me, race["now"], name=sc["memberName"])
        _check_plan(again, race["expect"], joiner)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path):
    sc = _load(path)
    if sc.get("kind") == "link-join":
        run_link_join(sc)
    else:
        Runner(sc).run()


def test_scenarios_cover_every_client_error_code_and_decision():
    covered = {c for p in FILES for c in _load(p)["covers"]}
    assert len(FILES) >= 70
    assert [c for c in CLIENT_CODES if c not in covered] == []
    assert [c for c in MEMBERSHIP_CODES if c not in covered] == []
    assert [c for c in HEADS_CODES if c not in covered] == []
    assert [c for c in EPOCH_CODES if c not in covered] == []
    assert [d for d in DECISIONS if d not in covered] == []
    for rule in (
        "rule:update-save-failed",
        "rule:snapshot-save-failed",
        "rule:snapshot-policy",
        "rule:batching",
        "rule:reconnect-delta",
        "rule:offline-edits",
        "rule:ephemeral-session",
        "rule:link-join",
        "rule:link-join-role",
        "rule:link-join-already-member",
        "rule:link-join-rebuild",
    ):
        assert rule in covered, rule


def test_scenario_files_are_up_to_date():
    """The checked-in files are exactly what make_scenarios.py writes (deterministic)."""
    spec = importlib.util.spec_from_file_location("make_scenarios", SCENARIOS / "make_scenarios.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = module.build_all()
    assert sorted(files) == sorted(p.name for p in FILES)
    for name, text in files.items():
        assert (SCENARIOS / name).read_text() == text, name
