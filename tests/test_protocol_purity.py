"""The protocol core is sans-IO: none of its modules imports I/O libraries."""

import ast
import pathlib
import subprocess
import sys

import secsync_jupyter.protocol as protocol

FORBIDDEN = {
    "asyncio",
    "tornado",
    "sqlite3",
    "socket",
    "websockets",
    "aiosqlite",
    "selectors",
    "ssl",
    "http",
    "urllib",
    "subprocess",
    "threading",
    "concurrent",
    "jupyter_server",
}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_io_imports_in_source():
    pkg = pathlib.Path(protocol.__file__).parent
    files = sorted(pkg.glob("*.py"))
    assert len(files) >= 8
    for f in files:
        bad = _imports(f) & FORBIDDEN
        assert not bad, f"{f.name} imports {bad}"


def test_importing_protocol_loads_no_io_module():
    code = (
        "import sys; import secsync_jupyter.protocol; "
        f"bad = sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
