"""The scale-out backend: PostgreSQL with pgSphere, and q3c where a table has a q3c index.

Tables live under lower-cased schema/table/column names (as the loader creates them). Queries
run through ADBC's PostgreSQL driver, which reads results with ``COPY ... (FORMAT BINARY)`` and
builds Arrow record batches in C (psycopg's row tuples converted in Python managed 31k rows/s).
Connections are pooled (an ADBC connection costs ~60 ms to open: it loads the type catalog).
Each query runs in its own READ ONLY transaction with ``statement_timeout``; TAP_UPLOAD tables
are created as temporary tables inside it (binary COPY) and vanish at its rollback. Cone
searches on q3c-indexed columns become ``q3c_radial_query`` (which uses the index); the exact
distance test is kept, so results equal DuckDB's.
"""

from __future__ import annotations

import contextlib
import threading

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.adql.geometry import GeometryStyle
from sciplat.services.tap.storage.base import (
    TAP_TABLES,
    Catalog,
    QueryTimeout,
    Running,
    first_line,
)

__all__ = ["PostgresCatalog"]

#: PostgreSQL's SQLSTATE for a statement cancelled (timeout or cancel request).
_QUERY_CANCELED = "57014"
#: Bytes per Arrow batch the driver aims at (about 64k rows of a few numeric columns).
_BATCH_BYTES = 2 << 20


class _Pool:
    """Idle ADBC connections (autocommit; each query opens its own transaction)."""

    def __init__(self, url: str, keep: int = 16) -> None:
        self.url = url
        self.keep = keep
        self._idle: list[adbc.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> adbc.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return adbc.connect(self.url, autocommit=True)

    def put(self, con: adbc.Connection) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(con)
                return
        con.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for con in idle:
            with contextlib.suppress(adbc_driver_manager.Error):
                con.close()


class PostgresCatalog(Catalog):
    name = "postgres"

    def __init__(self, url: str) -> None:
        if not url:
            raise ValueError("catalog.url must be set for the postgres backend")
        self.url = url
        with psycopg.connect(url, autocommit=True) as con:
            rows = con.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexdef ILIKE '%q3c_ang2ipix%'"
            ).fetchall()
        self._q3c: set[tuple[str, str]] = set()
        for (definition,) in rows:
            inner = definition.split("q3c_ang2ipix(", 1)[1].split(")", 1)[0]
            ra, dec = (part.strip().strip('"').lower() for part in inner.split(","))
            self._q3c.add((ra, dec))
        self._pool = _Pool(url)

    def _tap_schema_rows(self) -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {}
        with psycopg.connect(self.url, autocommit=True) as con:
            for table in TAP_TABLES:
                try:
                    cur = con.execute(f'SELECT * FROM tap_schema."{table}"')
                except psycopg.errors.UndefinedTable:
                    continue
                names = [d.name.lower() for d in cur.description]
                rows[table] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return rows

    def target(self, uploads: dict[str, str] | None = None) -> Target:
        def cone(
            ra: exp.Expr, dec: exp.Expr, ra0: exp.Expr, dec0: exp.Expr, radius: exp.Expr
        ) -> exp.Expr | None:
            if not (isinstance(ra, exp.Column) and isinstance(dec, exp.Column)):
                return None
            if (ra.name.lower(), dec.name.lower()) not in self._q3c:
                return None
            return exp.Anonymous(
                this="q3c_radial_query",
                expressions=[ra.copy(), dec.copy(), ra0.copy(), dec0.copy(), radius.copy()],
            )

        return Target(
            dialect="postgres",
            physical=self._physical(uploads, str.lower),
            geometry=GeometryStyle(array=lambda items: exp.Array(expressions=items), cone=cone),
            rewrite=_numeric_functions,
        )

    def _start(
        self, sql: str, uploads: dict[str, pa.Table], timeout: float | None, batch_rows: int
    ) -> Running:
        try:
            con = self._pool.get()
        except adbc_driver_manager.Error as exc:
            raise UsageError(
                f"The catalog database is not reachable: {first_line(str(exc))}"
            ) from exc
        cur = con.cursor()
        state = {"done": False, "closed": False}

        def close() -> None:
            if state["closed"]:
                return
            state["closed"] = True
            reusable = state["done"]  # a connection stopped mid-COPY is not
            try:
                if not reusable:
                    cur.adbc_cancel()
                cur.close()
                if reusable:
                    cur2 = con.cursor()
                    cur2.execute("ROLLBACK")
                    cur2.close()
            except adbc_driver_manager.Error:
                reusable = False
            if reusable:
                self._pool.put(con)
            else:
                with contextlib.suppress(adbc_driver_manager.Error):
                    con.close()

        def error(exc: Exception) -> Exception | None:
            state["done"] = True  # a failed statement leaves the connection idle
            if not isinstance(exc, adbc_driver_manager.Error | pa.ArrowException | OSError):
                return None
            message = _pg_message(exc)
            # Errors while reading the COPY stream come as Arrow errors, without the SQLSTATE.
            if getattr(exc, "sqlstate", None) == _QUERY_CANCELED or message.startswith(
                "canceling statement"
            ):
                return QueryTimeout("The query ran too long and was cancelled")
            return UsageError(f"Query failed: {first_line(message)}")

        def reader(batches: pa.RecordBatchReader, schema: pa.Schema):
            for batch in batches:
                yield _plain(batch, schema)
            state["done"] = True

        try:
            cur.execute("BEGIN")
            for name, table in uploads.items():
                # Lower-cased column names, as the translator spells columns for PostgreSQL.
                table = table.rename_columns([c.lower() for c in table.column_names])
                cur.adbc_ingest(name, table, mode="create", temporary=True)
            cur.execute("SET TRANSACTION READ ONLY")
            if timeout:
                cur.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(_BATCH_BYTES)}
            )
            cur.execute(sql)
            batches = cur.fetch_record_batch()
            schema = _plain_schema(batches.schema)
        except Exception as exc:
            mapped = error(exc)
            close()
            if mapped is None:
                raise
            raise mapped from exc
        return Running(schema, reader(batches, schema), close, cur.adbc_cancel, error)

    def close(self) -> None:
        self._pool.close()


