"""Fixtures shared by every area's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sciplat.config import Settings
from support.hub import TestHub, start_test_hub


@pytest.fixture(scope="session")
def platform_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings with a private data directory."""
    return Settings(data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def catalog_dataset(platform_settings: Settings) -> Path:
    """The catalog the API service's TAP reads (``dataset_dir/catalog/catalog.duckdb``): a
    small synthetic one with TAP_SCHEMA unless a data set is already in place."""
    path = platform_settings.dataset_dir / "catalog" / "catalog.duckdb"
    if not path.exists():
        from sciplat.services.tap.sample import build_sample_catalog

        build_sample_catalog(platform_settings.dataset_dir, objects=5000)
    return path


@pytest.fixture(scope="session")
def test_hub(
    tmp_path_factory: pytest.TempPathFactory, platform_settings: Settings, catalog_dataset: Path
) -> Iterator[TestHub]:
    """A real JupyterHub + proxy with the API service, users alice/bob (group users) and carol
    (no groups). ``test_hub.token_for("alice")`` mints tokens."""
    hub = start_test_hub(Path(tmp_path_factory.mktemp("hub")), platform_settings)
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` simulated data preview (seed 42), built once per test session.

    Returns the dataset root (``butler/``, ``catalog/catalog.duckdb``, ``catalog/parquet/``,
    ``dataset.json``; read it with ``sciplat.pipelines.dataset.load_info``). Set
    ``SCIPLAT_TEST_DATASET=/some/dir`` to build it there once and reuse it across sessions.
    """
    import os

    from sciplat.pipelines.dataset import build_dataset

    cached = os.environ.get("SCIPLAT_TEST_DATASET")
    root = Path(cached) if cached else tmp_path_factory.mktemp("tiny_dataset") / "dataset"
    build_dataset(root, size="tiny", seed=42, progress=False)
    return root
