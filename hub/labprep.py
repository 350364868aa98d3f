"""Preparing a user's home before their lab starts; runs *as that user*.

Two jobs: "Reset user environment" (move ``.cache .config .jupyter .local ...`` aside into
``~/.sciplat-reset-<time>/``, never delete) and writing the lab's discovery document
(``~/.sciplat/discovery.json``, mode 0600). Running as the user (not root) means a symlink the
user planted in their home cannot make the hub write or move anything outside it.

Run as ``python -m sciplat.hub.labprep`` with a JSON request on stdin; prints a JSON result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DISCOVERY_PATH", "prepare_home", "reset_environment", "write_discovery"]

#: Where the discovery document lives, relative to the home directory.
DISCOVERY_PATH = Path(".sciplat") / "discovery.json"


def reset_environment(home: Path, names: list[str]) -> dict[str, Any]:
    """Move the named dot-directories of *home* into a fresh ``.sciplat-reset-<time>``."""
    present = [
        n for n in names if "/" not in n and n not in (".", "..") and os.path.lexists(home / n)
    ]
    if not present:
        return {"moved": [], "moved_to": None}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = home / f".sciplat-reset-{stamp}"
    suffix = 0
    while True:
        try:
            target.mkdir(mode=0o700)
            break
        except FileExistsError:
            suffix += 1
            target = home / f".sciplat-reset-{stamp}-{suffix}"
    for name in present:
        os.rename(home / name, target / name)
    return {"moved": present, "moved_to": str(target)}


def write_discovery(home: Path, document: dict[str, Any]) -> Path:
    """Write the discovery document readable by its owner only; returns its path."""
    path = home / DISCOVERY_PATH
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".discovery.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, path)
    return path


def prepare_home(request: dict[str, Any]) -> dict[str, Any]:
    """Do what *request* asks (``home``, ``reset`` names, ``discovery`` document)."""
    home = Path(request["home"])
    result: dict[str, Any] = {"moved": [], "moved_to": None}
    if request.get("reset"):
        result = reset_environment(home, list(request["reset"]))
    if request.get("discovery") is not None:
        result["discovery"] = str(write_discovery(home, request["discovery"]))
    return result


def main() -> None:
    os.umask(0o077)
    try:
        result = prepare_home(json.load(sys.stdin))
    except OSError as exc:
        print(json.dumps({"error": f"{exc.strerror}: {exc.filename}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
