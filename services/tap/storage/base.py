"""What a catalog backend provides: TAP_SCHEMA, a translation target, and streamed queries.

:class:`Catalog` owns what every backend does the same way (TAP_SCHEMA rows -> metadata, upload
table naming, fetching the first batch before answering, mapping database errors while
streaming); a backend supplies :meth:`Catalog._tap_schema_rows`, :meth:`Catalog.target` and
:meth:`Catalog._start`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.schema import TAP_SCHEMA_SELF, TableMeta, TapSchema

__all__ = [
    "TAP_TABLES",
    "UPLOAD_SCHEMA",
    "Catalog",
    "QueryResult",
    "QueryTimeout",
    "Running",
    "add_tap_schema_self",
    "first_line",
]

#: The schema ADQL queries use to name uploaded tables (TAP 1.1 §2.5.7).
UPLOAD_SCHEMA = "TAP_UPLOAD"
#: The tables of TAP_SCHEMA 1.1 a catalog may ship.
TAP_TABLES = ("schemas", "tables", "columns", "keys", "key_columns")


class QueryTimeout(UsageError):
    """The query ran longer than allowed and was cancelled."""

    error_code = "QueryTimeout"


def first_line(message: str) -> str:
    """A database error for users: its first line, without the echoed SQL."""
    return message.strip().splitlines()[0] if message.strip() else "query failed"


@dataclass
class QueryResult:
    """A running query's result: its Arrow schema and a stream of record batches."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    #: Release the database resources (idempotent).
    close: Callable[[], None]
    #: Stop the running query from another thread (abort, timeout).
    cancel: Callable[[], None]

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Running:
    """What a backend's :meth:`Catalog._start` hands back: a started query."""

    schema: pa.Schema
    reader: Iterator[pa.RecordBatch]
    close: Callable[[], None]
    cancel: Callable[[], None]
    #: The user-facing error for a database exception (None: not a database error).
    error: Callable[[Exception], Exception | None]


class Catalog(ABC):
    """A catalog database the TAP service reads (read-only)."""

    #: sqlglot dialect the translator writes.
    name: str
    #: Bumped each time the backend starts serving a new catalog (see :meth:`refresh`).
    generation: int = 0

    def refresh(self) -> bool:
        """Notice a replaced catalog (a new data release); True when the published tables may
        have changed, so TAP_SCHEMA must be loaded again. Cheap: called before each query."""
        return False

    def load_schema(self) -> TapSchema:
        """The published tables, from the database's ``tap_schema``."""
        rows = self._tap_schema_rows()
        schema = TapSchema.from_rows(*(rows.get(table, []) for table in TAP_TABLES))
        return add_tap_schema_self(schema)

    @abstractmethod
    def _tap_schema_rows(self) -> dict[str, list[dict]]:
        """The rows (lower-cased keys) of each ``tap_schema`` table present."""

    @abstractmethod
    def target(self, uploads: dict[str, str] | None = None) -> Target:
        """The translation target; *uploads* maps upload table names to physical names."""

    @staticmethod
    def _physical(
        uploads: dict[str, str] | None, spell: Callable[[str], str]
    ) -> Callable[[TableMeta], tuple[str | None, str]]:
        """Physical (schema, table) of a table: uploads by their given names, published tables
        spelt by *spell*."""
        uploads = {k.lower(): v for k, v in (uploads or {}).items()}

        def physical(meta: TableMeta) -> tuple[str | None, str]:
            if meta.schema_name.upper() == UPLOAD_SCHEMA:
                return None, uploads[meta.name.lower()]
            return spell(meta.schema_name), spell(meta.name)

        return physical

    def execute(
        self,
        sql: str,
        *,
        uploads: dict[str, pa.Table] | None = None,
        timeout: float | None = None,
        batch_rows: int = 65_536,
    ) -> QueryResult:
        """Run *sql* and stream its rows; the first batch is fetched before returning, so
        database errors surface here (as :class:`UsageError`) and not mid-stream."""
        running = self._start(sql, uploads or {}, timeout, batch_rows)

        def fail(exc: Exception) -> Exception:
            running.close()
            mapped = running.error(exc)
            if mapped is None:
                raise exc
            return mapped

        try:
            first = next(running.reader, None)
        except Exception as exc:
            raise fail(exc) from exc

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                if first is not None:
                    yield first
                    yield from running.reader
            except Exception as exc:
                raise fail(exc) from exc
            finally:
                running.close()

        return QueryResult(
            schema=running.schema, batches=batches(), close=running.close, cancel=running.cancel
        )

    @abstractmethod
    def _start(
        self, sql: str, uploads: dict[str, pa.Table], timeout: float | None, batch_rows: int
    ) -> Running:
        """Start *sql* (with *uploads* visible under their names); errors raised here are
        already user-facing."""

    @abstractmethod
    def close(self) -> None: ...


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
