"""Start a real JupyterHub configured by ``configure_auth``, and drive its forms over HTTP.

(No tests here: the helpers the ``test_auth_*`` modules share.) The hub gets the platform's
custom scopes, one role per configured group (the shape ``sciplat.hub.hubconfig`` renders)
and an ``auth-test`` service whose token reads users and groups through the REST API. It
never spawns labs.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from sciplat.config import CUSTOM_SCOPES, Settings
from support.net import free_port, wait_for_http

PROXY = Path(os.environ.get("SCIPLAT_PREFIX", "/opt/sciplat")) / "node/node_modules/.bin"

_CONFIG = """
import json
from sciplat.config import Settings
from sciplat.hub.auth import configure_auth

spec = json.load(open({spec!r}))
settings = Settings.model_validate(spec["settings"])
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings.hub.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings.ports.hub
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % settings.ports.proxy_api
c.ConfigurableHTTPProxy.command = [spec["proxy"]]
c.ConfigurableHTTPProxy.auth_token = spec["proxy_token"]
c.JupyterHub.db_url = "sqlite:///" + spec["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = spec["dir"] + "/cookie_secret"
c.JupyterHub.pid_file = spec["dir"] + "/jupyterhub.pid"
c.JupyterHub.custom_scopes = {{k: {{"description": v}} for k, v in spec["custom_scopes"].items()}}
c.JupyterHub.services = [
    {{"name": "auth-test", "api_token": spec["token"]}},
    {{"name": "dask-gateway"}},
]
c.JupyterHub.load_roles = [
    {{"name": "group-" + name, "scopes": group["scopes"], "groups": [name]}}
    for name, group in spec["settings"]["groups"].items()
] + [{{"name": "auth-test", "scopes": ["admin:users", "admin:groups"], "services": ["auth-test"]}}]
configure_auth(c, settings)
"""


@dataclass
class AuthHub:
    """A running hub: its public URL, its REST API (as the auth-test service) and its log."""

    url: str
    token: str
    process: subprocess.Popen
    directory: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/hub/api", headers={"Authorization": f"token {self.token}"}
        )

    def user(self, name: str) -> dict:
        with self.api() as api:
            response = api.get(f"/users/{name}")
        response.raise_for_status()
        return response.json()

    def client(self) -> httpx.Client:
        """A browser-like client: keeps cookies, does not follow redirects."""
        return httpx.Client(base_url=self.url, timeout=30)

    def log(self) -> str:
        return (self.directory / "jupyterhub.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def hub_settings(settings: Settings) -> Settings:
    """*settings* with free loopback ports for the proxy, its API and the hub."""
    return settings.model_copy(
        update={
            "hub": settings.hub.model_copy(update={"port": free_port()}),
            "ports": settings.ports.model_copy(
                update={"hub": free_port(), "proxy_api": free_port()}
            ),
        }
    )


def start_auth_hub(
    directory: Path, settings: Settings, *, env: dict[str, str] | None = None
) -> AuthHub:
    """Start JupyterHub with ``configure_auth(c, settings)``; returns once it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "settings": settings.model_dump(mode="json"),
        "dir": str(directory),
        "proxy": str(PROXY / "configurable-http-proxy"),
        "proxy_token": secrets.token_hex(16),
        "token": secrets.token_hex(24),
        "custom_scopes": CUSTOM_SCOPES,
    }
    (directory / "spec.json").write_text(json.dumps(spec))
    config = directory / "jupyterhub_config.py"
    config.write_text(_CONFIG.format(spec=str(directory / "spec.json")))
    log = open(directory / "jupyterhub.log", "ab")  # noqa: SIM115 - lives as long as the hub
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    hub = AuthHub(
        url=settings.public_url, token=spec["token"], process=process, directory=directory
    )
    try:
        wait_for_http(f"{hub.url}/hub/health", process=process, timeout=90)
    except Exception:
        hub.stop()
        raise RuntimeError(f"hub did not start; log tail:\n{hub.log()[-4000:]}") from None
    return hub


_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


def xsrf(page: httpx.Response) -> str:
    """The XSRF token of the form on *page*."""
    match = _XSRF.search(page.text)
    assert match, f"no _xsrf field on {page.url}"
    return match.group(1)


def post_form(
    client: httpx.Client, path: str, data: dict[str, str], *, form_page: str | None = None, **kwargs
) -> httpx.Response:
    """GET the form page (for its XSRF token and cookie), then POST *data* to *path*."""
    token = xsrf(client.get(form_page or path))
    return client.post(path, data={**data, "_xsrf": token}, **kwargs)


def alert(page: httpx.Response) -> str:
    """The message in the alert box of a sign-up or change-password page."""
    match = re.search(
        r'<div class="alert [^"]*" role="alert">\s*(?:<p>)?(.*?)(?:</p>|</div>)', page.text, re.S
    )
    assert match, f"no alert on the page:\n{page.text[:2000]}"
    return html.unescape(" ".join(match.group(1).split()))


def login_error(page: httpx.Response) -> str:
    match = re.search(r'<p class="login_error">(.*?)</p>', page.text, re.S)
    assert match, f"no login error on the page:\n{page.text[:2000]}"
    return html.unescape(" ".join(match.group(1).split()))


def error_message(page: httpx.Response) -> str:
    """The text of JupyterHub's error page (status and message)."""
    match = re.search(r'<div class="error">(.*?)</div>', page.text, re.S)
    assert match, f"not an error page:\n{page.text[:2000]}"
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split()))
