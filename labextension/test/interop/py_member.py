"""A Python-client member for the browser's membership tests (run with the repository's .venv).

    python py_member.py <relay base>

JSON lines on stdin, one answer per line on stdout ({"ok": true, ...} or {"ok": false,
"error", "code"}). The peer has its own identity (a fresh signing key) and one document:

  {"op": "identity"}                         -> {"identity"}
  {"op": "create", "name"}                   -> {"docId", "key"}   (Python owns the new log)
  {"op": "open", "docId", "key"}             -> {}
  {"op": "add", "identity", "role"} / {"op": "setRole", "pubKey", "role"}
  {"op": "remove", "pubKey"}                 (an admin's removal rotates the key, issue 12)
  {"op": "append", "text"}                   -> {}  (acknowledged by the relay)
  {"op": "waitText", "text"} / {"op": "waitRole", "role"}
  {"op": "state"}                            -> {"text", "role", "readOnly", "errors", "state",
                                                 "epoch", "keyring"}
"""

import asyncio
import base64
import json
import sys

from pycrdt import Text

from secsync_jupyter.client import open_document
from secsync_jupyter.client.document import create_document
from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.crypto import generate_key
from secsync_jupyter.protocol.identity import format_identity


async def main() -> None:
    base = sys.argv[1]
    keypair = SigningKeyPair.generate()
    doc = None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def text() -> Text:
        return doc.doc.get("content", type=Text)

    async def handle(req: dict) -> dict:
        nonlocal doc
        op = req["op"]
        if op == "identity":
            return {
                "identity": format_identity(keypair.public_key_b64, "Py"),
                "pubKey": keypair.public_key_b64,
            }
        if op == "create":
            key = generate_key()
            doc = await create_document(base, key, identity=keypair, name=req.get("name"))
            return {"docId": doc.doc_id, "key": base64.urlsafe_b64encode(key).decode().rstrip("=")}
        if op == "open":
            doc = await open_document(base, req["docId"], req["key"], identity=keypair)
            return {}
        if op == "add":
            await doc.add_member(req["identity"], req["role"], timeout=20)
            return {}
        if op == "setRole":
            await doc.set_role(req["pubKey"], req["role"], timeout=20)
            return {}
        if op == "remove":
            await doc.remove_member(req["pubKey"], timeout=20)
            return {}
        if op == "append":
            t = text()
            t += req["text"]
            await doc.synced(timeout=20)
            return {}
        if op == "waitText":
            await doc.wait_for(lambda: req["text"] in str(text()), timeout=20)
            return {}
        if op == "waitRole":
            await doc.wait_for(lambda: doc.role == req["role"], timeout=20)
            return {}
        if op == "state":
            return {
                "text": str(text()),
                "role": doc.role,
                "readOnly": doc.engine.read_only,
                "errors": [e.code for e in doc.errors],
                "state": doc.state,
                # issue 12: the log's current epoch and the epochs whose keys it holds
                "epoch": doc.engine.log.epoch if doc.engine.log is not None else None,
                "keyring": doc.engine.epochs.keyring.epochs if doc.engine.epochs else None,
            }
        raise ValueError(f"unknown op {op}")

    while line := await reader.readline():
        req = json.loads(line)
        try:
            answer = {"ok": True, **(await handle(req))}
        except Exception as exc:  # the test reads the error
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            answer["code"] = getattr(exc, "code", None)
        print(json.dumps(answer), flush=True)
    if doc is not None:
        await doc.close()


asyncio.run(main())
