"""Fixtures of the image and cone-search service tests.

``image_dataset``: the data preview the services read (the suite's ``tiny_dataset``) plus a
HiPS survey of band g and the Object HiPS catalogue. ``image_server``: the API service with
the image plugins, served by uvicorn on a loopback port and checking tokens against the real
test hub (its settings point at ``image_dataset``; the hub's own API service reads the TAP
sample catalog).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from sciplat.config import Settings
from sciplat.services.app import create_app
from sciplat.services.hips import plugin as hips_plugin
from sciplat.services.images import datalink, sia, soda
from sciplat.services.images.catalogdb import connect_catalog
from sciplat.services.scs import plugin as scs_plugin
from support.net import free_port, wait_for_http

PLUGINS = [sia.plugin, datalink.plugin, soda.plugin, scs_plugin, hips_plugin]
HIPS_BAND = "g"


@dataclass
class ImageServer:
    url: str  # the platform root, e.g. http://127.0.0.1:1234
    settings: Settings

    @property
    def api(self) -> str:
        return f"{self.url}/services/api"


@pytest.fixture(scope="session")
def image_dataset(tiny_dataset: Path) -> Path:
    """The data preview (with a HiPS survey of band g and the Object HiPS catalogue)."""
    from sciplat.services.hips.build import build_hips

    root = Path(tiny_dataset)
    if not all((root / "hips" / name / "properties").exists() for name in (HIPS_BAND, "object")):
        build_hips(root, bands=[HIPS_BAND], binning=4)
    return root


@pytest.fixture(scope="session")
def image_server(test_hub, image_dataset, tmp_path_factory) -> Iterator[ImageServer]:
    data_dir = tmp_path_factory.mktemp("images-data")
    os.symlink(image_dataset, data_dir / "dataset")
    settings = test_hub.settings.model_copy(update={"data_dir": data_dir})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(
        settings,
        prefix="/services/api",
        hub_api_url=test_hub.api_url,
        public_url=f"{url}/services/api",
        plugins=PLUGINS,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="image-server", daemon=True)
    thread.start()
    try:
        wait_for_http(f"{url}/services/api/health", timeout=60)
        yield ImageServer(url=url, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="session")
def tokens(test_hub) -> dict[str, str]:
    return {
        "alice": test_hub.token_for("alice"),
        "bob": test_hub.token_for("bob"),
        "carol": test_hub.token_for("carol"),
        "tap_only": test_hub.token_for("alice", scopes=["custom:tap:read"]),
        "image_only": test_hub.token_for("alice", scopes=["custom:image:read"]),
    }


@pytest.fixture
async def api(image_server, tokens) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the image server, authenticated as alice."""
    async with httpx.AsyncClient(
        base_url=image_server.url,
        headers={"Authorization": f"Bearer {tokens['alice']}"},
        timeout=120,
    ) as client:
        yield client


@pytest.fixture(scope="session")
def obscore_rows(image_dataset) -> list[dict[str, Any]]:
    con = connect_catalog(image_dataset / "catalog" / "catalog.duckdb")
    try:
        cursor = con.execute("SELECT * FROM ivoa.obscore")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="session")
def visit_image(obscore_rows) -> dict[str, Any]:
    """The ObsCore row of one visit image (calibration level 2)."""
    return next(r for r in obscore_rows if r["calib_level"] == 2)
