"""Lab zygote: one pre-imported JupyterLab server per image, forked for each lab.

Importing jupyterhub-singleuser, Jupyter Server, JupyterLab and the server extensions costs
about 2.5 s of CPU per lab start on this machine. The zygote pays it once: it imports them,
then forks a child per lab request. The child joins the lab's cgroups, drops to the user's uid,
takes the lab's environment and runs the single-user server, sharing the imported code with
its siblings copy-on-write.

Protocol on stdin/stdout, one JSON object per line: the zygote prints ``{"ready": true}``
once preloaded (or ``{"error": ...}`` and exits); each request line gets ``{"pid": n}``.
It exits when its stdin closes (the hub went away); labs it forked keep running in their
own sessions.

The zygote holds no secrets: every token arrives in the request's environment and lives only
in the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Zygote", "become", "main", "serve"]

#: Modules a lab imports at start; the zygote imports them ahead of time. IPython (notebook_shim
#: asks it for the nbextensions path) and the sciplat lab extension took ~0.08 s of CPU per lab.
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyter_server.serverapp",
    "jupyterlab.labapp",
    "jupyter_server_terminals",
    "jupyter_lsp",
    "jupyter_server_proxy",
    "notebook_shim",
    "dask_labextension",
    "IPython",
    "sciplat.labextension.handlers",
    "sciplat.labextension.daskclusters",
    "sciplat.notebooks",
)


class Zygote:
    """The hub's handle on one zygote process (see the module docstring)."""

    def __init__(
        self,
        python: Path,
        log_path: Path,
        log: logging.Logger,
        start_timeout: float = 120.0,
        module: str = "sciplat.hub.zygote",
    ) -> None:
        self.python = python
        self.module = module
        self.log_path = log_path
        self.log = log
        self.start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[bool] | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> bool:
        """Start the zygote if needed; whether it is usable (failures are remembered)."""
        if self._ready is None or (self._ready.done() and self._ready.result() and not self.alive):
            self._ready = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._ready)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def _start(self) -> bool:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(self.python),
                "-m",
                self.module,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                env={"PATH": f"{self.python.parent}:/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
            )
        except OSError as exc:
            self.log.warning("lab zygote %s could not start: %s", self.python, exc)
            return False
        finally:
            os.close(fd)
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout)
            answer = json.loads(line or b"{}")
        except (TimeoutError, ValueError):
            answer = {}
        if not answer.get("ready"):
            self.log.warning(
                "lab zygote %s unusable (%s); starting labs directly",
                self.python,
                answer.get("error", "no answer"),
            )
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            return False
        self.log.info("lab zygote for %s ready (pid %d)", self.python, self._proc.pid)
        return True

    async def fork(self, request: dict[str, Any]) -> int | None:
        """Fork a lab; its pid, or None when the zygote failed (start the lab directly)."""
        async with self._lock:
            if not self.alive:
                return None
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                await self._proc.stdin.drain()
                line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
                return int(json.loads(line)["pid"])
            except (OSError, ValueError, KeyError, TimeoutError) as exc:
                self.log.warning(
                    "lab zygote %s failed (%s); starting labs directly", self.python, exc
                )
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                return None


def _reap(signum: int, frame: Any) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def become(request: dict[str, Any]) -> None:
    """In a forked child: a new session, the request's log as stdout and stderr, its limits,
    user, working directory and environment."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 65536)
    from sciplat.hub.limits import LimitHandle

    if request.get("limits"):
        LimitHandle(**request["limits"]).enter()
    if request["uid"] != os.getuid():
        os.initgroups(request["user"], request["gid"])
        os.setgid(request["gid"])
        os.setuid(request["uid"])
    os.umask(0o022)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "dask.config" in sys.modules:  # preloaded: read this lab's DASK_* settings again
        sys.modules["dask.config"].refresh()


def _singleuser(request: dict[str, Any]) -> int:
    sys.argv = ["jupyterhub-singleuser", *request["args"]]
    from jupyterhub.singleuser import main as singleuser

    return singleuser() or 0


def _child(request: dict[str, Any], run: Callable[[dict[str, Any]], int]) -> None:
    """Become what *request* asks (the lab, by default) and run it; never returns."""
    code = 1
    try:
        become(request)
        code = run(request)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(
    preload: tuple[str, ...],
    required: tuple[str, ...],
    run: Callable[[dict[str, Any]], int],
) -> None:
    """Import *preload* (*required* ones must import), say ready, then fork a child per request
    line that becomes the requested process and calls *run* with the request."""
    out = sys.stdout
    try:
        for name in preload:
            try:
                __import__(name)
            except ImportError as exc:
                if name in required:
                    raise
                print(f"zygote: optional module {name} not importable: {exc}", file=sys.stderr)
    except BaseException as exc:
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        sys.exit(1)
    signal.signal(signal.SIGCHLD, _reap)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        out.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, run)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()


def main() -> None:
    sys.modules.setdefault("rfc3987_syntax", None)  # see sciplat.hub.labstart
    serve(PRELOAD, PRELOAD[:3], _singleuser)


if __name__ == "__main__":
    main()
