"""Fixtures of the image and cone-search service tests.

``image_dataset``: the data preview the services read (the suite's ``tiny_dataset``) plus a
HiPS survey of band g and the Object HiPS catalogue. ``image_server``: the API service with
the image plugins, served by uvicorn on a loopback port and checking tokens against the real
test hub (its settings point at ``image_dataset``; the hub's own API service reads the TAP
sample catalog).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagetools import ImageServer, serve_images

from sciplat.services.images.catalogdb import connect_catalog

HIPS_BAND = "g"


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
    with serve_images(test_hub, data_dir) as server:
        yield server


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
