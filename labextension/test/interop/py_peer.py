"""A Python-client peer for the engine tests (run with the repository's .venv).

    python py_peer.py <relay base> <docId> <key b64> <wait-for-text> <append-text> <js-pubkey>

Opens the document with secsync_jupyter.client, waits until Y.Text("content") contains
<wait-for-text> and the browser client's awareness state (signed by <js-pubkey>) is visible,
appends <append-text>, waits until it is acknowledged, sets its awareness user name, stays a
moment so the other side sees it, and prints {"text", "collaborators"} as JSON.
"""

import asyncio
import json
import sys

from pycrdt import Text

from secsync_jupyter.client import open_document


async def main() -> None:
    base, doc_id, key, wait_for, append, js_pub = sys.argv[1:7]
    async with open_document(base, doc_id, key, user={"name": "py-peer"}) as d:
        text = d.doc.get("content", type=Text)
        await d.wait_for(
            lambda: wait_for in str(text) and any(c.pub_key == js_pub for c in d.collaborators),
            timeout=20,
        )
        text += append
        await d.synced(timeout=20)
        await asyncio.sleep(0.5)
        collaborators = [
            {"pubKey": c.pub_key, "name": c.name, "self": c.is_self} for c in d.collaborators
        ]
        print(json.dumps({"text": str(text), "collaborators": collaborators}), flush=True)


asyncio.run(main())
