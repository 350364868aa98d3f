"""MyDB fixtures: the real API service (TAP + MyDB) on each catalog backend, tokens from the
real test hub.

Each backend gets its own API service process-in-thread (uvicorn) with small MyDB quotas, so
quota tests are quick; the hub-mounted service (``test_hub``) is used for the end-to-end
notebook-client test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mydb_support import MAX_UPLOAD, QUOTA_ROWS, Platform

from sciplat.config import (
    KNOWN_SCOPES,
    CatalogConfig,
    GroupConfig,
    MyDBConfig,
    QuotaConfig,
    Settings,
)


def _settings(data_dir: Path, catalog: CatalogConfig, mydb: MyDBConfig) -> Settings:
    scopes = sorted(KNOWN_SCOPES)
    return Settings(
        data_dir=data_dir,
        catalog=catalog,
        mydb=mydb,
        groups={
            "users": GroupConfig(
                scopes=scopes, quotas=QuotaConfig(mydb_rows=QUOTA_ROWS, mydb_bytes="8Mi")
            ),
            "staff": GroupConfig(scopes=scopes),
        },
    )


@contextmanager
def _serve(test_hub, settings: Settings) -> Iterator[str]:
    """The API service (TAP + MyDB) in a thread on a loopback socket; yields its URL."""
    from sciplat.services.app import create_app, load_plugins
    from sciplat.services.tap.bench import bound_socket, serve_app

    sock = bound_socket()  # bound before the app is made: no free-port race
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}/services/api"
    app = create_app(
        settings,
        prefix="/services/api",
        hub_api_url=test_hub.api_url,
        public_url=api_url,
        plugins=load_plugins(["sciplat.services.tap:plugin", "sciplat.services.mydb:plugin"]),
    )
    with serve_app(app, sock):
        yield api_url


@pytest.fixture(scope="session")
def mydb_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample catalog (dp1.Object, dp1.Source, TAP_SCHEMA) in a dataset directory."""
    from sciplat.services.tap.sample import build_sample_catalog

    data = tmp_path_factory.mktemp("mydb-duckdb")
    build_sample_catalog(data / "dataset", objects=3000)
    return data


@pytest.fixture(scope="session")
def duckdb_platform(test_hub, mydb_catalog: Path) -> Iterator[Platform]:
    settings = _settings(mydb_catalog, CatalogConfig(), MyDBConfig(max_upload_bytes=MAX_UPLOAD))
    with _serve(test_hub, settings) as api_url:
        yield Platform("duckdb", api_url, settings, test_hub)


@pytest.fixture(scope="session")
def postgres_platform(test_hub, mydb_catalog: Path) -> Iterator[Platform]:
    """The same catalog in a private PostgreSQL (pgSphere, q3c); TAP reads as ``tapreader``,
    MyDB writes as the cluster's superuser."""
    import duckdb

    from sciplat.services.tap.pgcluster import load_catalog, start_postgres

    cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-mydb-pg-")))
    try:
        # A copy: the DuckDB platform holds the catalog open, and DuckDB refuses a second
        # connection to one file with another configuration.
        copy = cluster.directory / "source.duckdb"
        shutil.copy(mydb_catalog / "dataset" / "catalog" / "catalog.duckdb", copy)
        source = duckdb.connect(str(copy), read_only=True)
        load_catalog(cluster, source, q3c={"dp1.object": ("coord_ra", "coord_dec")})
        data = Path(tempfile.mkdtemp(prefix="sciplat-mydb-pgdata-"))
        settings = _settings(
            data,
            CatalogConfig(backend="postgres", url=cluster.reader_url),
            MyDBConfig(max_upload_bytes=MAX_UPLOAD, writer_url=cluster.admin_url),
        )
        try:
            with _serve(test_hub, settings) as api_url:
                yield Platform("postgres", api_url, settings, test_hub, admin_url=cluster.admin_url)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def platform(request: pytest.FixtureRequest) -> Platform:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_platform")
