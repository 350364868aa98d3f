"""A private PostgreSQL 15 cluster (with pgSphere and q3c) for tests and benchmarks, and
loading a DuckDB catalog into it.

Runs ``initdb``/``pg_ctl`` from the Debian packages (as the ``postgres`` Unix user when we are
root) in a temporary directory, on a free loopback port; :meth:`PostgresCluster.stop` stops it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg

__all__ = ["PostgresCluster", "indexed_columns", "load_catalog", "load_table", "start_postgres"]

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


@dataclass
class PostgresCluster:
    directory: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/catalog"

    @property
    def reader_url(self) -> str:
        return f"postgresql://tapreader:tapreader@127.0.0.1:{self.port}/catalog"

    def stop(self) -> None:
        try:
            _run(
                [str(BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "stop"],
                timeout=60,
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres(directory: Path) -> PostgresCluster:
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    _run(
        [str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        timeout=120,
    )
    # A port chosen free may be taken before PostgreSQL binds it: try another one.
    for attempt in range(3):
        port = free_port()
        try:
            _run(
                [
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(directory / "log"),
                    "-w",
                    "-o",
                    f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c shared_buffers=256MB -c max_connections=100 "
                    # A table created and filled in one transaction skips the WAL.
                    "-c wal_level=minimal -c max_wal_senders=0",
                    "start",
                ],
                timeout=120,
            )
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
    cluster = PostgresCluster(directory, port)
    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True
    ) as con:
        con.execute("CREATE DATABASE catalog")
    return cluster


_PG_TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "VARCHAR": "text",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "DATE": "date",
}


def load_catalog(
    cluster: PostgresCluster,
    source: duckdb.DuckDBPyConnection,
    q3c: dict[str, tuple[str, str]] | None = None,
) -> None:
    """Copy every table of a DuckDB catalog (lower-cased names) and index it; loading again
    replaces the tables (each in one transaction, so readers see the old or the new table).

    Rows go through Arrow and binary COPY (ADBC). Positions in *q3c* (``schema.table`` in lower
    case -> (ra, dec) columns) get a q3c index the table is clustered on; columns TAP_SCHEMA
    declares ``indexed`` get a B-tree index, as TAP_SCHEMA promises users. *source* is closed
    afterwards.
    """
    import adbc_driver_postgresql.dbapi as adbc

    try:
        tables = source.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog', 'main')"
        ).fetchall()
        indexed = indexed_columns(source)
        with psycopg.connect(cluster.admin_url, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
            con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
            con.execute(
                "DO $$ BEGIN CREATE ROLE tapreader LOGIN PASSWORD 'tapreader'; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
            con.execute("GRANT TEMPORARY ON DATABASE catalog TO tapreader")
        with adbc.connect(cluster.admin_url) as con, con.cursor() as cur:
            for schema, table in tables:
                load_table(cur, source, schema, table, q3c=q3c or {}, indexed=indexed)
                con.commit()
    finally:
        source.close()


def indexed_columns(source: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(``schema.table``, column) in lower case of the columns TAP_SCHEMA marks indexed."""
    try:
        rows = source.execute(
            "SELECT table_name, column_name FROM tap_schema.columns WHERE indexed = 1"
        ).fetchall()
    except duckdb.Error:
        return set()
    return {(table.lower(), column.strip('"').lower()) for table, column in rows}


def load_table(
    cur,
    source: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    *,
    q3c: dict[str, tuple[str, str]],
    indexed: set[tuple[str, str]],
    reader_role: str | None = "tapreader",
) -> None:
    """Replace one table (lower-cased names) through the ADBC cursor *cur* (commit after) with
    the rows of DuckDB's ``schema.table``, indexed as :func:`load_catalog` describes; *reader_role*
    may read it."""
    columns = source.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    pg_schema, pg_table = schema.lower(), table.lower()
    qualified = f'"{pg_schema}"."{pg_table}"'
    kinds = [(name, _PG_TYPES.get(kind, "text")) for name, kind in columns]
    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{pg_schema}"')
    if reader_role:
        cur.execute(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{reader_role}"')
    cur.execute(f"DROP TABLE IF EXISTS {qualified}")
    definition = ", ".join(f'"{name.lower()}" {kind}' for name, kind in kinds)
    cur.execute(f"CREATE TABLE {qualified} ({definition})")
    # Lower-cased names; what PostgreSQL keeps as text is sent as text.
    select = ", ".join(
        f'"{name}"' if kind != "text" else f'CAST("{name}" AS VARCHAR)' for name, kind in kinds
    )
    aliases = ", ".join(f'"{name.lower()}"' for name, _ in kinds)
    reader = source.sql(
        f'SELECT * FROM (SELECT {select} FROM "{schema}"."{table}") AS t({aliases})'
    ).to_arrow_reader(100_000)
    cur.adbc_ingest(pg_table, reader, mode="append", db_schema_name=pg_schema)
    if reader_role:
        cur.execute(f'GRANT SELECT ON {qualified} TO "{reader_role}"')
    key = f"{pg_schema}.{pg_table}"
    if key in q3c:
        ra, dec = q3c[key]
        cur.execute(f'CREATE INDEX "{pg_table}_q3c" ON {qualified} (q3c_ang2ipix("{ra}", "{dec}"))')
        cur.execute(f'CLUSTER {qualified} USING "{pg_table}_q3c"')
    for name, _ in kinds:
        if (key, name.lower()) in indexed and name.lower() not in q3c.get(key, ()):
            cur.execute(f'CREATE INDEX ON {qualified} ("{name.lower()}")')
    cur.execute(f"ANALYZE {qualified}")
