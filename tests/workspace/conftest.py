"""MyDB fixtures: the real API service (TAP + MyDB) on each catalog backend, tokens from the
real test hub.

Each backend gets its own API service process-in-thread (uvicorn) with small MyDB quotas, so
quota tests are quick; the hub-mounted service (``test_hub``) is used for the end-to-end
notebook-client test.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
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


class _Server:
    """A uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, url: str) -> bool:
        """True once *url* answers; False if the server gave up (e.g. the port was taken)."""
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                return False
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API service did not answer at {url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _serve(test_hub, settings: Settings) -> tuple[_Server, str]:
    from sciplat.services.app import create_app, load_plugins
    from support.net import free_port

    for _ in range(3):  # a free port can be taken by another process before we bind it
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/services/api"
        app = create_app(
            settings,
            prefix="/services/api",
            hub_api_url=test_hub.api_url,
            public_url=api_url,
            plugins=load_plugins(["sciplat.services.tap:plugin", "sciplat.services.mydb:plugin"]),
        )
        server = _Server(app, port)
        if server.start(f"{api_url}/health"):
            return server, api_url
    raise RuntimeError("the API service did not start (see the log above)")


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
    server, api_url = _serve(test_hub, settings)
    yield Platform("duckdb", api_url, settings, test_hub)
    server.stop()


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
        server, api_url = _serve(test_hub, settings)
        try:
            yield Platform("postgres", api_url, settings, test_hub, admin_url=cluster.admin_url)
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def platform(request: pytest.FixtureRequest) -> Platform:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_platform")
