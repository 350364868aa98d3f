"""As root, a run executes under the requesting user's Unix account (not the service's)."""

from __future__ import annotations

import asyncio
import os
import pwd

import pytest
from conftest import code, notebook

from sciplat.config import Settings
from sciplat.services.notebooks.engine import Executor

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create Unix accounts"),
]

USER = "nbtest-runner"


def test_kernel_runs_as_the_users_account_under_uvloop(tmp_path):
    # uvicorn[standard] serves the API with uvloop, whose subprocesses differ from asyncio's.
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run_as_user(tmp_path))


async def _run_as_user(tmp_path):
    from sciplat.hub.accounts import AccountManager

    settings = Settings(data_dir=tmp_path / "data")
    executor = Executor(settings)
    assert executor.separate_users
    try:
        run_as = await executor.run_as(USER, "token-of-user")
        entry = pwd.getpwnam(USER)
        assert (run_as.uid, run_as.gid) == (entry.pw_uid, entry.pw_gid)
        nb = notebook(
            code("import os, getpass\nprint(os.getuid(), os.getgid(), os.getgroups(), "
                 "getpass.getuser())"),
            code("open('made-by-run.txt', 'w').write('x')\nprint(os.path.realpath('.'))"),
        )  # fmt: skip
        result = await executor.execute(nb, run_as=run_as, timeout=120)
        assert result.status == "succeeded", (result.error, result.stderr[-2000:])
        uid, gid, groups, name = result.notebook["cells"][0]["outputs"][0]["text"].split(" ", 3)
        assert int(uid) == entry.pw_uid != 0
        assert int(gid) == entry.pw_gid
        assert name.strip() == USER
        expected = sorted(os.getgrouplist(USER, entry.pw_gid))
        assert sorted(int(g) for g in groups.strip("[]").split(", ")) == expected  # as labs
        made = run_as.home / "made-by-run.txt"
        assert made.stat().st_uid == entry.pw_uid
    finally:
        await AccountManager(settings.homes_dir).remove(USER)
