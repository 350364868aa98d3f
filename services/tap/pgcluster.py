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

__all__ = ["PostgresCluster", "load_catalog", "start_postgres"]

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
    port = free_port()
    _run(
        [str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        timeout=120,
    )
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
            "-c shared_buffers=256MB -c max_connections=100",
            "start",
        ],
        timeout=120,
    )
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
    """Copy every table of a DuckDB catalog (lower-cased names) and index positions with q3c.

    *source* is a connection to the catalog (closed afterwards); *q3c* maps ``schema.table``
    (lower case) to its (ra, dec) columns.
    """
    try:
        tables = source.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog', 'main')"
        ).fetchall()
        with psycopg.connect(cluster.admin_url, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
            con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
            con.execute("DROP ROLE IF EXISTS tapreader")
            con.execute("CREATE ROLE tapreader LOGIN PASSWORD 'tapreader'")
            con.execute("GRANT TEMPORARY ON DATABASE catalog TO tapreader")
            for schema, table in tables:
                columns = source.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                    [schema, table],
                ).fetchall()
                pg_schema, pg_table = schema.lower(), table.lower()
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{pg_schema}"')
                definition = ", ".join(
                    f'"{name.lower()}" {_PG_TYPES.get(kind, "text")}' for name, kind in columns
                )
                con.execute(f'CREATE TABLE "{pg_schema}"."{pg_table}" ({definition})')
                names = ", ".join(f'"{name.lower()}"' for name, _ in columns)
                result = source.execute(f'SELECT * FROM "{schema}"."{table}"')
                with con.cursor().copy(
                    f'COPY "{pg_schema}"."{pg_table}" ({names}) FROM STDIN'
                ) as copy:
                    while rows := result.fetchmany(50_000):
                        for row in rows:
                            copy.write_row(row)
                con.execute(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO tapreader')
                con.execute(f'GRANT SELECT ON "{pg_schema}"."{pg_table}" TO tapreader')
            for qualified, (ra, dec) in (q3c or {}).items():
                schema, table = qualified.split(".")
                con.execute(f'CREATE INDEX ON "{schema}"."{table}" (q3c_ang2ipix("{ra}", "{dec}"))')
                con.execute(f'CLUSTER "{schema}"."{table}" USING "{table}_q3c_ang2ipix_idx"')
                con.execute(f'ANALYZE "{schema}"."{table}"')
    finally:
        source.close()
