"""The embedded default backend: a DuckDB file, opened read-only with external access off.

``enable_external_access=false`` plus ``lock_configuration=true`` means no query can read or
write files (``read_csv``, ``COPY``, ``ATTACH``, extension installs), even if one slipped past
the translator's allow-list. Each query runs on its own cursor (a connection sharing the
database), where its TAP_UPLOAD tables are registered as Arrow views visible to it alone.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.adql.geometry import GeometryStyle
from sciplat.services.tap.schema import TAP_SCHEMA_SELF, TableMeta, TapSchema
from sciplat.services.tap.storage.base import UPLOAD_SCHEMA, Catalog, QueryResult, QueryTimeout

__all__ = ["CATALOG_CONFIG", "DuckDBCatalog", "first_line"]

_TAP_TABLES = ("schemas", "tables", "columns", "keys", "key_columns")


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


def first_line(message: str) -> str:
    """A database error for users: its first line, without the echoed SQL."""
    return message.strip().splitlines()[0] if message.strip() else "query failed"


class DuckDBCatalog(Catalog):
    name = "duckdb"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"catalog database {path} does not exist")
        config = dict(CATALOG_CONFIG)
        if threads:
            config["threads"] = threads
        self.path = Path(path)
        self._con = duckdb.connect(str(path), read_only=True, config=config)
        self._lock = threading.Lock()
        self._schema_names: set[str] = set()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def load_schema(self) -> TapSchema:
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
            for table in _TAP_TABLES:
                if table not in present:
                    rows[table] = []
                    continue
                result = cur.execute(f'SELECT * FROM "tap_schema"."{table}"')
                names = [d[0].lower() for d in result.description]
                rows[table] = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        finally:
            cur.close()
        schema = TapSchema.from_rows(
            rows["schemas"], rows["tables"], rows["columns"], rows["keys"], rows["key_columns"]
        )
        return add_tap_schema_self(schema)

    def target(self, uploads: dict[str, str] | None = None) -> Target:
        uploads = {k.lower(): v for k, v in (uploads or {}).items()}

        def physical(meta: TableMeta) -> tuple[str | None, str]:
            if meta.schema_name.upper() == UPLOAD_SCHEMA:
                return None, uploads[meta.name.lower()]
            return meta.schema_name, meta.name

        return Target(
            dialect="duckdb",
            physical=physical,
            geometry=GeometryStyle(array=lambda items: exp.Array(expressions=items)),
        )

    def execute(
        self,
        sql: str,
        *,
        uploads: dict[str, pa.Table] | None = None,
        timeout: float | None = None,
        batch_rows: int = 65_536,
    ) -> QueryResult:
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

        def fail(exc: Exception) -> Exception:
            close()
            if timed_out.is_set():
                return QueryTimeout(f"The query ran longer than {timeout:g} s and was cancelled")
            return UsageError(f"Query failed: {first_line(str(exc))}")

        try:
            for name, table in (uploads or {}).items():
                cur.register(name, table)
            reader = cur.sql(sql).to_arrow_reader(batch_rows)
            schema = reader.schema
            first = next(iter(reader), None)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:
            raise fail(exc) from exc

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                head = [first] if first is not None else []
                yield from itertools.chain(head, reader)
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                raise fail(exc) from exc
            finally:
                close()

        return QueryResult(schema=schema, batches=batches(), close=close, cancel=cur.interrupt)

    def close(self) -> None:
        self._con.close()


def add_tap_schema_self(schema: TapSchema) -> TapSchema:
    """Make sure TAP_SCHEMA describes its own tables (TAP 1.1 §4)."""
    extra = []
    for name, columns in TAP_SCHEMA_SELF.items():
        if schema.table(f"tap_schema.{name}") is None:
            extra.append(
                TableMeta(
                    schema_name="TAP_SCHEMA",
                    name=name,
                    columns=list(columns),
                    description=f"TAP_SCHEMA {name} table",
                )
            )
    return schema.with_tables(extra) if extra else schema
