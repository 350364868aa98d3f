"""Query history and the catalog query log (DMS-REQ-0345: "logging of catalog queries").

Every query - sync or async, successful or not - is logged (``sciplat.services.tap.queries``,
one JSON line: user, mode, duration, rows, status) and kept per user in SQLite so the portal and
the lab extension can show a user their recent queries and jobs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["HistoryEntry", "QueryHistory"]

querylog = logging.getLogger("sciplat.services.tap.queries")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tap_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    time REAL NOT NULL,
    mode TEXT NOT NULL,
    query TEXT NOT NULL,
    status TEXT NOT NULL,
    rows INTEGER,
    duration REAL,
    format TEXT,
    job_id TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS tap_history_owner ON tap_history (owner, time);
"""


@dataclass
class HistoryEntry:
    owner: str
    time: float
    mode: str
    query: str
    status: str
    rows: int | None = None
    duration: float | None = None
    format: str | None = None
    job_id: str | None = None
    message: str | None = None


class QueryHistory:
    def __init__(self, path: Path, *, keep: int = 1000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._keep = keep

    def record(self, entry: HistoryEntry) -> None:
        querylog.info(json.dumps({k: v for k, v in asdict(entry).items() if v is not None}))
        with self._lock:
            self._db.execute(
                "INSERT INTO tap_history (owner, time, mode, query, status, rows, duration, "
                "format, job_id, message) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.owner,
                    entry.time,
                    entry.mode,
                    entry.query[:100_000],
                    entry.status,
                    entry.rows,
                    entry.duration,
                    entry.format,
                    entry.job_id,
                    entry.message,
                ),
            )

    def list(
        self, owner: str, *, limit: int = 100, before: float | None = None
    ) -> list[HistoryEntry]:
        sql = (
            "SELECT owner, time, mode, query, status, rows, duration, format, job_id, message "
            "FROM tap_history WHERE owner = ?"
        )
        args: list[object] = [owner]
        if before is not None:
            sql += " AND time < ?"
            args.append(before)
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        args.append(min(limit, self._keep))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def prune(self, older_than: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tap_history WHERE time < ?", (older_than,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def now() -> float:
        return time.time()
