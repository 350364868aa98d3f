"""Catalog backends below the service: timeouts, abandoned streams and the PostgreSQL connection
pool, reloading a catalog into PostgreSQL, and a DuckDB catalog replaced by a new release."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pytest

from sciplat.services.tap.sample import build_sample_catalog
from sciplat.services.tap.services import TapRequest, TapService
from sciplat.services.tap.storage.base import QueryTimeout
from sciplat.services.tap.storage.duckdb import DuckDBCatalog
from sciplat.services.tap.votable.formats import output_format

#: A query that runs for minutes on each backend.
_SLOW = {
    "duckdb": "SELECT count(*) FROM range(100000000000) AS t(i) WHERE i % 7 = 3",
    "postgres": "SELECT count(*) FROM generate_series(1, 10000000000) AS i WHERE i % 7 = 3",
}


def _count(catalog, sql: str) -> int:
    with catalog.execute(sql) as result:
        return sum(batch.num_rows for batch in result.batches)


def test_timeout_cancels_the_query(catalog) -> None:
    started = time.monotonic()
    with (
        pytest.raises(QueryTimeout, match="cancelled"),
        catalog.execute(_SLOW[catalog.name], timeout=0.5) as result,
    ):
        list(result.batches)
    assert time.monotonic() - started < 30
    # The backend still answers afterwards.
    assert _count(catalog, "SELECT 1 AS one") == 1


def test_postgres_pool_survives_errors_and_abandoned_streams(postgres_catalog) -> None:
    catalog = postgres_catalog
    big = "SELECT a.objectid FROM dp1.object a, dp1.object b"  # 9M rows: many batches
    result = catalog.execute(big)
    assert next(result.batches).num_rows > 0
    result.close()  # mid-COPY: the connection is dropped, not pooled
    with pytest.raises(Exception, match="does not exist"):
        catalog.execute("SELECT nosuch FROM dp1.object")
    with pytest.raises(Exception, match="read-only transaction"):
        list(catalog.execute("CREATE TABLE dp1.x (a int)").batches)
    for _ in range(3):
        assert _count(catalog, "SELECT objectid FROM dp1.object WHERE objectid < 10") == 9
    assert len(catalog._pool._idle) <= catalog._pool.keep
    # NUMERIC results (SUM of bigint, AVG) come back as doubles, NULLs kept.
    with catalog.execute(
        "SELECT sum(objectid) AS s, avg(objectid) AS a, NULL::int AS n FROM dp1.object "
        "WHERE objectid < 5"
    ) as result:
        batch = next(result.batches)
    assert batch.schema.field("s").type == pa.float64()
    assert batch.to_pylist() == [{"s": 10.0, "a": 2.5, "n": None}]
    # Uploads are temporary tables of their query only.
    upload = pa.table({"Id": [1, 2, None]})  # column names are lower-cased, as in the catalog
    with catalog.execute("SELECT id FROM tap_upload_t", uploads={"tap_upload_t": upload}) as r:
        assert pa.Table.from_batches(list(r.batches), r.schema)["id"].to_pylist() == [1, 2, None]
    with pytest.raises(Exception, match="tap_upload_t"):
        catalog.execute("SELECT id FROM tap_upload_t")


def test_load_catalog_again_replaces_tables(pg_cluster, postgres_catalog, sample_catalog) -> None:
    """Loading into a database that already holds the catalog replaces it; the columns
    TAP_SCHEMA declares indexed get an index (the q3c positions a q3c one)."""
    from sciplat.services.tap.pgcluster import load_catalog

    before = _count(postgres_catalog, "SELECT objectid FROM dp1.object")
    load_catalog(
        pg_cluster,
        sample_catalog._cursor(),
        q3c={"dp1.object": ("coord_ra", "coord_dec"), "dp1.source": ("ra", "dec")},
    )
    assert _count(postgres_catalog, "SELECT objectid FROM dp1.object") == before
    with psycopg.connect(pg_cluster.admin_url) as con:
        indexes = {
            definition.split(" USING ", 1)[1]
            for (definition,) in con.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'dp1' AND tablename = 'object'"
            )
        }
    assert indexes == {"btree (q3c_ang2ipix(coord_ra, coord_dec))", "btree (objectid)"}


def _rows(service: TapService, query: str) -> list[dict]:
    request = TapRequest(query=query, maxrec=1000, format=output_format("votable"))
    stream = service.open(request, {}, timeout=30)
    return pa.Table.from_batches(list(stream.rows), stream.schema).to_pylist()


def test_duckdb_notices_a_new_release(tmp_path: Path, make_tap_service) -> None:
    """A new catalog published over the file (new file, rename) is served without a restart:
    new rows and new tables; a query running on the old file finishes there."""
    live = build_sample_catalog(tmp_path / "live", objects=100, sources_per_object=1)
    catalog = DuckDBCatalog(live)
    catalog.recheck = 0.0
    service = make_tap_service(catalog)
    count = "SELECT COUNT(*) AS n FROM dp1.Object"
    assert _rows(service, count) == [{"n": 100}]
    running = catalog.execute('SELECT objectId FROM dp1."Object"', batch_rows=10)
    assert not catalog.refresh()  # unchanged file: nothing reopened

    new = build_sample_catalog(tmp_path / "new", objects=250, sources_per_object=1)
    con = duckdb.connect(str(new))
    con.execute("CREATE TABLE dp1.Extra AS SELECT 7 AS answer")
    con.execute(
        "INSERT INTO tap_schema.tables VALUES ('dp1', 'dp1.Extra', 'table', NULL, 'new', 2)"
    )
    con.execute(
        "INSERT INTO tap_schema.columns (table_name, column_name, datatype, principal, indexed, "
        "std, column_index) VALUES ('dp1.Extra', 'answer', 'int', 1, 0, 0, 1)"
    )
    con.close()
    os.replace(new, live)

    assert _rows(service, count) == [{"n": 250}]
    assert service.schema.table("dp1.Extra") is not None
    assert _rows(service, "SELECT answer FROM dp1.Extra") == [{"answer": 7}]
    assert catalog.generation == 1
    assert sum(batch.num_rows for batch in running.batches) == 100
    catalog.close()


def test_duckdb_catalog_stays_locked_down(sample_catalog) -> None:
    """Attached to a private instance, the catalog still refuses files and settings."""
    cursor = sample_catalog._cursor()
    try:
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "ATTACH '/tmp/other.duckdb' AS other",
            "SET enable_external_access = true",
        ):
            with pytest.raises(duckdb.Error):
                cursor.execute(sql)
    finally:
        cursor.close()
