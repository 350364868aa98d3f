"""TAP test fixtures: a sample catalog (DuckDB) and clients for the service in the test hub."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sciplat.services.tap.sample import build_sample_catalog
from sciplat.services.tap.storage.duckdb import DuckDBCatalog


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBCatalog]:
    path = build_sample_catalog(tmp_path_factory.mktemp("tapcat"), objects=3000)
    catalog = DuckDBCatalog(path)
    yield catalog
    catalog.close()


@pytest.fixture(scope="session")
def tap_schema(sample_catalog: DuckDBCatalog):
    return sample_catalog.load_schema()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL 15 + pgSphere + q3c cluster for the session."""
    from sciplat.services.tap.pgcluster import start_postgres

    # Not under pytest's private basetemp: the postgres user must be able to enter it.
    cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-pg-")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_catalog(pg_cluster, sample_catalog: DuckDBCatalog):
    """The same sample catalog in the PostgreSQL cluster."""
    from sciplat.services.tap.pgcluster import load_catalog
    from sciplat.services.tap.storage.postgres import PostgresCatalog

    load_catalog(
        pg_cluster,
        sample_catalog._cursor(),
        q3c={"dp1.object": ("coord_ra", "coord_dec"), "dp1.source": ("ra", "dec")},
    )
    return PostgresCatalog(pg_cluster.reader_url)


@pytest.fixture
def pg_database(pg_cluster):
    """Makes a new empty database in the cluster; ``pg_database(name)`` returns its superuser
    URL."""
    import psycopg

    def make(name: str) -> str:
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')
        return pg_cluster.admin_url.rsplit("/", 1)[0] + f"/{name}"

    return make


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def catalog(request: pytest.FixtureRequest):
    """Each backend in turn, loaded with the same sample catalog."""
    if request.param == "duckdb":
        return request.getfixturevalue("sample_catalog")
    return request.getfixturevalue("postgres_catalog")


_SCHEMAS: dict[int, object] = {}


@pytest.fixture
def schema(catalog):
    """TAP_SCHEMA of the backend under test."""
    if id(catalog) not in _SCHEMAS:
        _SCHEMAS[id(catalog)] = catalog.load_schema()
    return _SCHEMAS[id(catalog)]


@pytest.fixture
def make_tap_service(tmp_path: Path):
    """``make_tap_service(catalog)``: a TapService over *catalog* (no HTTP) with its history under
    the test's tmp_path; services made in one test share that history."""
    from sciplat.config import Settings
    from sciplat.services.tap.history import QueryHistory
    from sciplat.services.tap.quota import QueryQuota
    from sciplat.services.tap.services import TapService

    settings = Settings(data_dir=tmp_path)

    def make(catalog) -> TapService:
        return TapService(
            catalog,
            settings,
            history=QueryHistory(tmp_path / "history.sqlite3"),
            quota=QueryQuota(settings),
            public_url="http://x/tap",
        )

    return make


@pytest.fixture(scope="session")
def tap_url(test_hub) -> str:
    return f"{test_hub.api_service_url}/tap"


def session_for(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture(scope="session")
def alice(test_hub) -> requests.Session:
    return session_for(test_hub.token_for("alice"))


@pytest.fixture(scope="session")
def bob(test_hub) -> requests.Session:
    return session_for(test_hub.token_for("bob"))


@pytest.fixture(scope="session")
def obscore_settings(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """Settings whose data set is the tiny data preview (dp1 tables and ivoa.ObsCore built by
    the real pipeline), for the conformance runs that need ObsCore."""
    import os

    from sciplat.config import Settings

    data_dir = tmp_path_factory.mktemp("obscore-api")
    os.symlink(tiny_dataset, data_dir / "dataset")
    return Settings(data_dir=data_dir)


@pytest.fixture(scope="session")
def obscore_tap_url(test_hub, obscore_settings) -> Iterator[str]:
    """TAP over the tiny data preview's DuckDB catalog, tokens checked by the test hub."""
    from sciplat.services.tap.bench import serve_tap

    with serve_tap(obscore_settings, hub_api_url=test_hub.api_url) as url:
        yield url


@pytest.fixture(scope="session")
def obscore_pg_tap_url(test_hub, obscore_settings, tiny_dataset: Path) -> Iterator[str]:
    """The same catalog copied into its own PostgreSQL cluster, served by TAP; the UWS jobs of
    this service live in that PostgreSQL too."""
    import duckdb

    from sciplat.config import CatalogConfig, JobsConfig
    from sciplat.services.tap.bench import serve_tap
    from sciplat.services.tap.pgcluster import load_catalog, start_postgres

    cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-pg-obscore-")))
    try:
        # A copy: this process may already hold the file open with the service's configuration.
        copy = Path(shutil.copy(tiny_dataset / "catalog" / "catalog.duckdb", cluster.directory))
        source = duckdb.connect(str(copy), read_only=True)
        load_catalog(cluster, source, q3c={"dp1.object": ("coord_ra", "coord_dec")})
        settings = obscore_settings.model_copy(
            update={
                "data_dir": Path(tempfile.mkdtemp(prefix="sciplat-pg-obscore-api-")),
                "catalog": CatalogConfig(backend="postgres", url=cluster.reader_url),
                "jobs": JobsConfig(url=cluster.admin_url),
            }
        )
        with serve_tap(settings, hub_api_url=test_hub.api_url) as url:
            yield url
    finally:
        cluster.stop()
