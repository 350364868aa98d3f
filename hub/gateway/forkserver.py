"""Dask schedulers and workers forked from a pre-imported server, one per image environment.

Starting ``dask worker`` or ``dask scheduler`` costs about 1.5 s of imports on this machine
(distributed, its dashboard, bokeh) before the process does anything, and a worker's nanny paid
it twice (the worker process was spawned afresh). The gateway keeps one server per image
environment, ``<env>/bin/python -m sciplat.hub.gateway.forkserver``, that has imported all of
it; a cluster process is a fork of it that becomes the cluster's user (the lab zygote's
:func:`sciplat.hub.zygote.become`), opens its log as that user and runs the dask command line.
Environments without sciplat cannot run the server: their processes start directly.

Forked processes live in their own sessions and outlive the server and the gateway, like the
directly started ones; the server reaps them when they exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from sciplat.hub.zygote import serve

__all__ = ["PRELOAD", "SERVER_MODULE", "main"]

SERVER_MODULE = "sciplat.hub.gateway.forkserver"

#: What a scheduler (with dask-gateway's preload and the dashboard) and a worker import.
PRELOAD = (
    "distributed",
    "distributed.cli.dask_scheduler",
    "distributed.cli.dask_worker",
    "distributed.nanny",
    "dask_gateway.scheduler_preload",
    "distributed.dashboard.scheduler",
    "distributed.dashboard.worker",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.scheduler.prometheus",
    "distributed.http.worker.prometheus",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
)
REQUIRED = PRELOAD[:4]


def _run_dask(request: dict[str, Any]) -> int:
    """In the forked child, already the cluster's user: log to the cluster's log file and run
    ``dask <command> <args...>``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    fd = os.open(request["dask_log"], flags, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    command, *args = request["args"]
    if command == "scheduler":
        from distributed.cli.dask_scheduler import main
    elif command == "worker":
        from distributed.cli.dask_worker import main
    else:
        raise ValueError(f"not a dask command this server runs: {command!r}")
    sys.argv = ["dask", command, *args]
    with contextlib.suppress(ImportError):  # the nanny keeps it; distributed retitles the rest
        from setproctitle import setproctitle

        setproctitle(" ".join(sys.argv))
    return main.main(args=args, prog_name=f"dask {command}") or 0


def main() -> None:
    # distributed titles its processes ("dask worker [tls://...]") with setproctitle, which
    # finds the command line's memory at its first call; that must come before a child clears
    # its environment (it gives up when the environment is empty).
    with contextlib.suppress(ImportError):
        from setproctitle import getproctitle, setproctitle

        setproctitle(getproctitle())
    serve(PRELOAD, REQUIRED, _run_dask)


if __name__ == "__main__":
    main()
