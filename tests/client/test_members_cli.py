"""``secsync-jupyter identity`` and ``secsync-jupyter members`` (issue 11): the identity file
(mode 0600, refused when others may read it), bad input (clear one-line errors, exit code 1,
nothing sent), and the members commands against our relay on loopback."""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from secsync_jupyter.cli import main
from secsync_jupyter.client.identity_file import create_identity, load_identity
from secsync_jupyter.protocol import generate_key
from secsync_jupyter.protocol.identity import parse_identity
from secsync_jupyter.sharelink import format_share_link


def _last_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"secsync-jupyter {command}: error: "), err
    return last


def test_identity_creates_a_private_file_and_shows_it(tmp_path, capsys, monkeypatch):
    path = tmp_path / "conf" / "id.json"
    assert main(["identity", "--path", str(path), "--name", "Ada Lovelace"]) == 0
    out = capsys.readouterr()
    identity = parse_identity(out.out.strip())
    assert identity.name == "Ada Lovelace"
    assert "created" in out.err and str(path) in out.err
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o077 == 0
    assert load_identity(path).pub_key == identity.pub_key
    # shown again, unchanged; --json
    assert main(["identity", "--path", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["identity"] == str(identity) and shown["path"] == str(path)
    assert shown["fingerprint"] == identity.fingerprint
    # the default path: $SECSYNC_IDENTITY, else $XDG_CONFIG_HOME/secsync-jupyter/identity.json
    monkeypatch.delenv("SECSYNC_IDENTITY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert main(["identity"]) == 0
    default = tmp_path / "xdg" / "secsync-jupyter" / "identity.json"
    assert default.stat().st_mode & 0o777 == 0o600
    assert parse_identity(capsys.readouterr().out.strip()).pub_key == load_identity(default).pub_key


def test_identity_file_readable_by_others_is_refused(tmp_path, capsys):
    path = tmp_path / "id.json"
    create_identity(path)
    before = path.read_bytes()
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        assert main(["identity", "--path", str(path)]) == 1
        last = _last_error(capsys, "identity")
        assert f"mode {mode:04o}" in last and "chmod 600" in last
    assert path.read_bytes() == before  # never replaced
    os.chmod(path, 0o600)
    assert main(["identity", "--path", str(path), "--name", "Other"]) == 1
    assert "already exists" in _last_error(capsys, "identity")
    path.write_text("{not json")
    assert main(["identity", "--path", str(path)]) == 1
    assert "not JSON" in _last_error(capsys, "identity")
    other = tmp_path / "other.json"
    assert main(["identity", "--path", str(other), "--name", "bad\u202ename"]) == 1
    assert "invalid name" in _last_error(capsys, "identity")
    assert not other.exists()
    create_identity(other)
    mixed = json.loads(other.read_text())
    mixed["pubKey"] = create_identity(tmp_path / "third.json").pub_key  # another key's
    other.write_text(json.dumps(mixed))
    assert main(["identity", "--path", str(other)]) == 1
    assert "does not match" in _last_error(capsys, "identity")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["members", "add", "LINK", "secsync-id:1:nonsense", "--role", "viewer"], "730"),
        (["members", "add", "LINK", "IDENT-BAD-FP", "--role", "viewer"], "731"),
        (["members", "add", "LINK", "not-an-identity", "--role", "viewer"], "identity string"),
        (["members", "add", "LINK", "IDENT"], "needs --role"),
        (["members", "remove", "LINK", "IDENT", "--role", "viewer"], "takes no --role"),
        (["members", "add", "LINK"], "expected: members add [LINK] MEMBER"),
        (["members", "LINK", "extra"], "expected: members [LINK]"),
    ],
    ids=[
        "malformed",
        "fingerprint",
        "not-identity",
        "no-role",
        "role-on-remove",
        "no-member",
        "extra",
    ],
)
def test_members_bad_input_is_a_clear_error(argv, message, capsys):
    from secsync_jupyter.protocol import SigningKeyPair
    from secsync_jupyter.protocol.identity import format_identity

    good = format_identity(SigningKeyPair.generate().public_key, "Bob")
    bad_fp = good.replace(good.split(":")[3], "0000000000000000")
    link = format_share_link("m1_" + "A" * 43, generate_key(), relay="ws://127.0.0.1:9")
    subst = {"LINK": link, "IDENT": good, "IDENT-BAD-FP": bad_fp}
    assert main([subst.get(a, a) for a in argv]) == 1
    assert message in _last_error(capsys, "members")


def test_members_role_must_be_a_known_role(capsys):
    with pytest.raises(SystemExit) as info:
        main(["members", "add", "x", "y", "--role", "owner"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_members_list_add_set_role_remove(relay, tmp_path, capsys, identity_file):
    if relay.kind == "ref":
        # the reference relay does not speak the membership frames: a log document cannot be
        # created there (the client fails clearly instead of writing without a log)
        src = tmp_path / "n.ipynb"
        nbformat.write(nbformat.v4.new_notebook(), src)
        assert main(["import", str(src), relay.url, "--timeout", "10"]) == 1
        assert "SECSYNC_ERROR_706" in _last_error(capsys, "import")
        return
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    link_file = tmp_path / "link"
    assert main(["import", str(src), relay.url, "--link-out", str(link_file)]) == 0
    capsys.readouterr()

    assert main(["members", "--link-file", str(link_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("owner") and "Test (you)" in out[0]

    bob_path = tmp_path / "bob.json"
    bob = create_identity(bob_path, name="Bob")
    assert (
        main(["members", "add", str(bob), "--role", "viewer", "--link-file", str(link_file)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("viewer") and "Bob" in lines[1]
    assert bob.fingerprint in lines[1] and "added by Test" in lines[1]

    # Bob reads it (a member, as a viewer), cannot change members (not an admin): 712
    assert main(["cat", "--link-file", str(link_file), "--identity", str(bob_path)]) == 0
    assert "x = 1" in capsys.readouterr().out
    assert (
        main(
            [
                "members",
                "add",
                str(create_identity(tmp_path / "c.json")),
                "--role",
                "viewer",
                "--link-file",
                str(link_file),
                "--identity",
                str(bob_path),
            ]
        )
        == 1
    )
    assert "SECSYNC_ERROR_712" in _last_error(capsys, "members")

    assert (
        main(
            ["members", "set-role", bob.pub_key, "--role", "editor", "--link-file", str(link_file)]
        )
        == 0
    )
    assert "editor" in capsys.readouterr().out.splitlines()[1]
    assert main(["members", "--json", "--link-file", str(link_file)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["role"], m["owner"]) for m in listed] == [
        ("Test", "admin", True),
        ("Bob", "editor", False),
    ]
    assert main(["members", "remove", str(bob), "--link-file", str(link_file)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    # removed: Bob gets a clear refusal at once, not an endless reconnect
    assert (
        main(["cat", "--link-file", str(link_file), "--identity", str(bob_path), "--timeout", "20"])
        == 1
    )
    assert "SECSYNC_ERROR_722" in _last_error(capsys, "cat")
