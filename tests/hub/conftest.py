"""Fixtures of the hub tests: one real platform per session, started like `sciplat up`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubharness import Harness

from sciplat.config import Settings
from sciplat.hub.bench import ephemeral_settings
from sciplat.hub.platform import Platform
from support.platforms import keep_logs, remove_accounts

#: Hub users the tests make (and whose Unix accounts they remove afterwards).
USERS = {"alice": ["users"], "bob": ["users"], "carol": [], "dave": ["staff"]}
IS_ROOT = os.geteuid() == 0
#: Where the platforms' logs are kept after the tests (test-artifacts/<name>/).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def make_data_dir(prefix: str) -> Path:
    """A data root every lab user can traverse (pytest's tmp_path is 0700 under root's)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


def make_settings(data_dir: Path, broken_env: Path, **hub: object) -> Settings:
    base = {
        "data_dir": str(data_dir),
        "hub": {"default_groups": [], "cull": {"enabled": False}, **hub},
        "sizes": [
            {"name": "tiny", "cpu": 1, "memory": "1Gi"},
            {"name": "small", "cpu": 1, "memory": "3Gi"},
            {"name": "large", "cpu": 2, "memory": "6Gi"},
        ],
        "groups": {
            "users": {
                "scopes": ["custom:tap:read", "custom:image:read", "custom:files:write"],
                "quotas": {"max_size": "small", "named_servers": 1},
            },
            "staff": {
                "scopes": ["custom:tap:read", "custom:portal:use"],
                "quotas": {"max_size": None, "named_servers": 3},
            },
        },
        "images": [
            {"name": "recommended", "tag": "recommended", "display_name": "Recommended"},
            {"name": "w2026_47", "tag": "weekly", "display_name": "Weekly 2026_47"},
            {
                "name": "broken",
                "tag": "experimental",
                "display_name": "Broken (tests)",
                "env": str(broken_env),
            },
        ],
    }
    return ephemeral_settings(Settings.model_validate(base), data_dir)


@pytest.fixture(scope="session")
def broken_env() -> Iterator[Path]:
    """A Python environment without JupyterHub or sciplat: labs from it die at start."""
    path = make_data_dir("sciplat-broken-env-")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(path)], check=True
    )
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(broken_env: Path) -> Iterator[Harness]:
    """A running platform with users alice, bob (group users), carol (none), dave (staff)."""
    data_dir = make_data_dir("sciplat-hubtest-")
    platform = Platform(make_settings(data_dir, broken_env))
    try:
        started = platform.start(build_data=False)
        harness = Harness(platform, started.admin_user, started.admin_password)
        for name, groups in USERS.items():
            harness.create_user(name, groups)
        yield harness
    finally:
        platform.stop()
        keep_logs(platform.settings, ARTIFACTS / "hub-tests")
        remove_accounts(platform.settings, list(USERS))
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def running(hub: Harness) -> Iterator[list[tuple[str, str]]]:
    """Servers a test appends ``(user, server)`` to are stopped after it."""
    started: list[tuple[str, str]] = []
    yield started
    for user, server in started:
        hub.stop(user, server)
