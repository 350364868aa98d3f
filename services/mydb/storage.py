"""Where user tables are stored, one backend per catalog backend.

- DuckDB (embedded default): one Parquet file per table under ``<data>/api/mydb/<schema>/``.
  The catalog stays a read-only DuckDB file with external access off; each TAP query registers
  the caller's tables on its own cursor as lazily scanned Arrow datasets (projection and filter
  pushdown), the way TAP_UPLOAD tables are registered. A write goes to a temporary file that
  replaces the table only when complete and within quota.
- PostgreSQL: real schemas ``user_<name>``/``group_<name>`` in the catalog database, written by
  a role that may create them (``mydb.writer_url``) inside one transaction (CREATE, COPY,
  indexes - q3c on a position pair, B-trees on integer ``...id`` columns - ANALYZE, size check,
  GRANT USAGE/SELECT to the TAP reader role, COMMIT), so a refused write leaves nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pyarrow as pa

from sciplat.services.common.errors import ServiceUnavailableError, UsageError
from sciplat.services.mydb.names import TableName

__all__ = ["ParquetStore", "PostgresStore", "TableStore", "TableWriter", "index_plan"]


class TableWriter(ABC):
    """A table being written: batches in, then :meth:`commit` (or :meth:`abort`)."""

    rows = 0

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def size(self) -> int:
        """Bytes the table takes once committed (call after the last batch)."""

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


class TableStore(ABC):
    @abstractmethod
    def writer(self, name: TableName, schema: pa.Schema, *, replace: bool) -> TableWriter: ...

    @abstractmethod
    def drop(self, name: TableName) -> None: ...

    @abstractmethod
    def physical(self, name: TableName) -> tuple[str | None, str]:
        """The (schema, table) a translated query names."""

    def sources(self, names: list[TableName]) -> dict[str, Any]:
        """Objects to register on the query's connection, by physical name (DuckDB only)."""
        return {}

    def close(self) -> None:
        return None


# DuckDB: Parquet files ----------------------------------------------------------------------


