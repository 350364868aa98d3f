"""Run a notebook in a child process, as the requesting user, with a wall-clock timeout.

The child is :mod:`sciplat.services.notebooks.runner` started with the chosen image's Python.
When the service runs as root (and ``notebooks.run_as_user`` is on) the child runs as the
user's Unix account (``sciplat.hub.accounts``), so files, data rights and resource use are the
user's; otherwise every run uses the service's uid (single-uid development mode). The child has
its own session, so a timeout or cancel kills it and its kernel together.

Resource limits (cgroups) of labs are not applied to runs yet; runs are bounded by their
timeout and by the host-wide and per-user concurrency limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciplat.config import Settings

__all__ = ["ExecutionResult", "Executor", "RunAs"]

#: Environment passed through to the kernel besides what the executor sets.
_PASS_ENV = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SCIPLAT_PREFIX")
_STDERR_TAIL = 20_000


@dataclass(frozen=True)
class RunAs:
    """Who a notebook runs as: the hub user, their token, and (as root) their Unix account."""

    username: str
    token: str
    uid: int | None = None
    gid: int | None = None
    home: Path | None = None


@dataclass
class ExecutionResult:
    """What came out of one execution."""

    status: str  # succeeded, failed, timeout, cancelled
    notebook: dict[str, Any]
    total_cells: int = 0
    kernel_seconds: float | None = None
    cell_timings: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    stderr: str = ""


EventHook = Callable[[dict[str, Any]], None]


class Executor:
    """Starts runner processes for the API service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._accounts = None

    @property
    def separate_users(self) -> bool:
        """True when runs get the user's own Unix account (root and run_as_user)."""
        return os.geteuid() == 0 and self.settings.notebooks.run_as_user

    def python_for(self, image: str) -> Path:
        """The interpreter of *image* (``ImageConfig.env``; None is sciplat's own environment);
        KeyError names the known images."""
        try:
            config = self.settings.image(image)
        except KeyError:
            known = ", ".join(i.name for i in self.settings.images)
            raise KeyError(f"unknown image {image!r} (known: {known})") from None
        python = (Path(config.env) if config.env else Path(sys.prefix)) / "bin" / "python"
        if not python.exists():
            raise KeyError(f"image {image!r} is not usable here: {python} does not exist")
        return python

    async def run_as(self, username: str, token: str) -> RunAs:
        """The identity a run of *username* executes with."""
        if not self.separate_users:
            return RunAs(username=username, token=token)
        if self._accounts is None:
            from sciplat.hub.accounts import AccountManager

            self._accounts = AccountManager(self.settings.homes_dir)
        account = await self._accounts.ensure(username)
        return RunAs(username, token, uid=account.uid, gid=account.gid, home=account.home)

    def _environment(
        self, run_as: RunAs, python: Path, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(extra or {})  # what labs get (gateway address, ...); identity below wins
        home = str(run_as.home) if run_as.home else os.environ.get("HOME", "/tmp")
        env.update(
            PATH=f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            HOME=home,
            USER=run_as.username,
            LOGNAME=run_as.username,
            JUPYTERHUB_USER=run_as.username,
            ACCESS_TOKEN=run_as.token,
            JUPYTERHUB_API_TOKEN=run_as.token,
            SCIPLAT_PUBLIC_URL=self.settings.public_url,
            SCIPLAT_DATA_DIR=str(self.settings.data_dir),
            PYTHONUNBUFFERED="1",
            MPLBACKEND="module://matplotlib_inline.backend_inline",
        )
        env.setdefault("LANG", "C.UTF-8")
        return env

    async def execute(
        self,
        notebook: dict[str, Any],
        *,
        run_as: RunAs,
        python: Path | None = None,
        timeout: float,
        discovery: dict[str, Any] | None = None,
        environment: dict[str, str] | None = None,
        on_event: EventHook | None = None,
    ) -> ExecutionResult:
        """Execute *notebook* (already parameterised); never raises for notebook faults.

        *environment* is added to the kernel's environment (the labs' service settings); the
        run's identity (token, user, home) always comes from *run_as*."""
        python = python or Path(sys.executable)
        nb = copy.deepcopy(notebook)
        result = ExecutionResult(status="failed", notebook=nb)
        workdir = None
        if run_as.home is not None and run_as.home.is_dir():
            cwd = run_as.home
        else:
            workdir = tempfile.TemporaryDirectory(prefix="sciplat-nb-")
            cwd = Path(workdir.name)
            if run_as.uid is not None:
                os.chown(cwd, run_as.uid, run_as.gid or -1)
        envelope = {
            "notebook": nb,
            "cell_timeout": int(timeout) + 5,
            "discovery": discovery,
        }
        command = [str(python), "-m", "sciplat.services.notebooks.runner"]
        if run_as.uid is not None:
            # setpriv rather than Popen(user=...): uvloop (the API service's loop) does not take
            # user/group arguments. --init-groups gives the user's groups, as labs get.
            command = ["setpriv", f"--reuid={run_as.uid}", f"--regid={run_as.gid}",
                       "--init-groups", "--", *command]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd),
            env=self._environment(run_as, python, environment),
            start_new_session=True,
            limit=2**28,
        )  # fmt: skip
        stderr_chunks: list[bytes] = []

        async def drain_stderr() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                stderr_chunks.append(chunk)
                while sum(map(len, stderr_chunks)) > _STDERR_TAIL * 2:
                    stderr_chunks.pop(0)

        async def read_events() -> None:
            assert proc.stdout is not None and proc.stdin is not None
            proc.stdin.write(json.dumps(envelope).encode())
            await proc.stdin.drain()
            proc.stdin.close()
            while line := await proc.stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._apply(result, event)
                if on_event is not None:
                    on_event(event)

        stderr_task = asyncio.create_task(drain_stderr())
        started = time.monotonic()
        try:
            await asyncio.wait_for(read_events(), timeout)
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            self._kill(proc)
            await proc.wait()
            if time.monotonic() - started >= timeout:
                result.status = "timeout"
                running = _running_cell(result)
                result.error = {
                    "index": running,
                    "ename": "Timeout",
                    "evalue": f"The run was stopped after its timeout of {timeout:g} s"
                    + (f", while cell {running} was executing" if running is not None else ""),
                    "traceback": "",
                }
        except asyncio.CancelledError:
            self._kill(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10)
            result.status = "cancelled"
            result.error = {
                "index": None,
                "ename": "Cancelled",
                "evalue": "The run was cancelled",
                "traceback": "",
            }
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stderr_task, 5)
            result.stderr = b"".join(stderr_chunks).decode(errors="replace")[-_STDERR_TAIL:]
            if workdir is not None:
                with contextlib.suppress(OSError):
                    workdir.cleanup()
        if result.status == "failed" and result.error is None:
            result.error = {
                "index": None,
                "ename": "RunnerError",
                "evalue": f"The notebook runner exited with status {proc.returncode}",
                "traceback": result.stderr[-4000:],
            }
        return result

    @staticmethod
    def _apply(result: ExecutionResult, event: dict[str, Any]) -> None:
        kind = event.get("event")
        cells = result.notebook.get("cells", [])
        if kind == "kernel":
            result.kernel_seconds = event.get("seconds")
            result.total_cells = int(event.get("total") or 0)
        elif kind == "start":
            result.cell_timings.append({"index": event["index"], "seconds": None})
        elif kind == "cell":
            index = event["index"]
            if 0 <= index < len(cells):
                cells[index]["outputs"] = event.get("outputs", [])
                cells[index]["execution_count"] = event.get("execution_count")
            for timing in result.cell_timings:
                if timing["index"] == index:
                    timing["seconds"] = event.get("seconds")
        elif kind == "error":
            result.error = {k: event.get(k) for k in ("index", "ename", "evalue", "traceback")}
        elif kind == "done":
            result.status = "succeeded" if event.get("ok") else "failed"

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _running_cell(result: ExecutionResult) -> int | None:
    pending = [t["index"] for t in result.cell_timings if t["seconds"] is None]
    return pending[-1] if pending else None
