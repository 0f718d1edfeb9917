"""One configuration table (secsync_jupyter/relay/config.py) feeds both the standalone relay's
flags and the Jupyter extension's traitlets; the store is chosen by URL."""

from __future__ import annotations

import asyncio
import os

import pytest

from secsync_jupyter.protocol import generate_id
from secsync_jupyter.relay import MemoryStore, RelayStore, SQLiteStore, config, store_from_url
from secsync_jupyter.relay.extension import SecsyncRelayExtension
from secsync_jupyter.relay.standalone import build_parser

from .util import Author, RelayProcess, open_doc, seed


def test_every_setting_is_a_flag_and_a_traitlet_with_the_same_default():
    flags = {a.dest: a for a in build_parser()._actions if a.option_strings}
    traits = SecsyncRelayExtension.class_traits(config=True)
    rows = config.settings()
    assert {s.name for s in rows} >= {
        "max_frame_bytes",
        "max_document_bytes",
        "max_send_buffer_bytes",
        "store",
        "synchronous",
        "access_policy",
    }
    for s in rows:
        assert s.flag is not None or s.trait is not None, s.name
        if s.flag is not None:
            action = flags[s.name]
            assert action.option_strings == [s.flag]
            assert action.default == s.default, s.name
            assert action.help.startswith(s.help), s.name
        if s.trait is not None:
            trait = traits[s.trait]
            assert trait.help == s.help, s.name
            if s.trait != "db_path":  # the extension's database lives in Jupyter's data dir
                assert SecsyncRelayExtension().trait_defaults(s.trait) == s.default, s.name
    # the transport-only settings are where they belong
    assert "max_connections" in flags and "max_connections" not in traits
    assert "allowed_authors" in traits and "allowed_authors" not in flags


def test_traitlets_and_flags_give_the_same_configuration(tmp_path):
    values = {"max_documents": 7, "max_document_bytes": 12345, "synchronous": "normal"}
    ext_limits, ext_options = config.from_traits(SecsyncRelayExtension(store="memory:", **values))
    parser = build_parser()
    args = parser.parse_args(
        [
            "--open",
            "--store",
            "memory:",
            "--max-documents",
            "7",
            "--max-document-bytes",
            "12345",
            "--synchronous",
            "normal",
        ]
    )
    cli_limits, cli_options = config.from_args(parser, args)
    for name, value in values.items():
        group = ext_limits if hasattr(ext_limits, name) else ext_options
        assert getattr(group, name) == value
    assert ext_limits.max_frame_bytes == cli_limits.max_frame_bytes
    assert ext_limits.max_documents == cli_limits.max_documents == 7
    assert ext_options.store == cli_options.store == "memory:"
    assert isinstance(config.open_store(ext_options), MemoryStore)
    with pytest.raises(ValueError, match="max_documents must be at least 1"):
        config.from_traits(SecsyncRelayExtension(max_documents=0))


class CustomStore(MemoryStore):
    """A store named by its class path; it keeps the URL it was made from."""

    @classmethod
    def from_url(cls, url, **options):
        store = cls()
        store.url = url
        store.options = options
        return store


def test_store_chosen_by_url(tmp_path):
    assert isinstance(store_from_url("memory:"), MemoryStore)
    relative = store_from_url("sqlite:///relay-x.sqlite", synchronous="normal")
    assert isinstance(relative, SQLiteStore) and relative.path == "relay-x.sqlite"
    assert relative.synchronous == "normal"
    absolute = store_from_url(f"sqlite:///{tmp_path}/r.sqlite")
    assert absolute.path == f"{tmp_path}/r.sqlite"
    assert store_from_url(str(tmp_path / "plain.sqlite")).path == str(tmp_path / "plain.sqlite")
    custom = store_from_url(f"{__name__}:CustomStore?dsn=x", synchronous="full")
    assert isinstance(custom, CustomStore) and custom.url == f"{__name__}:CustomStore?dsn=x"
    assert custom.options["synchronous"] == "full"
    with pytest.raises(ValueError, match="unknown store 'mysql://db/x'"):
        store_from_url("mysql://db/x")
    with pytest.raises(ValueError, match="not a RelayStore"):
        store_from_url("json.decoder:JSONDecoder")
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        store_from_url("sqlite:relative")
    assert issubclass(CustomStore, RelayStore)


@pytest.mark.asyncio
async def test_standalone_relay_on_the_memory_store(tmp_path):
    """``secsync-relay --store memory:`` serves documents and writes no database file."""
    relay = RelayProcess(str(tmp_path / "unused.sqlite"), "--store", "memory:")
    await asyncio.to_thread(relay.start)
    try:
        a = Author(generate_id())
        await seed(relay.url, a, 1)
        _, doc = await open_doc(relay.url, a.doc_id)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
    finally:
        relay.stop()
    assert not os.path.exists(tmp_path / "unused.sqlite")
