"""Clean-up helpers for tests that start a whole platform or make Unix accounts."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
from pathlib import Path

import psutil

from sciplat.config import Settings

__all__ = ["keep_logs", "remove_accounts", "stop_user_processes"]


def keep_logs(settings: Settings, target: Path) -> None:
    """Copy the platform's logs (hub, services, labs) into *target* (emptied first)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for log in [*settings.run_dir.glob("*.log"), *settings.run_dir.glob("labs/*.log")]:
        shutil.copy(log, target / log.name)


def remove_accounts(settings: Settings, users: list[str]) -> None:
    """Delete the Unix accounts sciplat made for *users* (only as root: otherwise none)."""
    from sciplat.hub import accounts

    accounts.remove_accounts(settings.homes_dir, users)


def stop_user_processes(user: str) -> None:
    """End what still runs under *user*'s own Unix account (only as root)."""
    if os.geteuid() != 0:
        return
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return
    procs = [
        p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid
    ]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
