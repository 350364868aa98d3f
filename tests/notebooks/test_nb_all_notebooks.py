"""Every notebook in ``notebooks/`` runs on a real platform over the tiny data preview.

The platform is the one ``sciplat up`` starts (proxy, JupyterHub, the API service with the
notebooks execution service, the dask-gateway and the portal), over a copy of the suite's
``tiny`` data set. ``sciplat check notebooks`` logs a bot in, spawns its lab and runs every
notebook it finds (tutorials, commissioning, templates with their default parameters) cell by
cell in kernels of that lab, as that bot; any failure fails the test. The report, with
per-cell timings and the kinds of output each cell showed, is kept in
``test-artifacts/notebooks/check-notebooks.json``.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

import sciplat.notebooks
from sciplat.config import Settings
from sciplat.hub.bench import ephemeral_settings
from sciplat.hub.platform import Platform
from sciplat.pipelines.drp.release import copy_repo
from sciplat.services.notebooks.bots import collect_notebooks
from support.platforms import keep_logs, remove_accounts, stop_user_processes

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "notebooks"
ROOT = Path(sciplat.notebooks.__file__).resolve().parent
#: Bot users are machine-wide Unix accounts: a name of this session's own (another platform on
#: this machine may run bots of the default name).
PREFIX = f"nbci{secrets.token_hex(3)}"
BOT = f"{PREFIX}-0"
#: Notebooks one bot runs at once (the platform below executes as many at once).
JOBS = 3


@pytest.fixture(scope="module")
def platform(tiny_dataset: Path) -> Iterator[Platform]:
    """``sciplat up`` in a throw-away data root (readable by lab accounts) over the tiny data."""
    data_dir = Path(tempfile.mkdtemp(prefix="sciplat-nbci-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    copy_repo(tiny_dataset, data_dir / "dataset")  # pixels hard-linked, databases copied
    base = Settings(data_dir=data_dir, dataset="tiny", hub={"cull": {"enabled": False}})
    base.notebooks.max_concurrent = JOBS
    base.groups["users"].quotas.notebooks_concurrent = JOBS
    platform = Platform(ephemeral_settings(base, data_dir), log_level="WARN")
    try:
        platform.start(build_data=False)
        yield platform
    finally:
        platform.stop()
        stop_user_processes(BOT)  # dask clusters outlive the gateway by design
        keep_logs(platform.settings, ARTIFACTS / "logs")
        remove_accounts(platform.settings, [BOT])
        shutil.rmtree(data_dir, ignore_errors=True)


def _code_cells(path: Path) -> list[int]:
    """Indices of the cells nbclient executes (code cells with source)."""
    nb = nbformat.read(path, as_version=4)
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]


@pytest.mark.timeout(1800)  # the tiny data build and the platform start count too
def test_every_notebook_runs_on_the_tiny_data_preview(platform: Platform) -> None:
    notebooks = collect_notebooks(ROOT)
    assert len(notebooks) >= 11, notebooks  # 6 tutorials, 3 commissioning, 2 templates at least
    report_path = ARTIFACTS / "check-notebooks.json"
    report_path.unlink(missing_ok=True)
    sciplat = Path(sys.executable).parent / "sciplat"
    env = {**os.environ, "SCIPLAT_ADMIN_TOKEN": platform.api_token()}
    result = subprocess.run(
        [str(sciplat), "check", "notebooks", "--url", platform.local_url,
         "--bot-prefix", PREFIX, "--lab-size", "medium",
         "--jobs", str(JOBS), "--timeout", "900", "--report", str(report_path)],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    (ARTIFACTS / "check-notebooks.log").write_text(result.stderr + result.stdout)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["failed"] == 0 and report["via"] == "lab"
    assert report["spawn_errors"] == {}
    assert report["spawn_seconds"][BOT] > 0

    # Every notebook found on disk ran in a kernel of the bot's lab, as the bot, to its last
    # cell, each cell timed; the tutorials drew their plots on the data.
    unix_user = BOT if os.geteuid() == 0 else getpass.getuser()  # not root: one uid for all
    ran = {r["notebook"]: r for r in report["notebooks"]}
    assert set(ran) == {str(p.relative_to(ROOT)) for p in notebooks}
    for path in notebooks:
        run = ran[str(path.relative_to(ROOT))]
        assert run["bot"] == BOT and run["status"] == "succeeded", run
        assert run["via"] == "lab"
        assert run["identity"] == {"hub_user": BOT, "unix_user": unix_user}, run["identity"]
        assert [c["index"] for c in run["cells"]] == _code_cells(path), run["notebook"]
        assert all(c["seconds"] is not None and c["seconds"] >= 0 for c in run["cells"])
        assert run["kernel_seconds"] > 0
        if run["notebook"].startswith("tutorials/"):
            shown = [kind for c in run["cells"] for kind in c["outputs"]]
            assert "image/png" in shown, f"{run['notebook']} drew no plot"
    assert "passed, 0 failed" in result.stdout

    # The bot's lab was spawned for the check and stopped after it.
    with platform.api() as hub:
        assert hub.get(f"/users/{BOT}").json()["servers"] == {}
