"""A real JupyterHub (and its proxy) on loopback, for testing the services behind it.

The hub runs with the platform's groups, roles and custom scopes from a :class:`Settings`, the
API service registered as a hub-managed service (``sciplat.services.hubconf``), and a test-admin
service that mints tokens for users with chosen scopes. Labs are not spawned here (the hub tests
do that); what services see of a user is their token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sciplat.config import CUSTOM_SCOPES, Settings

from .net import free_port, wait_for_http

__all__ = ["TestHub", "start_test_hub"]

PROXY = Path(os.environ.get("SCIPLAT_PREFIX", "/opt/sciplat")) / "node/node_modules/.bin"

_CONFIG = """
import importlib
import json
from sciplat.config import Settings
from sciplat.services import hubconf

spec = json.load(open({spec!r}))
settings = Settings.model_validate(spec["settings"])
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = spec["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings.ports.hub
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % settings.ports.proxy_api
c.ConfigurableHTTPProxy.command = [spec["proxy"]]
c.ConfigurableHTTPProxy.auth_token = spec["proxy_token"]
c.JupyterHub.db_url = "sqlite:///" + spec["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = spec["dir"] + "/cookie_secret"
c.JupyterHub.pid_file = spec["dir"] + "/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = spec["password"]
c.Authenticator.allowed_users = set(spec["users"])
c.Authenticator.admin_users = set(spec["admins"])
c.JupyterHub.custom_scopes = {{k: {{"description": v}} for k, v in spec["custom_scopes"].items()}}
c.JupyterHub.load_groups = {{g: {{"users": u}} for g, u in spec["groups"].items()}}
c.JupyterHub.load_roles = [
    {{"name": "group-" + g, "scopes": s, "groups": [g]}} for g, s in spec["group_scopes"].items()
] + [{{"name": "test-admin", "scopes": ["admin:users", "tokens", "admin:groups", "read:hub"],
       "services": ["test-admin"]}}]
c.JupyterHub.services = [{{"name": "test-admin", "api_token": spec["admin_token"]}}]
hubconf.configure(c, settings)
for target in spec.get("extensions", []):  # called like the hub's EXTENSIONS
    module_name, _, func_name = target.partition(":")
    getattr(importlib.import_module(module_name), func_name)(c, settings)
"""


@dataclass
class TestHub:
    """Handle on a running hub: its URLs and a way to mint user tokens."""

    url: str
    api_url: str
    admin_token: str
    password: str
    process: subprocess.Popen
    directory: Path
    settings: Settings
    _tokens: dict[tuple[str, tuple[str, ...] | None], str] = field(default_factory=dict)

    @property
    def api_service_url(self) -> str:
        return f"{self.url}/services/api"

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"token {self.admin_token}"}
        )

    def token_for(
        self, user: str, scopes: list[str] | None = None, *, expires_in: int | None = None
    ) -> str:
        """A new (or cached) API token for *user*; *scopes* default to all the user holds."""
        key = (user, tuple(sorted(scopes)) if scopes is not None else None)
        if expires_in is None and key in self._tokens:
            return self._tokens[key]
        body: dict[str, object] = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in is not None:
            body["expires_in"] = expires_in
        with self.admin() as client:
            response = client.post(f"/users/{user}/tokens", json=body)
        response.raise_for_status()
        token = response.json()["token"]
        if expires_in is None:
            self._tokens[key] = token
        return token

    def stop(self) -> None:
        """Stop the hub, then whatever it started that outlived it (its process group)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1.0)


def start_test_hub(
    directory: Path,
    settings: Settings,
    *,
    users: dict[str, list[str]] | None = None,
    admins: list[str] = ("admin",),
    extensions: list[str] = (),
) -> TestHub:
    """Start JupyterHub for *settings* with *users* (name -> groups); returns when it answers.

    *extensions* are ``"module:function"`` hub extensions (like ``hubconfig.EXTENSIONS``) called
    as ``fn(c, settings)`` after the API service is configured.
    """
    users = users if users is not None else {"alice": ["users"], "bob": ["users"], "carol": []}
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = settings.model_copy(
        update={
            "hub": settings.hub.model_copy(update={"port": port}),
            "ports": settings.ports.model_copy(
                update={"hub": free_port(), "proxy_api": free_port(), "api": free_port()}
            ),
            "data_dir": settings.data_dir,
        }
    )
    groups: dict[str, list[str]] = {name: [] for name in settings.groups}
    for user, member_of in users.items():
        for group in member_of:
            groups.setdefault(group, []).append(user)
    spec = {
        "settings": settings.model_dump(mode="json"),
        "port": port,
        "dir": str(directory),
        "proxy": str(PROXY / "configurable-http-proxy"),
        "proxy_token": secrets.token_hex(16),
        "password": secrets.token_hex(8),
        "admin_token": secrets.token_hex(24),
        "users": sorted({*users, *admins}),
        "admins": list(admins),
        "custom_scopes": CUSTOM_SCOPES,
        "groups": groups,
        "group_scopes": {name: group.scopes for name, group in settings.groups.items()},
        "extensions": list(extensions),
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    config = directory / "jupyterhub_config.py"
    config.write_text(_CONFIG.format(spec=str(directory / "spec.json")))
    log = open(directory / "jupyterhub.log", "ab")  # noqa: SIM115 - lives as long as the hub
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its services and proxy share its process group
    )
    url = f"http://127.0.0.1:{port}"
    hub = TestHub(
        url=url,
        api_url=f"{url}/hub/api",
        admin_token=spec["admin_token"],
        password=spec["password"],
        process=process,
        directory=directory,
        settings=settings,
    )
    try:
        wait_for_http(f"{url}/hub/health", process=process, timeout=180)
        wait_for_http(f"{url}/services/api/health", process=process, timeout=180)
    except Exception:
        hub.stop()
        tail = (directory / "jupyterhub.log").read_text()[-4000:]
        raise RuntimeError(f"test hub did not start; log tail:\n{tail}") from None
    return hub
