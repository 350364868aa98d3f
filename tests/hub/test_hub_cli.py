"""`sciplat up` / `status` / `down` as commands, the first admin, and idle culling."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ARTIFACTS, make_data_dir
from hubharness import Harness

from sciplat.config import Settings
from sciplat.hub.bench import _free_port
from sciplat.hub.platform import Platform
from support.platforms import keep_logs, remove_accounts

pytestmark = pytest.mark.integration
SCIPLAT = [str(Path(sys.executable).parent / "sciplat")]


def sciplat(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*SCIPLAT, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_platform():
    data_dir = make_data_dir("sciplat-clitest-")
    config = data_dir / "sciplat.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "hub": {"default_groups": [], "cull": {"enabled": True, "timeout": 15, "every": 3}},
                "ports": {
                    name: _free_port()
                    for name in ("proxy_api", "hub", "api", "portal", "gateway", "gateway_tcp")
                },
            }
        )
    )
    port = _free_port()
    yield config, data_dir, port
    settings_file = data_dir / "run" / "settings.json"
    if settings_file.exists():
        settings = Settings.model_validate_json(settings_file.read_text())
        Platform(settings).stop()
        keep_logs(settings, ARTIFACTS / "hub-cli-tests")
        remove_accounts(settings, ["erin"])
    shutil.rmtree(data_dir, ignore_errors=True)


def test_up_status_cull_down(cli_platform):
    config, data_dir, port = cli_platform
    args = ["--config", str(config), "--data-dir", str(data_dir)]

    first = sciplat("up", *args, "--port", str(port), "--no-data")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"sciplat is up: http://127.0.0.1:{port}/" in first.stdout
    password = re.search(r"first admin: admin\s+password: (\S+)", first.stdout).group(1)
    # Stored only hashed: the password appears in no file of the data root.
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    settings = Settings.model_validate_json((data_dir / "run/settings.json").read_text())
    platform = Platform(settings)
    pids = (platform.proxy.pid(), platform.hub.pid())
    again = sciplat("up", *args, "--port", str(port), "--no-data")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "password" not in again.stdout.replace("password set on first run", "")
    assert (platform.proxy.pid(), platform.hub.pid()) == pids  # nothing restarted

    status = sciplat("status", *args, "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["healthy"] and info["hub"]["pid"] == pids[1] and info["labs"] == []

    # The admin logs in with the printed password.
    hub = Harness(platform, "admin", password)
    hub.admin_browser().close()

    # An idle lab is culled by jupyterhub-idle-culler (timeout 15 s, checks every 3 s).
    hub.create_user("erin")
    hub.start("erin")
    running = json.loads(sciplat("status", *args, "--json").stdout)["labs"]
    assert [(lab["user"], lab["ready"]) for lab in running] == [("erin", True)]
    deadline = time.monotonic() + 90
    while hub.server_model("erin") is not None and time.monotonic() < deadline:
        time.sleep(1)
    assert hub.server_model("erin") is None, "the idle culler did not stop erin's lab"
    assert "Culling server erin" in (data_dir / "run/hub.log").read_text()

    down = sciplat("down", *args)
    assert down.returncode == 0, down.stderr
    assert platform.hub.pid() is None and platform.proxy.pid() is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/hub/health", timeout=2)
    stopped = sciplat("status", *args)
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    assert not os.path.exists(data_dir / "run/hub.pid")
