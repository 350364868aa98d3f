"""The scale-out backend: PostgreSQL with pgSphere, and q3c where a table has a q3c index.

Tables live under lower-cased schema/table/column names (as the loader creates them). Each
query gets its own connection: TAP_UPLOAD tables are created as temporary tables first, then
the query runs in a READ ONLY transaction with ``statement_timeout`` through a server-side
cursor, so rows stream. Cone searches on q3c-indexed columns become ``q3c_radial_query`` (which
uses the index); the exact distance test is kept, so results equal DuckDB's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
import pyarrow as pa
from psycopg import sql as pgsql
from sqlglot import exp

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.adql.geometry import GeometryStyle
from sciplat.services.tap.schema import TableMeta, TapSchema
from sciplat.services.tap.storage.base import UPLOAD_SCHEMA, Catalog, QueryResult, QueryTimeout
from sciplat.services.tap.storage.duckdb import add_tap_schema_self, first_line

__all__ = ["PostgresCatalog"]

_TAP_TABLES = ("schemas", "tables", "columns", "keys", "key_columns")

# PostgreSQL type OIDs -> Arrow types (what the service's writers need to know).
_ARROW_BY_OID = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1700: pa.float64(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    1082: pa.date32(),  # date
    1114: pa.timestamp("us"),  # timestamp (written ISO 8601 by the result writers)
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz
    1022: pa.list_(pa.float64()),
    1021: pa.list_(pa.float32()),
    1016: pa.list_(pa.int64()),
    1007: pa.list_(pa.int32()),
}


class PostgresCatalog(Catalog):
    name = "postgres"

    def __init__(self, url: str, *, batch_rows: int = 50_000) -> None:
        if not url:
            raise ValueError("catalog.url must be set for the postgres backend")
        self.url = url
        self.batch_rows = batch_rows
        with psycopg.connect(url, autocommit=True) as con:
            rows = con.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexdef ILIKE '%q3c_ang2ipix%'"
            ).fetchall()
        self._q3c: set[tuple[str, str]] = set()
        for (definition,) in rows:
            inner = definition.split("q3c_ang2ipix(", 1)[1].split(")", 1)[0]
            ra, dec = (part.strip().strip('"').lower() for part in inner.split(","))
            self._q3c.add((ra, dec))
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def load_schema(self) -> TapSchema:
        rows: dict[str, list[dict]] = {}
        with self._connect() as con:
            for table in _TAP_TABLES:
                try:
                    cur = con.execute(f'SELECT * FROM tap_schema."{table}"')
                except psycopg.errors.UndefinedTable:
                    rows[table] = []
                    continue
                names = [d.name.lower() for d in cur.description]
                rows[table] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        schema = TapSchema.from_rows(
            rows["schemas"], rows["tables"], rows["columns"], rows["keys"], rows["key_columns"]
        )
        return add_tap_schema_self(schema)

    def target(self, uploads: dict[str, str] | None = None) -> Target:
        uploads = {k.lower(): v for k, v in (uploads or {}).items()}

        def physical(meta: TableMeta) -> tuple[str | None, str]:
            if meta.schema_name.upper() == UPLOAD_SCHEMA:
                return None, uploads[meta.name.lower()]
            return meta.schema_name.lower(), meta.name.lower()

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
            physical=physical,
            geometry=GeometryStyle(array=lambda items: exp.Array(expressions=items), cone=cone),
            rewrite=_numeric_functions,
        )

    def execute(
        self,
        sql: str,
        *,
        uploads: dict[str, pa.Table] | None = None,
        timeout: float | None = None,
        batch_rows: int = 65_536,
    ) -> QueryResult:
        try:
            con = self._connect()
        except psycopg.Error as exc:
            raise UsageError(
                f"The catalog database is not reachable: {first_line(str(exc))}"
            ) from exc
        closed = threading.Event()

        def close() -> None:
            if not closed.is_set():
                closed.set()
                with contextlib.suppress(psycopg.Error):
                    con.close()

        def fail(exc: Exception) -> Exception:
            close()
            if isinstance(exc, psycopg.errors.QueryCanceled):
                return QueryTimeout("The query ran too long and was cancelled")
            return UsageError(f"Query failed: {first_line(str(exc))}")

        try:
            for name, table in (uploads or {}).items():
                _create_upload(con, name, table)
            con.autocommit = False
            con.execute("SET TRANSACTION READ ONLY")
            if timeout:
                con.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            cursor = con.cursor(name="tap_query")
            cursor.itersize = batch_rows
            cursor.execute(sql)
            first = cursor.fetchmany(batch_rows)
            description = cursor.description
        except psycopg.Error as exc:
            raise fail(exc) from exc
        schema = pa.schema(
            [pa.field(d.name, _ARROW_BY_OID.get(d.type_code, pa.string())) for d in description]
        )

        def to_batch(rows: list[tuple]) -> pa.RecordBatch:
            columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
            arrays = []
            for values, field in zip(columns, schema, strict=True):
                if pa.types.is_string(field.type):
                    values = [v if v is None or isinstance(v, str) else str(v) for v in values]
                elif pa.types.is_floating(field.type):
                    values = [v if v is None or isinstance(v, float) else float(v) for v in values]
                arrays.append(pa.array(values, type=field.type, from_pandas=False))
            return pa.record_batch(arrays, schema=schema)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                rows = first
                while rows:
                    yield to_batch(rows)
                    if len(rows) < batch_rows:
                        break
                    rows = cursor.fetchmany(batch_rows)
            except psycopg.Error as exc:
                raise fail(exc) from exc
            finally:
                close()

        return QueryResult(schema=schema, batches=batches(), close=close, cancel=con.cancel)

    def close(self) -> None:
        pass


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


def _create_upload(con: psycopg.Connection, name: str, table: pa.Table) -> None:
    columns = []
    for field in table.schema:
        kind = next((pg for test, pg in _PG_FOR_ARROW if test(field.type)), "text")
        columns.append(
            pgsql.SQL("{} {}").format(pgsql.Identifier(field.name.lower()), pgsql.SQL(kind))
        )
    con.execute(
        pgsql.SQL("CREATE TEMPORARY TABLE {} ({})").format(
            pgsql.Identifier(name), pgsql.SQL(", ").join(columns)
        )
    )
    names = pgsql.SQL(", ").join(pgsql.Identifier(f.name.lower()) for f in table.schema)
    with con.cursor().copy(
        pgsql.SQL("COPY {} ({}) FROM STDIN").format(pgsql.Identifier(name), names)
    ) as copy:
        for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
            copy.write_row(row)
