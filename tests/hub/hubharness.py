"""Test harness for the hub: a real platform (proxy + JupyterHub + SciplatSpawner) on loopback.

It is started through the same :class:`sciplat.hub.platform.Platform` that ``sciplat up`` uses,
in a throw-away data directory with free ports; users and tokens are made through the hub's
REST API as the ``sciplat-cli`` service.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import websocket

from sciplat.hub.platform import Platform

__all__ = ["Harness", "KernelError", "xsrf"]


class KernelError(RuntimeError):
    """Code run in a lab's kernel raised; ``ename``/``evalue`` as the kernel reported them."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


# A form's hidden field, or the token JupyterHub's page template hands to its scripts.
_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"|xsrf_token: "([^"]+)"')


@dataclass
class Harness:
    platform: Platform
    admin_user: str
    admin_password: str

    @property
    def url(self) -> str:
        return self.platform.local_url

    def api(self) -> httpx.Client:
        return self.platform.api(timeout=120)

    # -- users ------------------------------------------------------------------------------
    def create_user(self, name: str, groups: list[str] = (), *, admin: bool = False) -> None:
        with self.api() as api:
            r = api.post(f"/users/{name}", json={"admin": admin})
            assert r.status_code in (201, 409), r.text
            for group in groups:
                r = api.post(f"/groups/{group}/users", json={"users": [name]})
                assert r.status_code == 200, r.text

    def token_for(self, name: str, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"note": "hub tests"}
        if scopes is not None:
            body["scopes"] = scopes
        with self.api() as api:
            r = api.post(f"/users/{name}/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def admin_browser(self) -> httpx.Client:
        """A cookie session of the first admin, logged in through the login form."""
        client = httpx.Client(base_url=self.url, timeout=60, follow_redirects=True)
        page = client.get("/hub/login")
        r = client.post(
            "/hub/login",
            data={
                "username": self.admin_user,
                "password": self.admin_password,
                "_xsrf": xsrf(page),
            },
        )
        assert r.status_code == 200 and "/hub/login" not in str(r.url), r.text[:1000]
        return client

    def user_client(self, name: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"token {self.token_for(name)}"},
        )

    # -- servers ----------------------------------------------------------------------------
    @staticmethod
    def server_path(user: str, server: str = "") -> str:
        return f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"

    def spawn(
        self, user: str, options: dict[str, Any] | None = None, server: str = ""
    ) -> httpx.Response:
        """POST the spawn request (returns the hub's answer; does not wait)."""
        with self.api() as api:
            return api.post(
                self.server_path(user, server),
                json={"user_options": options} if options is not None else {},
            )

    def server_model(self, user: str, server: str = "") -> dict[str, Any] | None:
        with self.api() as api:
            return api.get(f"/users/{user}").json().get("servers", {}).get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 90) -> None:
        prefix = f"/user/{user}/{server}/" if server else f"/user/{user}/"
        token = self.platform.api_token()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = httpx.get(
                f"{self.url}{prefix}api/status",
                follow_redirects=False,
                headers={"Authorization": f"token {token}"},
            )
            if r.status_code == 200:
                return
            last = r.status_code
            model = self.server_model(user, server)
            if model is None:
                raise AssertionError(f"{user}/{server} is not starting (last HTTP {last})")
            time.sleep(0.1)
        raise AssertionError(f"{user}/{server} not ready after {timeout} s (last HTTP {last})")

    def start(self, user: str, options: dict[str, Any] | None = None, server: str = "") -> None:
        r = self.spawn(user, options, server)
        assert r.status_code in (201, 202), r.text
        self.wait_ready(user, server)

    def stop(self, user: str, server: str = "", timeout: float = 60) -> None:
        with self.api() as api:
            r = api.delete(self.server_path(user, server))
            assert r.status_code in (202, 204, 400, 404), r.text
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.server_model(user, server) is None:
                    return
                time.sleep(0.1)
        raise AssertionError(f"{user}/{server} did not stop")

    def progress_events(self, user: str, server: str = "") -> list[dict[str, Any]]:
        path = (
            f"/users/{user}/servers/{server}/progress"
            if server
            else f"/users/{user}/server/progress"
        )
        events = []
        with self.api() as api, api.stream("GET", path, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        return events

    # -- kernels ----------------------------------------------------------------------------
    def run_code(
        self, user: str, code: str, *, server: str = "", kernel: str = "lsst", timeout: float = 90
    ) -> str:
        """Run *code* in a new kernel of *user*'s lab over the Jupyter websocket; its stdout."""
        prefix = f"/user/{user}/{server}/" if server else f"/user/{user}/"
        token = self.token_for(user)
        headers = {"Authorization": f"token {token}"}
        with httpx.Client(base_url=f"{self.url}{prefix}", headers=headers, timeout=60) as lab:
            r = lab.post("api/kernels", json={"name": kernel})
            assert r.status_code == 201, r.text
            kernel_id = r.json()["id"]
            try:
                return _execute(
                    f"ws{self.url[4:]}{prefix}api/kernels/{kernel_id}/channels",
                    headers,
                    user,
                    code,
                    timeout,
                )
            finally:
                lab.delete(f"api/kernels/{kernel_id}")


def xsrf(page: httpx.Response) -> str:
    """The ``_xsrf`` form field of an HTML page."""
    match = _XSRF.search(page.text)
    assert match, f"no _xsrf field on {page.url}"
    return match.group(1) or match.group(2)


def _execute(ws_url: str, headers: dict[str, str], user: str, code: str, timeout: float) -> str:
    ws = websocket.create_connection(
        ws_url, header=[f"{k}: {v}" for k, v in headers.items()], timeout=timeout
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": user,
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    out: list[str] = []
    error: KernelError | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] in (
                "restarting",
                "dead",
            ):
                raise KernelError("KernelDied", "the kernel died while running the code", [])
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = KernelError(content["ename"], content["evalue"], content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        else:
            raise TimeoutError(f"kernel did not finish in {timeout} s; output so far: {out}")
    finally:
        ws.close()
    if error is not None:
        raise error
    return "".join(out)
