"""Fixtures of the portal tests: a real hub (with the API service and the portal registered by
its hub extension) over the suite's tiny data preview (catalogs, ObsCore, Butler images, HiPS),
so TAP, SIAv2, SODA, HiPS and WebDAV are the platform's real services."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sciplat.config import Settings
from support.hub import TestHub, start_test_hub
from support.net import free_port, wait_for_http

EXTENSION = "sciplat.services.portal.hubconf:configure"


@pytest.fixture(scope="session")
def portal_hub(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Iterator[TestHub]:
    data = tmp_path_factory.mktemp("portal-data")
    os.symlink(tiny_dataset, data / "dataset")
    settings = Settings(data_dir=data)
    settings = settings.model_copy(
        update={"ports": settings.ports.model_copy(update={"portal": free_port()})}
    )
    hub = start_test_hub(
        Path(tmp_path_factory.mktemp("portal-hub")), settings, extensions=[EXTENSION]
    )
    try:
        wait_for_http(f"{hub.url}/services/portal/health", timeout=120)
        # a user's first visit (/api/me) makes the portal import HoloViews and compile
        # datashader in the background: started now, it overlaps the tests that do not plot
        me = httpx.get(
            f"{hub.url}/services/portal/api/me",
            headers={"Authorization": f"Bearer {hub.token_for('alice')}"},
            timeout=60,
        )
        me.raise_for_status()
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="session")
def counts(tiny_dataset: Path) -> dict[str, int]:
    """Row counts of the data preview's tables (``dp1.Object`` -> 1052 ...)."""
    return json.loads((tiny_dataset / "dataset.json").read_text())["counts"]


@pytest.fixture(scope="session")
def portal_url(portal_hub: TestHub) -> str:
    return f"{portal_hub.url}/services/portal"


@pytest.fixture(scope="session")
def alice(portal_hub: TestHub, portal_url: str) -> Iterator[httpx.Client]:
    """A client of the portal's API with alice's token (one for the session)."""
    token = portal_hub.token_for("alice")
    with httpx.Client(
        base_url=portal_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as client:
        yield client
