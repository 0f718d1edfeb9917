"""Issue 13, no false alarm: an honest relay (ours, on loopback) under load — several editors of
a document with a membership log typing at once, random disconnects, concurrent snapshots,
a client closed and reopened from its state file — gives ZERO reports (no 801-806, no alert),
with heads exchanged far more often than by default (every 0.5 s, grace 3 s)."""

from __future__ import annotations

import asyncio
import random

import pytest

from secsync_jupyter.client import create_notebook, open_notebook
from secsync_jupyter.client.identity_file import create_identity
from secsync_jupyter.client.state_file import load_remembered

from .conftest import Relay
from .util import until

pytestmark = pytest.mark.asyncio

HEADS = {"heads_grace": 3.0, "heads_interval": 0.5, "awareness": False}
ROUNDS = 60


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    relay = Relay("ours", tmp_path_factory.mktemp("heads-soak-relay"))
    yield relay
    relay.stop()


def reports(nb):
    return [e.code for e in nb.errors if (e.code or "").startswith("SECSYNC_ERROR_8")]


async def test_soak_honest_relay_gives_no_report(ours, tmp_path):
    rng = random.Random(13)
    owner = create_identity(tmp_path / "owner.json", name="Owner")
    users = [create_identity(tmp_path / f"u{i}.json", name=f"U{i}") for i in range(3)]
    states = [tmp_path / f"state{i}.json" for i in range(4)]
    nbs = []
    try:
        nbs.append(await create_notebook(ours.url, identity=owner, state_file=states[0], **HEADS))
        link = nbs[0].share_link
        nbs[0].add_code_cell("start")
        await nbs[0].create_snapshot(timeout=20)
        for u in users:
            await nbs[0].add_member(str(u), "editor", timeout=20)
        for i, u in enumerate(users, 1):
            nbs.append(await open_notebook(link, identity=u, state_file=states[i], **HEADS))
        identities = [owner, *users]

        for round_ in range(ROUNDS):
            i = rng.randrange(len(nbs))
            nb = nbs[i]
            roll = rng.random()
            if roll < 0.6:
                nb.add_code_cell(f"c{round_} by {i}")
            elif roll < 0.75 and len(nb.cells) > 1:
                nb.cells[rng.randrange(len(nb.cells))].source += f" e{round_}"
            elif roll < 0.85:
                nb.document.reconnect()  # a random disconnect
            elif roll < 0.93:
                # concurrent snapshots: two clients at once (one wins, the other retries)
                j = (i + 1) % len(nbs)
                await asyncio.gather(
                    nb.document.create_snapshot(timeout=30),
                    nbs[j].document.create_snapshot(timeout=30),
                )
            else:
                # closed and reopened from its state file: checked against it, log delta
                await nb.close()
                nbs[i] = await open_notebook(
                    link, identity=identities[i], state_file=states[i], **HEADS
                )
                assert nbs[i].document.engine.last_document["logFrom"] > 0  # only the delta
            await asyncio.sleep(rng.uniform(0.05, 0.3))

        for nb in nbs:
            await nb.synced(30)
        want = nbs[0].to_dict()["cells"]
        await until(
            lambda: all(nb.to_dict()["cells"] == want for nb in nbs),
            *[nb.document for nb in nbs],
            timeout=30,
        )
        # every claim a peer's heads made is met (none left open), nothing was reported
        await until(
            lambda: all(not nb.document.engine.claims for nb in nbs),
            *[nb.document for nb in nbs],
            timeout=30,
        )
        assert [reports(nb) for nb in nbs] == [[]] * len(nbs)
        assert [nb.alerts for nb in nbs] == [[]] * len(nbs)
        # the heads really went around: everyone has everyone else's, and (read
        # notifications) everyone has seen everyone's last acknowledged update
        for nb in nbs:
            assert len(nb.document.peer_heads) == len(nbs) - 1
        await until(
            lambda: all(
                len(nb.document.seen_by) == len(nbs) - 1 and all(nb.document.seen_by.values())
                for nb in nbs
            ),
            *[nb.document for nb in nbs],
            timeout=30,
        )
    finally:
        for nb in nbs:
            await nb.document.close(wait_synced=False)
    for state in states:
        mem = load_remembered(state, nbs[0].doc_id)
        assert mem is not None and mem["logHead"]["seq"] == 3 and len(mem["log"]) == 4
