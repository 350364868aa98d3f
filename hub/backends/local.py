"""The local backend: labs as processes on this machine.

Run as root, each hub user gets a Unix account and a 0700 home under the data root
(:mod:`sciplat.hub.accounts`); the lab runs as that uid inside a cgroup holding the size's
memory and CPU limits (:mod:`sciplat.hub.limits`). Not run as root, every lab runs as the hub's
own uid (development mode, with a loud warning) and memory is limited with RLIMIT_AS.

Labs run in their own session, so they outlive a hub restart; the state (pid, process start
time, cgroups) lets the restarted hub poll and stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
from traitlets import Bool, Float, Unicode, default

from sciplat.hub import labprep
from sciplat.hub.accounts import Account, AccountManager, current_account
from sciplat.hub.backends import LabSpec, ProgressFn, SpawnerBackend
from sciplat.hub.errors import LabStartError, SciplatSpawnError
from sciplat.hub.labprep import DISCOVERY_PATH, prepare_home
from sciplat.hub.limits import Limiter, LimitHandle
from sciplat.hub.zygote import Zygote
from sciplat.images.catalog import LabImage

__all__ = ["LocalBackend"]

_WARNED: set[str] = set()


class LocalBackend(SpawnerBackend):
    """Labs as local processes, one Unix account per user when run as root."""

    homes_dir = Unicode(
        help="""Directory holding one home per user (``<data>/home``).

        Example::

            c.LocalBackend.homes_dir = "/var/lib/sciplat/home"
        """,
    ).tag(config=True)

    logs_dir = Unicode(
        help="""Directory for the labs' stdout/stderr logs (readable by the hub only).

        The tail of a lab's log is what a failed spawn shows the user.
        """,
    ).tag(config=True)

    stop_timeout = Float(
        5.0, help="Seconds a lab gets to shut down after SIGTERM before it is killed."
    ).tag(config=True)

    use_zygote = Bool(
        True,
        help="""Fork labs from a per-image zygote that has JupyterLab imported already.

        Saves ~2.5 s of CPU per lab start. Images whose zygote cannot start (no sciplat in
        them, a broken environment) fall back to starting the lab directly.

        Example::

            c.LocalBackend.use_zygote = False
        """,
    ).tag(config=True)

    cgroup_root = Unicode(
        "/sys/fs/cgroup", help="Mount point of the cgroup hierarchies (v1 or v2)."
    ).tag(config=True)

    @default("logs_dir")
    def _default_logs_dir(self) -> str:
        return str(Path(self.homes_dir).parent / "run" / "labs")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_root = os.geteuid() == 0
        self.accounts = AccountManager(Path(self.homes_dir))
        self.limiter = Limiter(Path(self.cgroup_root))
        self._procs: dict[int, subprocess.Popen] = {}
        self._zygotes: dict[str, Zygote] = {}
        if not self.is_root and "single-uid" not in _WARNED:
            _WARNED.add("single-uid")
            self.log.warning(
                "\n%s\nsciplat is NOT running as root: every lab runs as uid %d (single-uid "
                "development mode).\nUsers can read each other's files, and memory limits "
                "are per-process RLIMIT_AS only. Run `sciplat up` as root for a multi-user "
                "platform.\n%s",
                "!" * 78,
                os.getuid(),
                "!" * 78,
            )

    # -- start --------------------------------------------------------------------------------
    async def start(self, spec: LabSpec, progress: ProgressFn) -> AsyncIterator[dict[str, Any]]:
        state: dict[str, Any] = {"key": spec.key}
        progress(10, "Preparing your account and home directory")
        if self.is_root:
            account = await self.accounts.ensure(spec.username)
        else:
            account = current_account(spec.username, Path(self.homes_dir))
        state.update(unix_user=account.name, uid=account.uid, home=str(account.home))
        yield dict(state)

        if spec.options.reset:
            progress(20, "Resetting your user environment (moving dot-directories aside)")
        result = await self._prepare_home(account, spec)
        if result.get("moved_to"):
            progress(25, f"Moved {', '.join(result['moved'])} to {result['moved_to']}")

        size = spec.options.size
        limits = self.limiter.prepare(spec.key, memory=size.memory, cpu=size.cpu)
        state["limits"] = limits.to_state()
        yield dict(state)

        progress(40, f"Starting JupyterLab from image {spec.options.image.name!r}")
        pid, log_path = await self._launch(spec, account, limits)
        state.update(pid=pid, create_time=_create_time(pid), log=str(log_path))
        yield dict(state)

        await self._wait_listening(pid, spec.port, log_path, progress)
        progress(90, "JupyterLab is listening; connecting it to the hub")
        state["url"] = f"http://127.0.0.1:{spec.port}"
        yield state

    async def _prepare_home(self, account: Account, spec: LabSpec) -> dict[str, Any]:
        request = {
            "home": str(account.home),
            "reset": spec.reset_dirs if spec.options.reset else [],
            "discovery": spec.discovery,
        }
        if not self.is_root:
            return prepare_home(request)
        # Run the file in isolated mode (-I): only the standard library is imported, which
        # keeps this step at ~30 ms instead of importing sciplat.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            labprep.__file__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(account.home),
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            env={"HOME": str(account.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        out, _ = await proc.communicate(json.dumps(request).encode())
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"error": out.decode(errors="replace")[-2000:]}
        if proc.returncode or "error" in result:
            raise SciplatSpawnError(
                f"Could not prepare your home directory: {result.get('error')}",
                reason="home",
                status_code=500,
            )
        return result

    async def _launch(
        self, spec: LabSpec, account: Account, limits: LimitHandle
    ) -> tuple[int, Path]:
        logs = Path(self.logs_dir)
        logs.mkdir(parents=True, exist_ok=True)
        os.chmod(logs, 0o700)
        log_path = logs / f"{spec.key}.log"
        env = dict(spec.env)
        env.update(
            HOME=str(account.home),
            USER=account.name,
            LOGNAME=account.name,
            SHELL="/bin/bash",
            SCIPLAT_DISCOVERY=str(account.home / DISCOVERY_PATH),
        )
        switch = self.is_root and account.uid != os.getuid()
        self._write_log_header(log_path, spec)
        zygote = await self._zygote(spec.options.image)
        if zygote is not None:
            pid = await zygote.fork(
                {
                    "log": str(log_path),
                    "limits": limits.to_state(),
                    "uid": account.uid,
                    "gid": account.gid,
                    "user": account.name,
                    "cwd": str(account.home),
                    "env": env,
                    "args": spec.args,
                }
            )
            if pid is not None:
                self.log.info(
                    "Started lab %s as %s from the %s zygote (pid %d)",
                    spec.key,
                    account.name,
                    spec.options.image.name,
                    pid,
                )
                return pid, log_path

        def preexec() -> None:
            limits.enter()
            if switch:
                os.initgroups(account.name, account.gid)
                os.setgid(account.gid)
                os.setuid(account.uid)
            os.umask(0o022)

        cmd = [*spec.options.image.lab_command(), *spec.args]
        self.log.info("Starting lab %s as %s: %s", spec.key, account.name, " ".join(cmd))
        with open(log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=str(account.home),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=preexec,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                limits.remove()
                raise LabStartError(
                    f"Image {spec.options.image.name!r} could not be started: {exc.strerror} "
                    f"({cmd[0]})."
                ) from exc
        self._procs[proc.pid] = proc
        return proc.pid, log_path

    async def _wait_listening(
        self, pid: int, port: int, log_path: Path, progress: ProgressFn
    ) -> None:
        """Return once the lab accepts connections; raise with its log if it exits first."""
        started = time.monotonic()
        next_note = 5.0
        while True:
            proc = self._procs.get(pid)
            status = proc.poll() if proc is not None else (None if _alive(pid) else "unknown")
            if status is not None:
                raise LabStartError(
                    f"Your lab exited during start-up (exit status {status}).",
                    log_tail=self.log_tail(log_path),
                )
            if await _port_open(port):
                return
            elapsed = time.monotonic() - started
            if elapsed > next_note:
                progress(min(85, 50 + int(elapsed)), f"Waiting for JupyterLab ({elapsed:.0f} s)")
                next_note += 5.0
            await asyncio.sleep(0.05)

    def _write_log_header(self, log_path: Path, spec: LabSpec) -> None:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as log:
            log.write(
                f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} lab {spec.key} "
                f"image {spec.options.image.name} size {spec.options.size.name}\n"
            )

    async def prewarm(self, image: LabImage) -> None:
        """Start *image*'s zygote now, so the first spawn does not wait for it."""
        await self._zygote(image)

    async def _zygote(self, image: LabImage) -> Zygote | None:
        """The ready zygote of *image*, started on first use; None to start labs directly."""
        if not self.use_zygote:
            return None
        zygote = self._zygotes.get(str(image.prefix))
        if zygote is None:
            log = Path(self.logs_dir) / f"zygote-{image.name}.log"
            zygote = Zygote(image.python, log, self.log)
            self._zygotes[str(image.prefix)] = zygote
        return zygote if await zygote.ready() else None

    def log_tail(self, log_path: Path) -> str:
        try:
            with open(log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-self.log_tail_lines :])

    # -- poll / stop --------------------------------------------------------------------------
    async def poll(self, state: dict[str, Any]) -> int | None:
        pid = state.get("pid")
        if not pid:
            return 0
        proc = self._procs.get(pid)
        if proc is not None:
            status = proc.poll()
            if status is not None:
                self._procs.pop(pid, None)
            return status
        return None if _alive(pid, state.get("create_time")) else 0

    async def stop(self, state: dict[str, Any], *, now: bool = False) -> None:
        pid = state.get("pid")
        limits = LimitHandle.from_state(state.get("limits"))
        if pid and _alive(pid, state.get("create_time")):
            try:
                family = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
            except psutil.Error:
                family = [pid]
            _signal(family, signal.SIGTERM)
            deadline = time.monotonic() + (0 if now else self.stop_timeout)
            while time.monotonic() < deadline and any(_alive(p) for p in family):
                await asyncio.sleep(0.1)
                self._reap(pid)
            _signal(family, signal.SIGKILL)
        if limits is not None:
            limits.kill_all()
            for _ in range(50):
                if not limits.pids():
                    break
                await asyncio.sleep(0.05)
            limits.remove()
        if pid:
            self._reap(pid)
            for _ in range(20):
                if not _alive(pid):
                    break
                await asyncio.sleep(0.05)
                self._reap(pid)

    def _reap(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is not None and proc.poll() is not None:
            self._procs.pop(pid, None)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int, create_time: float | None = None) -> bool:
    """Whether *pid* runs (and is the same process, when its start time is known)."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:*port*."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
