"""What MyDB knows about its tables: owners, sizes, column metadata and shares (SQLite).

The table data lives in the backend (Parquet files or PostgreSQL schemas); this registry is
the one place that says which tables exist and who may read them, so the TAP service never
has to ask the database. It is written only after the data is in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sciplat.services.mydb.names import TableName

__all__ = ["ColumnRecord", "Registry", "TableRecord"]

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    schema TEXT PRIMARY KEY, kind TEXT NOT NULL, principal TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tables (
    schema TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL, created REAL NOT NULL, description TEXT, source TEXT,
    columns TEXT NOT NULL, PRIMARY KEY (schema, name));
CREATE TABLE IF NOT EXISTS shares (
    schema TEXT NOT NULL, name TEXT NOT NULL, grp TEXT NOT NULL,
    PRIMARY KEY (schema, name, grp));
"""


@dataclass(frozen=True)
class ColumnRecord:
    name: str
    datatype: str
    arraysize: str | None = None
    unit: str | None = None
    ucd: str | None = None
    description: str | None = None


@dataclass
class TableRecord:
    name: TableName
    owner: str
    rows: int
    bytes: int
    columns: list[ColumnRecord]
    created: float = field(default_factory=time.time)
    description: str | None = None
    #: Where it came from: "upload:<format>", "job:<id>", "query".
    source: str | None = None
    shares: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "name": self.name.qualified,
            "schema": self.name.schema,
            "table": self.name.table,
            "owner": self.owner,
            "rows": self.rows,
            "bytes": self.bytes,
            "created": self.created,
            "description": self.description,
            "source": self.source,
            "shared_with": list(self.shares),
            "columns": [c.__dict__ for c in self.columns],
        }


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_DDL)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._con.close()

    # schemas --------------------------------------------------------------------------------
    def claim(self, schema: str, kind: str, principal: str) -> bool:
        """Record that *schema* belongs to *principal*; False if another principal has it
        (two names that fold to the same identifier)."""
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO schemas VALUES (?, ?, ?)", (schema, kind, principal)
            )
            row = self._con.execute(
                "SELECT kind, principal FROM schemas WHERE schema = ?", (schema,)
            ).fetchone()
        return row == (kind, principal)

    # tables ---------------------------------------------------------------------------------
    def _record(self, row: tuple) -> TableRecord:
        schema, name, owner, rows, size, created, description, source, columns = row
        shares = [
            g
            for (g,) in self._con.execute(
                "SELECT grp FROM shares WHERE schema = ? AND name = ? ORDER BY grp", (schema, name)
            )
        ]
        return TableRecord(
            name=TableName(schema, name),
            owner=owner,
            rows=rows,
            bytes=size,
            created=created,
            description=description,
            source=source,
            columns=[ColumnRecord(**c) for c in json.loads(columns)],
            shares=shares,
        )

    def get(self, name: TableName) -> TableRecord | None:
        with self._lock:
            row = self._con.execute(
                "SELECT * FROM tables WHERE schema = ? AND name = ?", (name.schema, name.table)
            ).fetchone()
            return self._record(row) if row else None

    def put(self, record: TableRecord) -> None:
        """Insert or replace a table's record (its shares are kept)."""
        columns = json.dumps([c.__dict__ for c in record.columns])
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO tables VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.name.schema,
                    record.name.table,
                    record.owner,
                    record.rows,
                    record.bytes,
                    record.created,
                    record.description,
                    record.source,
                    columns,
                ),
            )

    def delete(self, name: TableName) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(
                "DELETE FROM tables WHERE schema = ? AND name = ?", (name.schema, name.table)
            )
            self._con.execute(
                "DELETE FROM shares WHERE schema = ? AND name = ?", (name.schema, name.table)
            )
            self._con.execute("COMMIT")

    def visible(self, schemas: list[str], groups: list[str]) -> list[TableRecord]:
        """Tables in *schemas* plus those shared with any of *groups*, by name."""
        marks_s = ",".join("?" * len(schemas)) or "NULL"
        marks_g = ",".join("?" * len(groups)) or "NULL"
        with self._lock:
            rows = self._con.execute(
                f"SELECT * FROM tables WHERE schema IN ({marks_s}) OR (schema, name) IN "
                f"(SELECT schema, name FROM shares WHERE grp IN ({marks_g})) "
                "ORDER BY schema, name",
                [*schemas, *groups],
            ).fetchall()
            return [self._record(row) for row in rows]

    def usage(self, schema: str, *, excluding: str | None = None) -> tuple[int, int]:
        """(rows, bytes) stored in *schema*, leaving out table *excluding*."""
        with self._lock:
            rows, size = self._con.execute(
                "SELECT COALESCE(SUM(rows), 0), COALESCE(SUM(bytes), 0) FROM tables "
                "WHERE schema = ? AND name IS NOT ?",
                (schema, excluding),
            ).fetchone()
        return int(rows), int(size)

    # shares ---------------------------------------------------------------------------------
    def share(self, name: TableName, group: str) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR IGNORE INTO shares VALUES (?, ?, ?)", (name.schema, name.table, group)
            )

    def unshare(self, name: TableName, group: str) -> bool:
        with self._lock:
            cursor = self._con.execute(
                "DELETE FROM shares WHERE schema = ? AND name = ? AND grp = ?",
                (name.schema, name.table, group),
            )
            return cursor.rowcount > 0
