"""TAP test fixtures: a sample catalog (DuckDB) and clients for the service in the test hub."""

from __future__ import annotations

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
