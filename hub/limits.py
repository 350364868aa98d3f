"""Resource limits of a local lab: cgroup v1 or v2 (memory and CPU), else RLIMIT_AS.

The hub makes ``<cgroup>/sciplat/<lab>`` with the size's limits; the lab's first process moves
itself into it before it drops privileges, so everything the lab starts (kernels, dask
workers) inherits the limit. The OOM killer then kills the biggest process in that cgroup (a
kernel), not the lab server or anything outside. Without a writable cgroup controller the
limit is RLIMIT_AS on each process.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["LimitHandle", "Limiter"]

CFS_PERIOD_US = 100_000
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

Mode = Literal["cgroup1", "cgroup2", "rlimit"]


@dataclass
class LimitHandle:
    """The limits of one lab; JSON-able through :meth:`to_state`."""

    mode: Mode
    memory: int
    cpu: float
    dirs: list[str] = field(default_factory=list)

    def to_state(self) -> dict:
        return {"mode": self.mode, "memory": self.memory, "cpu": self.cpu, "dirs": self.dirs}

    @classmethod
    def from_state(cls, state: dict | None) -> LimitHandle | None:
        return cls(**state) if state else None

    def enter(self) -> None:
        """Run in the lab's process before it drops privileges: join the cgroups."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(pid)
        if self.mode == "rlimit" and self.memory:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in Path(d, "cgroup.procs").read_text().split())
        return sorted(found)

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Remove the cgroups (after every process in them has exited)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


class Limiter:
    """Finds the best mechanism on this host and makes a :class:`LimitHandle` per lab."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), prefix: str = "sciplat") -> None:
        self.root = root
        self.prefix = prefix
        self.mode: Mode = self._detect()

    def _detect(self) -> Mode:
        if os.geteuid() != 0:
            return "rlimit"
        v1 = self.root / "memory"
        if (v1 / "memory.limit_in_bytes").exists() and os.access(v1, os.W_OK):
            return "cgroup1"
        controllers = self.root / "cgroup.controllers"
        if (
            controllers.exists()
            and "memory" in controllers.read_text().split()
            and os.access(self.root, os.W_OK)
        ):
            return "cgroup2"
        return "rlimit"

    def prepare(self, key: str, *, memory: int, cpu: float) -> LimitHandle:
        """Create (or reset) the cgroup(s) of lab *key* with its limits."""
        name = _SAFE.sub("_", key)
        handle = LimitHandle(mode=self.mode, memory=memory, cpu=cpu)
        if self.mode == "cgroup1":
            mem = self._mkdir(self.root / "memory" / self.prefix / name)
            (mem / "memory.limit_in_bytes").write_text(str(memory))
            memsw = mem / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                with contextlib.suppress(OSError):
                    memsw.write_text(str(memory))
            handle.dirs.append(str(mem))
            cpu_root = self.root / "cpu"
            if (cpu_root / "cpu.cfs_quota_us").exists() and cpu > 0:
                cg = self._mkdir(cpu_root / self.prefix / name)
                (cg / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (cg / "cpu.cfs_quota_us").write_text(str(int(cpu * CFS_PERIOD_US)))
                handle.dirs.append(str(cg))
        elif self.mode == "cgroup2":
            parent = self._mkdir(self.root / self.prefix)
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            cg = self._mkdir(parent / name)
            (cg / "memory.max").write_text(str(memory))
            if cpu > 0 and (cg / "cpu.max").exists():
                (cg / "cpu.max").write_text(f"{int(cpu * CFS_PERIOD_US)} {CFS_PERIOD_US}")
            handle.dirs.append(str(cg))
        return handle

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path