def _pg_message(exc: Exception) -> str:
    """The server's message in an ADBC error (``... [PGRES_FATAL_ERROR]: ERROR:  <message>``)."""
    text = str(exc)
    return text.split("ERROR:", 1)[1].strip() if "ERROR:" in text else text


def _plain_type(field: pa.Field) -> pa.DataType:
    """The Arrow type the writers get: NUMERIC (ADBC hands it over as text) as double, other
    PostgreSQL-specific types as their text."""
    kind = field.type
    if isinstance(kind, pa.BaseExtensionType):
        if getattr(kind, "type_name", "") == "numeric":
            return pa.float64()
        return pa.string()
    return kind


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain_type(f)) for f in schema])


def _plain(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        if isinstance(column.type, pa.BaseExtensionType):
            column = pc.cast(column.storage, field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _numeric(node: exp.Expr) -> exp.Expr:
    return exp.Cast(this=node.copy(), to=exp.DataType.build("DECIMAL"))


def _numeric_functions(tree: exp.Expr) -> exp.Expr:
    """PostgreSQL has ROUND/TRUNC with digits, MOD and LOG(base, x) for NUMERIC only: compute
    those in NUMERIC and return DOUBLE PRECISION, as DuckDB does."""

    def visit(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Round | exp.Trunc) and node.args.get("decimals") is not None:
            node.set("this", _numeric(node.this))
        elif isinstance(node, exp.Mod) or (
            isinstance(node, exp.Log) and node.expression is not None
        ):
            node.set("this", _numeric(node.this))
            node.set("expression", _numeric(node.expression))
        else:
            return node
        return exp.Cast(this=node, to=exp.DataType.build("DOUBLE"))

    return tree.transform(visit)


_PG_FOR_ARROW = [
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_float32, "real"),
    (pa.types.is_floating, "double precision"),
]
