"""Job store: one SQLite database plus a directory per job (input, output notebook, HTML).

Lives under ``<services_state_dir>/notebooks/``. The database holds what lists and polls need;
notebooks and HTML are files, so a cached render is one file read.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE", "FINISHED", "Job", "JobStore"]

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "timeout", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    template TEXT,
    title TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    image TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    timeout INTEGER NOT NULL,
    total_cells INTEGER NOT NULL DEFAULT 0,
    done_cells INTEGER NOT NULL DEFAULT 0,
    kernel_seconds REAL,
    cell_timings TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    shared INTEGER NOT NULL DEFAULT 0,
    cached_from TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE INDEX IF NOT EXISTS jobs_template ON jobs (template, created);
CREATE INDEX IF NOT EXISTS jobs_cache ON jobs (cache_key, status);
"""

_JSON_COLUMNS = ("params", "cell_timings", "error")


@dataclass
class Job:
    """One notebook run."""

    id: str
    owner: str
    kind: str
    image: str
    cache_key: str
    status: str
    created: float
    timeout: int
    template: str | None = None
    title: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    total_cells: int = 0
    done_cells: int = 0
    kernel_seconds: float | None = None
    cell_timings: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    shared: bool = False
    cached_from: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class JobStore:
    """Thread-safe access to the jobs database and the per-job directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs_dir = root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self._db = sqlite3.connect(root / "jobs.sqlite", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    @staticmethod
    def _row(row: sqlite3.Row) -> Job:
        data = dict(row)
        for column in _JSON_COLUMNS:
            data[column] = json.loads(data[column]) if data[column] is not None else None
        data["cell_timings"] = data["cell_timings"] or []
        data["params"] = data["params"] or {}
        data["shared"] = bool(data["shared"])
        return Job(**data)

    def create(self, **values: Any) -> Job:
        job = Job(id=secrets.token_urlsafe(12), created=time.time(), **values)
        self.job_dir(job.id).mkdir(mode=0o700)
        row = {k: getattr(job, k) for k in job.__dataclass_fields__}
        for column in _JSON_COLUMNS:
            row[column] = json.dumps(row[column]) if row[column] is not None else None
        row["shared"] = int(row["shared"])
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self._lock:
            self._db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", row)
            self._db.commit()
        return job

    def update(self, job_id: str, **values: Any) -> None:
        for column in _JSON_COLUMNS:
            if column in values and values[column] is not None:
                values[column] = json.dumps(values[column])
        if "shared" in values:
            values["shared"] = int(values["shared"])
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = :id", {**values, "id": job_id}
            )
            self._db.commit()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def count_active(self, owner: str) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')",
                (owner,),
            ).fetchone()
        return int(count)

    def find_cached(self, owner: str, cache_key: str) -> Job | None:
        """The newest successful run of *owner* with this cache key."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE owner = ? AND cache_key = ? AND status = 'succeeded' "
                "AND cached_from IS NULL ORDER BY finished DESC LIMIT 1",
                (owner, cache_key),
            ).fetchone()
        return self._row(row) if row else None

    def history(
        self,
        owner: str,
        *,
        template: str | None = None,
        include_shared: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        """Runs of *owner* (and, with *include_shared*, runs others shared), newest first."""
        who = "(owner = ? OR shared = 1)" if include_shared else "owner = ?"
        sql = f"SELECT * FROM jobs WHERE {who}"
        args: list[Any] = [owner]
        if template is not None:
            sql += " AND template = ?"
            args.append(template)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def interrupted(self) -> list[Job]:
        """Runs left active by a previous process (they cannot be resumed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
        return [self._row(r) for r in rows]