class _ParquetWriter(TableWriter):
    def __init__(self, final: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        final.parent.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.tmp = final.with_name(f".{final.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        # Dictionary-encode text only: trying it on float columns costs 5x the write time.
        text = [f.name for f in schema if pa.types.is_string(f.type)]
        self._writer = pq.ParquetWriter(
            self.tmp, schema, compression="zstd", use_dictionary=text or False
        )
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch, row_group_size=256_000)
        self.rows += batch.num_rows

    def size(self) -> int:
        self._writer.close()
        return self.tmp.stat().st_size

    def commit(self) -> None:
        self._writer.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


class ParquetStore(TableStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: TableName) -> Path:
        return self.root / name.schema / f"{name.table}.parquet"

    def writer(self, name: TableName, schema: pa.Schema, *, replace: bool) -> TableWriter:
        return _ParquetWriter(self.path(name), schema)

    def drop(self, name: TableName) -> None:
        self.path(name).unlink(missing_ok=True)

    def physical(self, name: TableName) -> tuple[str | None, str]:
        return None, f"mydb__{name.schema}__{name.table}"

    def sources(self, names: list[TableName]) -> dict[str, Any]:
        import pyarrow.dataset as ds

        found = {}
        for name in names:
            path = self.path(name)
            if not path.exists():
                raise UsageError(f"Table {name} is being replaced; try again")
            found[self.physical(name)[1]] = ds.dataset(path, format="parquet")
        return found


# PostgreSQL: schemas with grants ------------------------------------------------------------


def _pg_type(kind: pa.DataType) -> str:
    from sciplat.services.tap.storage.postgres import _PG_FOR_ARROW

    return next((pg for test, pg in _PG_FOR_ARROW if test(kind)), "text")


_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_BIG_ENDIAN = {
    pa.bool_(): "u1",
    pa.int16(): ">i2",
    pa.int32(): ">i4",
    pa.int64(): ">i8",
    pa.float32(): ">f4",
    pa.float64(): ">f8",
}


def _binary_copy(batch: pa.RecordBatch) -> bytes | None:
    """PostgreSQL's binary COPY format for a batch of fixed-width columns without NULLs, built
    in one numpy pass (no text formatting or parsing of numbers); None for other batches."""
    import numpy as np

    if any(c.type not in _BIG_ENDIAN or c.null_count for c in batch.columns):
        return None
    fields = [("n", ">i2")]
    for index, column in enumerate(batch.columns):
        fields += [(f"l{index}", ">i4"), (f"v{index}", _BIG_ENDIAN[column.type])]
    rows = np.empty(batch.num_rows, dtype=np.dtype(fields))
    rows["n"] = batch.num_columns
    for index, column in enumerate(batch.columns):
        values = column.to_numpy(zero_copy_only=False)
        rows[f"l{index}"] = rows.dtype[f"v{index}"].itemsize
        rows[f"v{index}"] = values
    return _BINARY_HEADER + rows.tobytes() + b"\xff\xff"


#: Position column pairs that get a q3c index (when the database has q3c), first match wins.
POSITION_PAIRS = (("coord_ra", "coord_dec"), ("ra", "dec"), ("s_ra", "s_dec"))
#: At most this many integer ``...id`` columns get a B-tree index (join keys).
MAX_ID_INDEXES = 3


def index_plan(schema: pa.Schema) -> tuple[tuple[str, str] | None, list[str]]:
    """What a PostgreSQL user table is indexed on: a floating-point (ra, dec) pair for q3c
    (cone searches) and integer ``id``/``...id`` columns for B-trees (joins)."""
    floats = {f.name for f in schema if pa.types.is_floating(f.type)}
    position = next((pair for pair in POSITION_PAIRS if set(pair) <= floats), None)
    ids = [f.name for f in schema if pa.types.is_integer(f.type) and f.name.endswith("id")]
    return position, ids[:MAX_ID_INDEXES]


class _PostgresWriter(TableWriter):
    def __init__(self, con: Any, name: TableName, schema: pa.Schema, reader: str) -> None:
        from psycopg import sql

        self.con = con
        self.name = name
        self.schema = schema
        self.rows = 0
        self._ident = sql.Identifier(name.schema, name.table)
        self._columns = sql.SQL(", ").join(sql.Identifier(f.name) for f in schema)
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type)))
            for f in schema
        )
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name.schema)))
        con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident))
        con.execute(sql.SQL("CREATE TABLE {} ({})").format(self._ident, definition))
        if reader:
            role = sql.Identifier(reader)
            con.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(name.schema), role)
            )
            con.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(self._ident, role))

    def write(self, batch: pa.RecordBatch) -> None:
        from psycopg import sql

        if not batch.num_rows:
            return
        data = _binary_copy(batch)
        if data is None:  # text or NULLs: CSV, which pyarrow writes quickly enough
            import pyarrow.csv as pacsv

            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
            data, kind = buffer.getvalue(), sql.SQL("csv")
        else:
            kind = sql.SQL("binary")
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            self._ident, self._columns, kind
        )
        with self.con.cursor().copy(statement) as copy:
            copy.write(data)
        self.rows += batch.num_rows

    def _index(self) -> None:
        """Index the written table (see :func:`index_plan`) and gather its statistics, inside
        the write's transaction: the indexes count in its size and go with a refused write."""
        from psycopg import sql

        position, ids = index_plan(self.schema)
        if (
            position
            and self.con.execute("SELECT 1 FROM pg_extension WHERE extname = 'q3c'").fetchone()
        ):
            ra, dec = (sql.Identifier(c) for c in position)
            self.con.execute(
                sql.SQL("CREATE INDEX ON {} (q3c_ang2ipix({}, {}))").format(self._ident, ra, dec)
            )
        for column in ids:
            self.con.execute(
                sql.SQL("CREATE INDEX ON {} ({})").format(self._ident, sql.Identifier(column))
            )
        self.con.execute(sql.SQL("ANALYZE {}").format(self._ident))

    def size(self) -> int:
        self._index()
        (size,) = self.con.execute(
            "SELECT pg_total_relation_size(%s::regclass)",
            (f'"{self.name.schema}"."{self.name.table}"',),
        ).fetchone()
        return int(size)

    def commit(self) -> None:
        try:
            self.con.commit()
        finally:
            self.con.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.con.rollback()
        with contextlib.suppress(Exception):
            self.con.close()


class PostgresStore(TableStore):
    def __init__(self, writer_url: str, reader_role: str) -> None:
        self.url = writer_url
        self.reader = reader_role

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url)
        except psycopg.Error as exc:
            raise ServiceUnavailableError("The MyDB database is not reachable") from exc

    def writer(self, name: TableName, schema: pa.Schema, *, replace: bool) -> TableWriter:
        import psycopg

        con = self._connect()
        try:
            return _PostgresWriter(con, name, schema, self.reader)
        except psycopg.Error as exc:
            con.close()
            raise UsageError(f"The table could not be created: {exc}".splitlines()[0]) from exc

    def drop(self, name: TableName) -> None:
        from psycopg import sql

        with self._connect() as con:
            con.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name.schema, name.table))
            )

    def physical(self, name: TableName) -> tuple[str | None, str]:
        return name.schema, name.table
