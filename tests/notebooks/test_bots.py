"""``sciplat check notebooks --via service`` against the real hub and its API service: bot users,
per-cell timings, exit status. (``--via lab``, the default, runs in spawned labs: see
``test_nb_all_notebooks.py``.)"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from support.platforms import remove_accounts, stop_user_processes

pytestmark = pytest.mark.integration

#: Bot users are hub users (and, as root, Unix accounts of the whole machine): a name of this
#: test session's own, so two sessions on one machine never share or delete each other's bot.
PREFIX = f"nbbot{secrets.token_hex(3)}"
BOT = f"{PREFIX}-0"


@pytest.fixture
def bot(test_hub):
    yield BOT
    with test_hub.admin() as admin:
        admin.delete(f"/users/{BOT}")
    stop_user_processes(BOT)
    remove_accounts(test_hub.settings, [BOT])


def test_check_notebooks_runs_a_template_as_a_bot(test_hub, bot):
    sciplat = Path(sys.executable).parent / "sciplat"
    env = {**os.environ, "SCIPLAT_ADMIN_TOKEN": test_hub.admin_token}
    result = subprocess.run(
        [str(sciplat), "check", "notebooks", "--url", test_hub.url,
         "--via", "service", "--bot-prefix", PREFIX,
         "--only", "templates/platform-check", "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["failed"] == 0
    [run] = report["notebooks"]
    assert report["via"] == "service"
    assert run["bot"] == BOT and run["via"] == "service"
    assert run["notebook"] == "templates/platform-check.ipynb"
    assert run["status"] == "succeeded"
    assert [c["index"] for c in run["cells"]] == [1, 2, 3]
    assert all(c["seconds"] is not None for c in run["cells"])
    assert run["kernel_seconds"] > 0
    assert f"ok   {BOT} templates/platform-check.ipynb succeeded" in result.stderr
    # The bot is a real hub user in the group that grants notebook runs.
    with test_hub.admin() as admin:
        user = admin.get(f"/users/{BOT}").json()
    assert "users" in user["groups"]
