"""A real hub with the real gateway as a managed service, users and clients for the tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dask_gateway import Gateway, JupyterHubAuth

from sciplat.config import GatewayConfig, PortsConfig, Settings
from sciplat.hub.gateway.hubconf import lab_environment
from support.hub import TestHub, start_test_hub
from support.net import free_port, wait_for_http

USERS = {"gwalice": ["users"], "gwbob": ["users"], "gwcarol": []}
ADMIN = "gwadmin"
LAB_TOKEN = "sidebar-lab-token"


class GatewayHub:
    """The hub, and helpers to reach the gateway behind it."""

    def __init__(self, hub: TestHub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings

    @property
    def address(self) -> str:
        return f"{self.hub.url}/services/dask-gateway"

    @property
    def proxy_address(self) -> str:
        return f"gateway://127.0.0.1:{self.settings.ports.gateway_tcp}"

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        return self.hub.token_for(user, scopes)

    def gateway(self, user: str, **kwargs) -> Gateway:
        token = kwargs.pop("token", None) or self.token(user)
        return Gateway(
            address=self.address,
            proxy_address=self.proxy_address,
            auth=JupyterHubAuth(api_token=token),
            **kwargs,
        )

    def http(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"token {self.token(user)}"} if user else {}
        return httpx.Client(base_url=self.address, headers=headers, timeout=30)

    def admin_snapshot(self) -> dict:
        with self.http(ADMIN) as client:
            response = client.get("/api/v1/admin/clusters")
        response.raise_for_status()
        return response.json()

    def gateway_pid(self) -> int:
        out = subprocess.run(
            ["pgrep", "-f", f"dask_gateway_server -f {self.settings.data_dir}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        assert len(out) == 1, out
        return int(out[0])

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every cluster (the gateway leaves them running when it stops)."""
        with self.http(ADMIN) as client:
            for cluster in self.admin_snapshot()["clusters"]:
                client.delete(f"/api/v1/clusters/{cluster['name']}")
        deadline = time.monotonic() + timeout
        while self.admin_snapshot()["clusters"] and time.monotonic() < deadline:
            time.sleep(0.5)


@pytest.fixture(scope="session")
def gateway_hub() -> Iterator[GatewayHub]:
    # Cluster processes run as the users' accounts: the data directory must be reachable
    # by them (pytest's own tmp directory is 0700).
    data_dir = Path(tempfile.mkdtemp(prefix="sciplat-gw-", dir="/tmp"))
    data_dir.chmod(0o755)
    settings = Settings(
        data_dir=data_dir,
        ports=PortsConfig(gateway=free_port(), gateway_tcp=free_port()),
        gateway=GatewayConfig(heartbeat_period=2, worker_memory="512Mi", idle_timeout=600),
    )
    hub = start_test_hub(
        data_dir / "testhub",
        settings,
        users=USERS,
        admins=[ADMIN],
        extensions=["sciplat.hub.gateway:configure_hub"],
    )
    gw = GatewayHub(hub, settings)
    try:
        wait_for_http(f"{gw.address}/api/health", timeout=60, process=hub.process)
        yield gw
    finally:
        try:
            gw.stop_all()
        finally:
            hub.stop()
            _stop_leftovers(data_dir)
            if os.geteuid() == 0:
                for user in [*USERS, ADMIN]:
                    try:
                        if pwd.getpwnam(user).pw_gecos.startswith("sciplat user"):
                            subprocess.run(["userdel", user], check=False)
                    except KeyError:
                        pass
            if os.environ.get("SCIPLAT_TEST_KEEP"):
                print(f"kept {data_dir} (hub log: {data_dir}/testhub/jupyterhub.log)")
            else:
                shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def alice_lab(gateway_hub, tmp_path_factory) -> Iterator[httpx.Client]:
    """gwalice's lab server (JupyterLab, dask-labextension, sciplat's extension) with the
    environment the spawner gives labs and a hub token of gwalice."""
    home = tmp_path_factory.mktemp("alice-lab")
    port = free_port()
    env = {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "JUPYTERHUB_API_TOKEN": gateway_hub.token("gwalice"),
        **lab_environment(gateway_hub.settings),
    }
    log = open(home / "lab.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--allow-root", "--no-browser",
         f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={LAB_TOKEN}",
         f"--ServerApp.root_dir={home}"],
        env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/status?token={LAB_TOKEN}", timeout=180, process=proc)
        headers = {"Authorization": f"token {LAB_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            yield client
    finally:
        _stop_leftovers(home)
        log.close()


def _stop_leftovers(data_dir: Path) -> None:
    """Processes of this hub that outlived it: the managed services the hub restarted (the
    gateway after the restart test) are not always stopped with it."""
    mine = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(data_dir) in cmdline:
                mine.append(int(proc.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in mine):
            time.sleep(0.2)
