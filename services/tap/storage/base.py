"""What a catalog backend provides: TAP_SCHEMA, a translation target, and streamed queries."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import Target
from sciplat.services.tap.schema import TapSchema

__all__ = ["UPLOAD_SCHEMA", "Catalog", "QueryResult", "QueryTimeout"]

#: The schema ADQL queries use to name uploaded tables (TAP 1.1 §2.5.7).
UPLOAD_SCHEMA = "TAP_UPLOAD"


class QueryTimeout(UsageError):
    """The query ran longer than allowed and was cancelled."""

    error_code = "QueryTimeout"


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


class Catalog(ABC):
    """A catalog database the TAP service reads (read-only)."""

    #: sqlglot dialect the translator writes.
    name: str

    @abstractmethod
    def load_schema(self) -> TapSchema:
        """The published tables, from the database's ``tap_schema``."""

    @abstractmethod
    def target(self, uploads: dict[str, str] | None = None) -> Target:
        """The translation target; *uploads* maps upload table names to physical names."""

    @abstractmethod
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

    @abstractmethod
    def close(self) -> None: ...
