"""``sciplat check notebooks`` against the real hub and its API service: bot users, per-cell
timings, exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_check_notebooks_runs_a_template_as_a_bot(test_hub):
    sciplat = Path(sys.executable).parent / "sciplat"
    env = {**os.environ, "SCIPLAT_ADMIN_TOKEN": test_hub.admin_token}
    result = subprocess.run(
        [str(sciplat), "check", "notebooks", "--url", test_hub.url,
         "--only", "templates/platform-check", "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["failed"] == 0
    [run] = report["notebooks"]
    assert run["bot"] == "bot-notebooks-0"
    assert run["notebook"] == "templates/platform-check.ipynb"
    assert run["status"] == "succeeded"
    assert [c["index"] for c in run["cells"]] == [1, 2, 3]
    assert all(c["seconds"] is not None for c in run["cells"])
    assert run["kernel_seconds"] > 0
    assert "ok   bot-notebooks-0 templates/platform-check.ipynb succeeded" in result.stderr
    # The bot is a real hub user in the group that grants notebook runs.
    with test_hub.admin() as admin:
        user = admin.get("/users/bot-notebooks-0").json()
    assert "users" in user["groups"]
