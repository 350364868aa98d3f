"""The status bar's facts: which image and size this lab runs, and its memory use.

Image and size come from the environment the spawner sets (``SCIPLAT_IMAGE``,
``SCIPLAT_IMAGE_TAG``, ``SCIPLAT_IMAGE_DISPLAY``, ``SCIPLAT_SIZE``, and JupyterHub's
``MEM_LIMIT`` / ``CPU_LIMIT``). Memory in use is the lab's cgroup (v2 ``memory.current``, v1
``memory.usage_in_bytes``) when the lab has its own, else the resident memory of the lab
process and everything it started (kernels, dask workers).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["CgroupMemory", "cgroup_memory", "lab_status", "process_tree_rss"]

#: cgroup v1 reports "no limit" as a number close to 2**63.
_UNLIMITED = 2**60


class CgroupMemory(NamedTuple):
    """Memory of a cgroup: bytes in use, and its limit (None: unlimited)."""

    used: int
    limit: int | None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def cgroup_memory(
    proc_cgroup: Path = Path("/proc/self/cgroup"), fs_root: Path = Path("/sys/fs/cgroup")
) -> CgroupMemory | None:
    """Memory of this process's own cgroup (v2 first, then v1), or None when the process sits
    in the root cgroup (whose figures are the whole machine's) or nothing is readable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    candidates = []
    if v2 not in (None, "/"):
        d = fs_root / v2.lstrip("/")
        candidates.append((d / "memory.current", d / "memory.max"))
    if v1 not in (None, "/"):
        d = fs_root / "memory" / v1.lstrip("/")
        candidates.append((d / "memory.usage_in_bytes", d / "memory.limit_in_bytes"))
    for used_file, limit_file in candidates:
        used = _read_int(used_file)
        if used is not None:
            return CgroupMemory(used, _read_int(limit_file))
    return None


def process_tree_rss(pid: int | None = None) -> int:
    """Resident memory of process *pid* (default: this one) and all its descendants."""
    import psutil

    root = psutil.Process(pid or os.getpid())
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def _number(value: str | None, kind: type) -> Any:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if kind is int else number


def lab_status(env: Mapping[str, str], memory: CgroupMemory | None = None) -> dict[str, Any]:
    """The contract's ``status`` answer for a lab with environment *env*.

    *memory* is the lab's cgroup reading; without one, the process tree's resident memory.
    """
    name = env.get("SCIPLAT_IMAGE", "")
    tag = env.get("SCIPLAT_IMAGE_TAG", "")
    display = env.get("SCIPLAT_IMAGE_DISPLAY") or name or "unknown image"
    mem_limit = _number(env.get("MEM_LIMIT"), int)
    cpu = _number(env.get("CPU_LIMIT"), float)
    if memory is None:
        used, cg_limit, source = process_tree_rss(), None, "processes"
    else:
        used, cg_limit, source = memory.used, memory.limit, "cgroup"
    return {
        "image": {"name": name, "tag": tag, "display": display},
        "size": {
            "name": env.get("SCIPLAT_SIZE", ""),
            "cpu": cpu,
            "memory_limit_bytes": mem_limit,
        },
        "memory": {
            "used_bytes": used,
            "limit_bytes": mem_limit or cg_limit,
            "source": source,
        },
    }
