"""A real JupyterHub on loopback, started by the tests: configurable-http-proxy (npm, in
.venv/hub/, ``make hub``), the DummyAuthenticator with a password, SimpleLocalProcessSpawner,
and the relay as a managed service (``secsync-relay --auth hub``) at ``/services/secsync-relay/``.

Users ``alice`` and ``bob`` hold the service's access scope (a role); ``carol`` does not. A
second service, ``test-admin``, only lets the tests create users and their API tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
#: where ``make hub`` installs configurable-http-proxy
CHP_BIN = ROOT / ".venv" / "hub" / "node_modules" / ".bin"
SERVICE = "secsync-relay"
PASSWORD = "hub-test-password"
MEMBERS = ("alice", "bob")
OUTSIDER = "carol"
PLUGIN_ID = "secsync-jupyter:plugin"
START_TIMEOUT = 120.0


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _chp() -> str:
    found = shutil.which(
        "configurable-http-proxy", path=f"{CHP_BIN}{os.pathsep}{os.environ['PATH']}"
    )
    if found is None:
        pytest.fail(
            "configurable-http-proxy is missing: run `make hub` "
            "(npm install --prefix .venv/hub configurable-http-proxy@5)"
        )
    return found


@dataclass
class Hub:
    """A running JupyterHub with the relay as a service."""

    url: str  # the proxy's public URL, http://127.0.0.1:PORT
    dir: Path
    admin_token: str
    relay_db: Path
    log_path: Path
    proc: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def relay_url(self) -> str:
        return "ws" + self.url[4:] + f"/services/{SERVICE}"

    @property
    def hub_db(self) -> Path:
        return self.dir / "jupyterhub.sqlite"

    @property
    def users_dir(self) -> Path:
        return self.dir / "users"

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kw
        )

    def token(self, user: str) -> str:
        """An API token of ``user`` with the user's own permissions (created once)."""
        if user not in self.tokens:
            r = self.api("POST", f"/users/{user}/tokens", json={"note": "secsync test"})
            assert r.status_code == 201, r.text
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def login(self, user: str) -> requests.Session:
        """A browser-like session logged in to the Hub as ``user`` (the login form)."""
        s = requests.Session()
        page = s.get(f"{self.url}/hub/login", timeout=60)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, page.text[:500]
        r = s.post(
            f"{self.url}/hub/login?next=/hub/home",
            data={"username": user, "password": PASSWORD, "_xsrf": xsrf.group(1)},
            timeout=60,
            allow_redirects=False,
        )
        assert r.status_code == 302, (r.status_code, r.text[:500])
        return s

    def start_server(self, user: str) -> None:
        """Start ``user``'s single-user server (JupyterLab) and wait until it is ready."""
        r = self.api("POST", f"/users/{user}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return
            if not server.get("pending") and not server.get("ready") and model.get("servers") == {}:
                raise AssertionError(f"{user}'s server did not start:\n{self.log()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(
            f"{user}'s server not ready in {START_TIMEOUT} s:\n{self.log()[-4000:]}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait(url: str, ok, proc: subprocess.Popen, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterHub exited ({proc.returncode}):\n{log_path.read_text()}")
        try:
            r = requests.get(url, timeout=10, allow_redirects=False)
            last = r.status_code
            if ok(r):
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(
        f"{what} not up within {START_TIMEOUT} s (last: {last}):\n{log_path.read_text()[-4000:]}"
    )


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Hub:
    with run_hub(tmp_path_factory.mktemp("hub")) as running:
        yield running


@contextlib.contextmanager
def run_hub(d: Path, relay_args: list[str] | None = None):
    """A Hub in ``d`` with the relay service; ``relay_args``: the relay's store and process
    options (default: ``--db <d>/relay.sqlite``; tests/hub/test_hub_postgres.py runs it on
    PostgreSQL with ``--processes 2``)."""
    (d / "users").mkdir()
    proxy_port, api_port, hub_port, relay_port = _free_ports(4)
    admin_token = secrets.token_hex(32)
    relay_db = d / "relay.sqlite"
    relay = Path(sys.executable).with_name("secsync-relay")
    relay_command = [str(relay), "--auth", "hub", *(relay_args or ["--db", str(relay_db)])]
    # the labextension's settings for every single-user server of this Hub, set once: the
    # relay of new notebooks is the Hub service, logged in to with the Hub (docs/deployment.md)
    lab_settings = d / "lab-settings"
    lab_settings.mkdir()
    relay_public = f"ws://127.0.0.1:{proxy_port}/services/{SERVICE}"
    (lab_settings / "overrides.json").write_text(
        json.dumps({PLUGIN_ID: {"relayUrl": relay_public, "relayIsHubService": True}})
    )
    spawner_args = [
        f"--LabApp.app_settings_dir={lab_settings}",
        "--LabApp.expose_app_in_browser=True",
        *(["--allow-root"] if os.getuid() == 0 else []),
    ]
    config = f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{_chp()!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{d / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{d / "cookie_secret"}"
c.JupyterHub.pid_file = "{d / "jupyterhub.pid"}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{d / "users"}/{{username}}"
c.Spawner.args = {spawner_args!r}
c.Spawner.cmd = [{str(Path(sys.executable).with_name("jupyterhub-singleuser"))!r}]
c.JupyterHub.cleanup_servers = True
c.Spawner.default_url = "/lab"
# the server's own token (JUPYTERHUB_API_TOKEN, kernels inherit it) may reach the relay too,
# for users who hold the service's access scope
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service={SERVICE}",
]
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180
c.JupyterHub.services = [
    {{
        "name": {SERVICE!r},
        "url": "http://127.0.0.1:{relay_port}",
        "command": {relay_command!r},
        "oauth_no_confirm": True,
    }},
    {{"name": "test-admin", "api_token": {admin_token!r}}},
]
c.JupyterHub.load_roles = [
    {{
        "name": "secsync-relay-users",
        "users": {list(MEMBERS)!r},
        "scopes": ["access:services!service={SERVICE}"],
    }},
    {{
        "name": "test-admin",
        "services": ["test-admin"],
        "scopes": ["admin:users", "admin:servers", "tokens"],
    }},
]
"""
    (d / "jupyterhub_config.py").write_text(config)
    log_path = d / "jupyterhub.log"
    env = dict(os.environ, PATH=f"{CHP_BIN}{os.pathsep}{os.environ['PATH']}")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("jupyterhub")),
                "-f",
                str(d / "jupyterhub_config.py"),
            ],
            cwd=d,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{proxy_port}"
    hub = Hub(url, d, admin_token, relay_db, log_path, proc)
    try:
        _wait(f"{url}/hub/health", lambda r: r.status_code == 200, proc, log_path, "the Hub")
        # the relay is up and proxied when its whoami answers (401: no credentials)
        _wait(
            f"{url}/services/{SERVICE}/whoami",
            lambda r: r.status_code == 401,
            proc,
            log_path,
            "the relay service",
        )
        for user in (*MEMBERS, OUTSIDER):
            r = hub.api("POST", f"/users/{user}")
            assert r.status_code in (201, 409), r.text
        yield hub
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(10)


def hub_files(hub: Hub) -> dict[Path, bytes]:
    """Every file of the Hub's database, the relay's database (with WAL) and users' homes."""
    files: dict[Path, bytes] = {}
    for path in [*hub.dir.glob("jupyterhub.sqlite*"), *hub.dir.glob("relay.sqlite*")]:
        files[path] = path.read_bytes()
    for path in hub.users_dir.rglob("*"):
        if path.is_file():
            files[path] = path.read_bytes()
    return files


__all__ = ["MEMBERS", "OUTSIDER", "SERVICE", "Hub", "hub_files"]
