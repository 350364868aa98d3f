"""Local backend pieces without a hub: limits, accounts, the single-uid warning, contracts."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from pathlib import Path

import pytest

from sciplat.hub.accounts import AccountError, AccountManager
from sciplat.hub.backends import SpawnerBackend, backend_class
from sciplat.hub.limits import CFS_PERIOD_US, Limiter, LimitHandle


def fake_cgroup_v1(root: Path) -> None:
    for controller, files in {
        "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
        "cpu": ["cpu.cfs_quota_us", "cpu.cfs_period_us"],
    }.items():
        (root / controller).mkdir(parents=True)
        for name in files:
            (root / controller / name).write_text("-1\n")


def test_cgroup_v1_limits_are_written_and_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fake_cgroup_v1(tmp_path)
    limiter = Limiter(tmp_path)
    assert limiter.mode == "cgroup1"
    handle = limiter.prepare("alice--analysis", memory=2**30, cpu=1.5)
    mem = tmp_path / "memory/sciplat/alice--analysis"
    cpu = tmp_path / "cpu/sciplat/alice--analysis"
    assert (mem / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (cpu / "cpu.cfs_quota_us").read_text() == str(int(1.5 * CFS_PERIOD_US))
    assert handle.dirs == [str(mem), str(cpu)]
    # The state round-trips (a restarted hub can still clean up).
    assert LimitHandle.from_state(handle.to_state()) == handle
    for d in handle.dirs:  # a real cgroup directory holds only kernel files
        for f in Path(d).iterdir():
            f.unlink()
    handle.remove()
    assert not mem.exists() and not cpu.exists()


def test_cgroup_v2_when_v1_is_absent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    limiter = Limiter(tmp_path)
    assert limiter.mode == "cgroup2"
    original_mkdir = Limiter._mkdir

    def mkdir(path: Path) -> Path:  # the kernel populates a new v2 cgroup with these files
        original_mkdir(path)
        for name in ("memory.max", "cpu.max", "cgroup.procs"):
            (path / name).touch()
        return path

    monkeypatch.setattr(Limiter, "_mkdir", staticmethod(mkdir))
    handle = limiter.prepare("bob", memory=3 * 2**30, cpu=2)
    cg = tmp_path / "sciplat/bob"
    assert (cg / "memory.max").read_text() == str(3 * 2**30)
    assert (cg / "cpu.max").read_text() == f"{2 * CFS_PERIOD_US} {CFS_PERIOD_US}"
    assert handle.mode == "cgroup2"


def test_rlimit_without_cgroups(tmp_path: Path) -> None:
    limiter = Limiter(tmp_path)  # nothing mounted there
    assert limiter.mode == "rlimit"
    handle = limiter.prepare("carol", memory=2**31, cpu=1)
    assert handle.dirs == [] and handle.memory == 2**31


def test_single_uid_mode_warns_loudly(tmp_path: Path, monkeypatch, caplog) -> None:
    from sciplat.hub.backends import local

    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(local, "_WARNED", set())
    log = logging.getLogger("test-local-backend")
    with caplog.at_level(logging.WARNING, logger="test-local-backend"):
        backend = local.LocalBackend(homes_dir=str(tmp_path), log=log)
    assert not backend.is_root
    assert "NOT running as root" in caplog.text and "single-uid" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (reads the real passwd database)")
def test_existing_system_accounts_are_never_taken_over(tmp_path: Path) -> None:
    manager = AccountManager(tmp_path)
    with pytest.raises(AccountError, match="not a sciplat account"):
        asyncio.run(manager.ensure("daemon"))
    assert not (tmp_path / "daemon").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a Unix account)")
def test_a_recreated_account_gets_its_home_back(tmp_path: Path) -> None:
    manager = AccountManager(tmp_path)
    name = f"reown{os.getpid() % 100000}"
    try:
        first = asyncio.run(manager.ensure(name))
        (first.home / "work").mkdir()
        (first.home / "work" / "notes.txt").write_text("mine")
        os.chown(first.home / "work", first.uid, first.gid)
        os.chown(first.home / "work" / "notes.txt", first.uid, first.gid)
        (first.home / "shared.txt").write_text("root's")  # another owner's file stays theirs
        asyncio.run(manager.remove(name))
        # Take the old uid so the next account cannot get it again.
        blocker = f"blk{os.getpid() % 100000}"
        subprocess.run(["useradd", "--no-create-home", "-u", str(first.uid), blocker], check=True)
        try:
            second = asyncio.run(manager.ensure(name))
        finally:
            subprocess.run(["userdel", blocker], check=False)
        assert second.uid != first.uid
        assert (first.home / "work" / "notes.txt").stat().st_uid == second.uid
        assert (first.home / "work").stat().st_uid == second.uid
        assert (first.home / "shared.txt").stat().st_uid == 0
    finally:
        asyncio.run(manager.remove(name))


@pytest.mark.parametrize("name", ["Alice", "a/b", "-x", "x" * 40, "../etc"])
def test_names_that_cannot_be_unix_accounts_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(AccountError, match="cannot be a Unix account name"):
        asyncio.run(AccountManager(tmp_path).ensure(name))


def test_backend_contract_is_enforced() -> None:
    with pytest.raises(NotImplementedError, match="must override stop, poll"):

        class Half(SpawnerBackend):
            async def start(self, spec, progress):
                yield {}

    assert backend_class("local").__name__ == "LocalBackend"
    with pytest.raises(ValueError, match="unknown spawner backend 'nope'"):
        backend_class("nope")
