"""Disk use of workspaces, measured and cached, and the quota each user and group has.

Quotas come from the groups in ``sciplat.yaml`` (``quotas.disk``, and MyDB's
``quotas.mydb_rows``/``mydb_bytes``); an operator can grant a user or group more with
``sciplat admin quota set`` (kept in ``<data>/api/quotas.json``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from sciplat.config import Settings

__all__ = [
    "RESOURCES",
    "DiskUsage",
    "granted",
    "group_quota",
    "overrides_file",
    "set_override",
    "user_quota",
]


#: What an operator can grant: disk bytes, and MyDB rows and bytes.
RESOURCES = ("disk", "mydb_rows", "mydb_bytes")


def overrides_file(settings: Settings) -> Path:
    return settings.services_state_dir / "quotas.json"


def _overrides(settings: Settings) -> dict:
    try:
        return json.loads(overrides_file(settings).read_text())
    except FileNotFoundError:
        return {}


def _section(data: dict, resource: str, kind: str) -> dict[str, int]:
    """The grants of one *resource* to *kind* ("users"/"groups"). Disk grants are the file's
    top-level ``users``/``groups`` (its first layout); other resources are keyed by name."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown quota resource {resource!r} (known: {', '.join(RESOURCES)})")
    holder = data if resource == "disk" else data.setdefault(resource, {})
    return holder.setdefault(kind, {})


def granted(settings: Settings, resource: str, kind: str, name: str) -> int | None:
    """An operator's grant of *resource* to user or group *name*, or None."""
    return _section(_overrides(settings), resource, kind).get(name)


def set_override(
    settings: Settings, kind: str, name: str, size: int | None, resource: str = "disk"
) -> None:
    """Grant *name* (a user or group) *size* of *resource* (bytes, or rows for ``mydb_rows``);
    None removes the grant."""
    data = _overrides(settings)
    section = _section(data, resource, kind)
    if size is None:
        section.pop(name, None)
    else:
        section[name] = size
    path = overrides_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def user_quota(settings: Settings, groups: list[str] | tuple[str, ...], user: str = "") -> int:
    """A user's home quota in bytes: an operator's grant, else the largest ``quotas.disk``
    among their groups. A user in no configured group gets the smallest configured quota."""
    grant = granted(settings, "disk", "users", user)
    if grant is not None:
        return grant
    values = [settings.groups[g].quotas.disk for g in groups if g in settings.groups]
    if values:
        return max(values)
    return min((g.quotas.disk for g in settings.groups.values()), default=0)


def group_quota(settings: Settings, group: str) -> int:
    """A group directory's quota: an operator's grant, else the group's ``quotas.disk``."""
    grant = granted(settings, "disk", "groups", group)
    return grant if grant is not None else settings.groups[group].quotas.disk


def measure(path: Path) -> int:
    """Bytes used under *path* (allocated blocks, symlinks not followed)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                total += info.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


class DiskUsage:
    """Measured use per workspace root, re-measured after *ttl* seconds, adjusted on writes."""

    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[float, int]] = {}

    def used(self, root: Path) -> int:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(root)
            if cached and cached[0] > now:
                return cached[1]
        value = measure(root)
        with self._lock:
            self._cache[root] = (now + self._ttl, value)
        return value

    def add(self, root: Path, delta: int) -> None:
        """Account for *delta* bytes written (or freed) since the last measurement."""
        with self._lock:
            if root in self._cache:
                expiry, value = self._cache[root]
                self._cache[root] = (expiry, max(0, value + delta))

    def forget(self, root: Path) -> None:
        with self._lock:
            self._cache.pop(root, None)
