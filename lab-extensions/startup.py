"""Start-up checks: problems the user should hear about at once, each with what to do."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["check_disk", "check_home_writable", "check_token", "startup_problems"]


def _problem(code: str, title: str, detail: str, remedy: str) -> dict[str, str]:
    return {"code": code, "title": title, "detail": detail, "remedy": remedy}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_disk(home: Path, min_free: int) -> dict[str, str] | None:
    """ "disk-full" when less than *min_free* bytes are free under *home*."""
    if min_free <= 0:
        return None
    try:
        usage = shutil.disk_usage(home)
    except OSError:
        return None  # a missing home is check_home_writable's finding
    if usage.free >= min_free:
        return None
    return _problem(
        "disk-full",
        "Your disk is (nearly) full",
        f"Only {_gib(usage.free)} are free under {home} (of {_gib(usage.total)}). Saving "
        "notebooks, kernels and the lab's own settings may fail.",
        "Delete or move large files (File Browser, or `du -sh ~/* | sort -h` in a terminal), "
        "then restart your server from the hub's home page.",
    )


def check_home_writable(home: Path) -> dict[str, str] | None:
    """ "home-not-writable" when a file cannot be created in *home*."""
    try:
        fd, name = tempfile.mkstemp(prefix=".sciplat-write-check-", dir=home)
        os.close(fd)
        os.unlink(name)
        return None
    except OSError as exc:
        reason = exc.strerror or str(exc)
    return _problem(
        "home-not-writable",
        "Your home directory is not writable",
        f"Creating a file in {home} failed: {reason}. Notebooks cannot be saved.",
        "If the disk is full, free space first. Otherwise ask the platform's administrators "
        "to fix the owner and permissions of your home directory.",
    )


def check_token(env: Mapping[str, str]) -> dict[str, str] | None:
    """ "token-missing" when the lab has no platform token or discovery document."""
    missing = []
    if not (env.get("ACCESS_TOKEN") or env.get("JUPYTERHUB_API_TOKEN")):
        missing.append("no access token ($JUPYTERHUB_API_TOKEN)")
    path = env.get("SCIPLAT_DISCOVERY")
    if not path:
        missing.append("no discovery document ($SCIPLAT_DISCOVERY)")
    else:
        try:
            json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            missing.append(f"the discovery document {path} is unreadable ({exc})")
    if not missing:
        return None
    return _problem(
        "token-missing",
        "This lab has no platform credentials",
        "Catalog queries, images, the portal and batch compute will fail: "
        + "; ".join(missing)
        + ".",
        "Stop your server (File > Save All and Exit) and start it again from the hub's home "
        "page; if this persists, tell the platform's administrators.",
    )


def startup_problems(home: Path, env: Mapping[str, str], min_free: int) -> list[dict[str, Any]]:
    """Every problem found, in the order a user should fix them."""
    checks = [check_disk(home, min_free), check_home_writable(home), check_token(env)]
    return [p for p in checks if p is not None]
