"""Fixtures of the lab extension tests: one real platform per session (proxy, hub, API service
with TAP and notebook runs, portal, dask-gateway) started like `sciplat up`, with labuser's lab
spawned; and an "offline" lab whose platform services are unreachable."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from labhelpers import ARTIFACTS, USER, Harness, LabPlatform, add_native_user

from sciplat.config import Settings
from sciplat.hub.bench import ephemeral_settings
from sciplat.hub.platform import Platform
from support.net import free_port, wait_for_http
from support.platforms import keep_logs, remove_accounts

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def offline_lab_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A lab server (JupyterLab + our extension) whose TAP, notebooks and portal are all
    unreachable: its discovery document points at closed ports. Started early, in the
    background (a lab takes a while to start on a busy machine)."""
    base = tmp_path_factory.mktemp("offline")
    home = base / "home"
    home.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    discovery = base / "discovery.json"
    from sciplat.client import discovery_document

    discovery.write_text(discovery_document(dead).model_dump_json())
    port, token = free_port(), "offline-lab-token"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "FIREFLY"))},
        "HOME": str(home),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "JUPYTERHUB_API_TOKEN": "not-a-real-token",
        "SCIPLAT_DISCOVERY": str(discovery),
        "SCIPLAT_IMAGE": "recommended",
        "SCIPLAT_SIZE": "small",
        "MEM_LIMIT": str(4 * 2**30),
        "CPU_LIMIT": "1",
    }
    log = open(base / "lab.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(VENV_BIN / "jupyter"), "lab", "--allow-root", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}",
         # free space is never enough: the start-up dialog reports "disk full"
         f"--SciplatLab.disk_free_min_bytes={2**62}"],
        env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    info = {"url": f"http://127.0.0.1:{port}", "token": token, "home": home, "process": proc,
            "log": base / "lab.log"}  # fmt: skip
    try:
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def offline_lab(offline_lab_process: dict) -> dict:
    """The offline lab, once it answers."""
    info = offline_lab_process
    wait_for_http(f"{info['url']}/api/status?token={info['token']}", timeout=180,
                  process=info["process"])  # fmt: skip
    return info


@pytest.fixture(scope="session")
def lab_platform(offline_lab_process: dict) -> Iterator[LabPlatform]:
    """The platform with labuser (group users: every scope) and her running lab (small size)."""
    from sciplat.services.tap.sample import build_sample_catalog

    data_dir = Path(tempfile.mkdtemp(prefix="sciplat-labtest-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    base = Settings.model_validate(
        {"hub": {"default_groups": [], "cull": {"enabled": False}},
         "gateway": {"heartbeat_period": 2, "worker_memory": "512Mi"}}
    )  # fmt: skip
    settings = ephemeral_settings(base, data_dir)
    build_sample_catalog(settings.dataset_dir, objects=2000)
    password = add_native_user(settings, USER)
    platform = Platform(settings)
    try:
        started = platform.start(build_data=False, timeout=240)
        harness = Harness(platform, started.admin_user, started.admin_password)
        harness.create_user(USER, ["users"])
        harness.start(USER, {"image": "recommended", "size": "small"})
        yield LabPlatform(harness, settings, password)
    finally:
        platform.stop()
        keep_logs(settings, ARTIFACTS / "logs")
        remove_accounts(settings, [USER])
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep a screenshot of the browser page when a browser test fails."""
    report = yield
    if report.when == "call" and report.failed and "page" in getattr(item, "funcargs", {}):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):  # the report matters more than the picture
            item.funcargs["page"].screenshot(path=str(ARTIFACTS / f"failed-{item.name}.png"))
    return report
