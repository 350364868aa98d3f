"""The embedded default backend: a DuckDB file, opened read-only with external access off.

``enable_external_access=false`` plus ``lock_configuration=true`` means no query can read or
write files (``read_csv``, ``COPY``, ``ATTACH``, extension installs), even if one slipped past
the translator's allow-list. Each query runs on its own cursor (a connection sharing the
database), where its TAP_UPLOAD tables are registered as Arrow views visible to it alone.

The file is attached to a private in-memory DuckDB instance (DuckDB shares one instance per
*path* in a process, which would pin the file as first opened). So a new data release published
over the file (``sciplat data release`` writes a new file and renames it) is noticed: the file's
identity is checked at most once a second, and a changed file is opened anew - running queries
finish on the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.adql.geometry import GeometryStyle
from sciplat.services.tap.storage.base import (
    TAP_TABLES,
    Catalog,
    QueryTimeout,
    Running,
    add_tap_schema_self,
    first_line,
)

__all__ = ["CATALOG_CONFIG", "DuckDBCatalog", "add_tap_schema_self", "first_line"]

log = logging.getLogger("sciplat.services.tap")

#: How every part of the API service opens the catalog: DuckDB refuses a second connection to a
#: file with another configuration in one process (``sciplat.services.images.catalogdb``).
CATALOG_CONFIG: dict[str, str | int | bool] = {
    "enable_external_access": False,
    "lock_configuration": True,
    # DuckDB's late materialisation turns every LIMIT (TAP adds MAXREC+1 to each query) into a
    # rowid sort and join: measured on a 1M-row table, a 1M-row dump started 16x later (1.4 s)
    # and a cone search took 2.2x longer. Top-N queries with ORDER BY lose about 2x without
    # it; plain scans and filters are what TAP mostly serves.
    "disabled_optimizers": "late_materialization",
}


class DuckDBCatalog(Catalog):
    name = "duckdb"
    #: Seconds between checks whether the catalog file was replaced.
    recheck = 1.0

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"catalog database {path} does not exist")
        self.path = Path(path)
        self.threads = threads
        self._lock = threading.Lock()
        self._identity = _identity(self.path)
        self._con = self._open()
        self._checked = time.monotonic()
        #: Connections to replaced files, closed with the catalog (queries may still run there).
        self._retired: list[duckdb.DuckDBPyConnection] = []

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:", config={"threads": self.threads} if self.threads else {})
        try:
            con.execute(f"ATTACH {_literal(self.path)} AS catalog (READ_ONLY)")
            con.execute("USE catalog")
            # The configuration is locked last.
            for key, value in sorted(CATALOG_CONFIG.items(), key=lambda kv: kv[0] == _LOCK):
                con.execute(f"SET {key} = {_literal(value)}")
        except BaseException:
            con.close()
            raise
        return con

    def refresh(self) -> bool:
        """Open the catalog file anew if it was replaced (checked at most every
        :attr:`recheck` seconds); True when it was."""
        now = time.monotonic()
        if now - self._checked < self.recheck:
            return False
        with self._lock:
            if now - self._checked < self.recheck:
                return False
            self._checked = now
            try:
                identity = _identity(self.path)
                if identity == self._identity:
                    return False
                con = self._open()
            except (OSError, duckdb.Error) as exc:
                log.error("TAP: the catalog %s changed but cannot be opened: %s", self.path, exc)
                return False
            self._retired.append(self._con)
            self._con, self._identity = con, identity
            self.generation += 1
        log.info("TAP: catalog %s replaced; opened the new one", self.path)
        return True

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            cursor = self._con.cursor()
        cursor.execute("USE catalog")  # a cursor starts in the in-memory database
        return cursor

    def _tap_schema_rows(self) -> dict[str, list[dict]]:
        cur = self._cursor()
        try:
            rows = {}
            present = {
                name.lower()
                for (name,) in cur.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE lower(table_schema) = 'tap_schema'"
                ).fetchall()
            }
            for table in TAP_TABLES:
                if table in present:
                    result = cur.execute(f'SELECT * FROM "tap_schema"."{table}"')
                    names = [d[0].lower() for d in result.description]
                    rows[table] = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
            return rows
        finally:
            cur.close()

    def target(self, uploads: dict[str, str] | None = None) -> Target:
        return Target(
            dialect="duckdb",
            physical=self._physical(uploads, str),
            geometry=GeometryStyle(array=lambda items: exp.Array(expressions=items)),
        )

    def _start(
        self, sql: str, uploads: dict[str, pa.Table], timeout: float | None, batch_rows: int
    ) -> Running:
        cur = self._cursor()
        timed_out = threading.Event()
        timer = None
        if timeout:

            def cancel() -> None:
                timed_out.set()
                cur.interrupt()

            timer = threading.Timer(timeout, cancel)
            timer.daemon = True
            timer.start()

        def close() -> None:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(duckdb.Error):
                cur.close()

        def error(exc: Exception) -> Exception | None:
            if not isinstance(exc, duckdb.Error | pa.ArrowException | OSError):
                return None
            if timed_out.is_set():
                return QueryTimeout(f"The query ran longer than {timeout:g} s and was cancelled")
            return UsageError(f"Query failed: {first_line(str(exc))}")

        try:
            for name, table in uploads.items():
                cur.register(name, table)
            reader = cur.sql(sql).to_arrow_reader(batch_rows)
        except Exception as exc:
            close()
            if (mapped := error(exc)) is None:
                raise
            raise mapped from exc
        return Running(reader.schema, iter(reader), close, cur.interrupt, error)

    def close(self) -> None:
        for con in [*self._retired, self._con]:
            with contextlib.suppress(duckdb.Error):
                con.close()


_LOCK = "lock_configuration"


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when the file is replaced or rewritten."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _literal(value: object) -> str:
    """A SQL literal for a path or a setting."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
