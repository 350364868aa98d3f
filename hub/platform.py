"""Start, stop and inspect the embedded platform: configurable-http-proxy and JupyterHub.

Both run as daemons with pid files in ``<data>/run``. The proxy is started separately from the
hub (with a fixed auth token), so restarting the hub keeps every route and running lab.
``sciplat up``/``down``/``status`` and the tests drive the same :class:`Platform`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from sciplat.config import Settings
from sciplat.hub.firstrun import ensure_first_admin
from sciplat.hub.hubconfig import ensure_secret, write_hub_config

__all__ = ["Platform", "PlatformError", "StartResult", "find_proxy"]

Say = Callable[[str], None]


#: Command-line fragments that mark a hub child as a lab (not a managed service).
LAB_MARKERS = ("sciplat.hub.labstart", "jupyterhub.singleuser", "jupyterhub-singleuser")


def _terminate(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, whichever of *processes* still run."""
    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


class PlatformError(RuntimeError):
    """The platform could not be started or stopped; the message says why."""


def find_proxy() -> str:
    """The configurable-http-proxy executable (installed by scripts/setup.sh)."""
    prefix = os.environ.get("SCIPLAT_PREFIX") or str(Path(sys.prefix).parent)
    for candidate in (
        Path(prefix) / "node/node_modules/.bin/configurable-http-proxy",
        Path("/opt/sciplat/node/node_modules/.bin/configurable-http-proxy"),
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise PlatformError(
        "configurable-http-proxy not found: run `bash scripts/setup.sh` (it npm-installs it into "
        "$SCIPLAT_PREFIX/node) or put it on PATH"
    )


@dataclass
class StartResult:
    url: str
    admin_user: str | None
    admin_password: str | None
    started: list[str]


@dataclass
class Daemon:
    """One background process with a pid file and a log."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string its command line contains, against stale pid files

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and self.marker in " ".join(proc.cmdline()):
                return pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def start(self, cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def stop(self, timeout: float = 15.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            psutil.Process(pid).wait(timeout)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(5)
        except psutil.Error:
            pass
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Platform:
    """The proxy and hub of one data directory."""

    def __init__(self, settings: Settings, *, log_level: str = "INFO") -> None:
        self.settings = settings
        self.log_level = log_level
        run = settings.run_dir
        self.proxy = Daemon(
            "proxy", run / "proxy.pid", run / "proxy.log", "configurable-http-proxy"
        )
        self.hub = Daemon("hub", run / "hub.pid", run / "hub.log", "jupyterhub")
        self._children: list[subprocess.Popen] = []

    # -- locations ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.hub.port}"

    @property
    def api_url(self) -> str:
        return f"{self.local_url}/hub/api"

    def api_token(self) -> str:
        return ensure_secret(self.settings.hub_state_dir / "cli-token")

    def api(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for the hub REST API, as the ``sciplat-cli`` service."""
        return httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={"Authorization": f"token {self.api_token()}"},
        )

    def _env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["CONFIGPROXY_AUTH_TOKEN"] = ensure_secret(self.settings.run_dir / "proxy-token")
        return env

    # -- start ----------------------------------------------------------------------------------
    def start(
        self, *, say: Say = lambda _: None, build_data: bool = True, timeout: float = 120.0
    ) -> StartResult:
        """Start whatever is not running, wait until the hub is healthy behind the proxy."""
        s = self.settings
        for d in (s.data_dir, s.run_dir, s.hub_state_dir, s.homes_dir):
            d.mkdir(parents=True, exist_ok=True)
        s.data_dir.chmod(0o755)
        s.run_dir.chmod(0o700)
        if build_data:
            self._ensure_dataset(say)
        config = write_hub_config(s)
        admin = ensure_first_admin(s)
        started = []
        if self.proxy.pid() is None:
            say(f"starting configurable-http-proxy on {s.hub.ip}:{s.hub.port}")
            self._start_proxy()
            started.append("proxy")
        if self.hub.pid() is None:
            say("starting JupyterHub")
            self._start_hub(config)
            started.append("hub")
        self.wait_healthy(timeout=timeout)
        self.wait_services(say=say, timeout=timeout)
        return StartResult(
            url=self.url,
            admin_user=admin[0] if admin else None,
            admin_password=admin[1] if admin else None,
            started=started,
        )

    def _start_proxy(self) -> None:
        s = self.settings
        cmd = [
            find_proxy(),
            "--ip",
            s.hub.ip,
            "--port",
            str(s.hub.port),
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            str(s.ports.proxy_api),
            "--default-target",
            f"http://127.0.0.1:{s.ports.hub}",
            "--error-target",
            f"http://127.0.0.1:{s.ports.hub}/hub/error",
            "--log-level",
            "warn",
        ]
        self._children.append(self.proxy.start(cmd, self._env(), s.run_dir))
        # Node takes several seconds to start on a loaded 2-core host (20 s was seen to fail).
        self._wait_port(s.ports.proxy_api, self.proxy, 90)

    def _start_hub(self, config: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "jupyterhub",
            "-f",
            str(config),
            f"--log-level={self.log_level}",
        ]
        self._children.append(self.hub.start(cmd, self._env(), self.settings.hub_state_dir))

    def _wait_port(self, port: int, daemon: Daemon, timeout: float) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if daemon.pid() is None:
                break
            time.sleep(0.1)
        raise PlatformError(f"{daemon.name} did not start; log tail:\n{daemon.log_tail()}")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Until ``/hub/health`` answers through the proxy (and the CLI token works)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.hub.pid() is None:
                raise PlatformError(f"JupyterHub exited; log tail:\n{self.hub.log_tail()}")
            try:
                r = httpx.get(f"{self.local_url}/hub/health", timeout=2)
                if r.status_code == 200:
                    with self.api(timeout=5) as api:
                        if api.get("/").status_code == 200:
                            return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        raise PlatformError(
            f"JupyterHub not healthy after {timeout:.0f} s (last: {last}); "
            f"log tail:\n{self.hub.log_tail()}"
        )

    def wait_services(self, *, say: Say = lambda _: None, timeout: float = 120.0) -> list[str]:
        """Until the proxy routes every hub-managed service (the hub starts them one by one and
        routes each once it answers). Services still missing after *timeout* are reported, not
        fatal: the hub itself serves. Returns the missing services' names."""
        deadline = time.monotonic() + timeout
        token = ensure_secret(self.settings.run_dir / "proxy-token")
        routes_url = f"http://127.0.0.1:{self.settings.ports.proxy_api}/api/routes"
        missing: list[str] = []
        while True:
            try:
                with self.api(timeout=5) as api:
                    services = api.get("/services").json()
                managed = {
                    name: (info.get("prefix") or f"/services/{name}/").rstrip("/")
                    for name, info in services.items()
                    if info.get("url") and info.get("command")
                }
                routes = httpx.get(
                    routes_url, headers={"Authorization": f"token {token}"}, timeout=5
                ).json()
                routed = {path.rstrip("/") for path in routes}
                missing = sorted(n for n, prefix in managed.items() if prefix not in routed)
            except (httpx.HTTPError, ValueError, AttributeError):
                missing = ["(hub API)"]
            if not missing:
                say("services ready: " + ", ".join(sorted(managed)))
                return []
            if time.monotonic() > deadline or self.hub.pid() is None:
                waiting = ", ".join(missing)
                say(f"WARNING: not yet serving: {waiting} (see {self.hub.log_file})")
                return missing
            time.sleep(0.5)

    def _ensure_dataset(self, say: Say) -> None:
        s = self.settings
        try:
            from sciplat.pipelines.dataset import build_dataset, load_info
        except ImportError:
            say(
                "WARNING: no data set builder installed (sciplat.pipelines.dataset); "
                "the platform starts without data"
            )
            return
        if load_info(s.dataset_dir) is not None:
            return
        say(f"building the {s.dataset!r} data preview in {s.dataset_dir} (first run only)")
        build_dataset(s.dataset_dir, size=s.dataset, seed=42)

    # -- stop -----------------------------------------------------------------------------------
    def stop(self, *, labs: bool = True, proxy: bool = True, say: Say = lambda _: None) -> None:
        """Stop the labs (through the hub API), then the hub, then the proxy."""
        if labs and self.hub.pid() is not None:
            self.stop_labs(say=say)
        services = self._service_processes()
        if self.hub.stop(timeout=30):
            say("stopped JupyterHub")
        _terminate(services)
        if proxy and self.proxy.stop():
            say("stopped configurable-http-proxy")
        for child in self._children:
            with contextlib.suppress(Exception):
                child.wait(0)

    def _service_processes(self) -> list[psutil.Process]:
        """The hub's children that are not labs: its managed services.

        The hub stops them itself when it shuts down cleanly; a hub killed early in its start
        would leave them behind, so :meth:`stop` ends whichever survive it.
        """
        pid = self.hub.pid()
        if pid is None:
            return []
        try:
            children = psutil.Process(pid).children()
        except psutil.Error:
            return []
        services = []
        for child in children:
            try:
                if not any(m in " ".join(child.cmdline()) for m in LAB_MARKERS):
                    services.append(child)
            except psutil.Error:
                continue
        return services

    def restart_hub(self, timeout: float = 120.0) -> None:
        """Stop and start the hub only (the proxy and labs keep running)."""
        services = self._service_processes()
        self.hub.stop(timeout=30)
        _terminate(services)
        self._start_hub(write_hub_config(self.settings))
        self.wait_healthy(timeout=timeout)

    def stop_labs(self, *, say: Say = lambda _: None, timeout: float = 90.0) -> int:
        """Ask the hub to stop every lab (waiting out spawns in progress); returns how many."""
        asked: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        with self.api(timeout=timeout) as api:
            while time.monotonic() < deadline:
                users = api.get("/users", params={"state": "active"})
                if users.status_code != 200:
                    break
                servers = [
                    (u["name"], name, model.get("pending"))
                    for u in users.json()
                    for name, model in u["servers"].items()
                ]
                if not servers:
                    break
                for user, server, pending in servers:
                    if pending is None and (user, server) not in asked:
                        path = (
                            f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
                        )
                        if api.delete(path).status_code in (202, 204):
                            asked.add((user, server))
                time.sleep(0.2)
        if asked:
            say(f"stopped {len(asked)} lab(s)")
        return len(asked)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Processes, health and labs, as a JSON-able dict."""
        info: dict[str, Any] = {
            "url": self.url,
            "data_dir": str(self.settings.data_dir),
            "proxy": {"pid": self.proxy.pid()},
            "hub": {"pid": self.hub.pid()},
            "healthy": False,
            "labs": [],
        }
        if info["hub"]["pid"] is None:
            return info
        try:
            with self.api(timeout=5) as api:
                info["hub"]["version"] = api.get("/").json().get("version")
                users = api.get("/users", params={"state": "active"}).json()
            info["healthy"] = True
        except (httpx.HTTPError, ValueError):
            return info
        for user in users:
            for name, server in user.get("servers", {}).items():
                info["labs"].append(
                    {
                        "user": user["name"],
                        "server": name,
                        "ready": server.get("ready"),
                        "started": server.get("started"),
                        "image": (server.get("user_options") or {}).get("image"),
                        "size": (server.get("user_options") or {}).get("size"),
                    }
                )
        return info
