"""The UWS job store: SQLite (embedded default), one file under the services' state directory.

Jobs survive restarts; :meth:`JobStore.recover` turns jobs that were QUEUED or EXECUTING when
the process died into ERROR with a reason, so none is lost or stuck.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from sciplat.services.common.uws.models import Job, JobResult, Phase

__all__ = ["JobStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    owner TEXT NOT NULL,
    run_id TEXT,
    phase TEXT NOT NULL,
    parameters TEXT NOT NULL,
    creation_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    execution_duration INTEGER NOT NULL,
    destruction REAL NOT NULL,
    error TEXT,
    results TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (service, owner, creation_time);
"""

_COLUMNS = (
    "id, owner, run_id, phase, parameters, creation_time, start_time, end_time, "
    "execution_duration, destruction, error, results"
)


def _job(row: tuple) -> Job:
    (
        id_,
        owner,
        run_id,
        phase,
        params,
        created,
        started,
        ended,
        duration,
        destruction,
        error,
        results,
    ) = row
    return Job(
        id=id_,
        owner=owner,
        run_id=run_id,
        phase=Phase(phase),
        parameters=[tuple(p) for p in json.loads(params)],
        creation_time=created,
        start_time=started,
        end_time=ended,
        execution_duration=duration,
        destruction=destruction,
        error=error,
        results=[JobResult(**r) for r in json.loads(results)],
    )


class JobStore:
    """Jobs of one service (``service`` keeps TAP and SODA jobs apart in a shared file)."""

    def __init__(self, path: Path, service: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.service = service
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT INTO jobs (service, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (self.service, *self._values(job)),
            )

    def save(self, job: Job) -> None:
        with self._lock:
            values = self._values(job)
            self._db.execute(
                "UPDATE jobs SET owner=?, run_id=?, phase=?, parameters=?, creation_time=?, "
                "start_time=?, end_time=?, execution_duration=?, destruction=?, error=?, "
                "results=? WHERE id=? AND service=?",
                (*values[1:], values[0], self.service),
            )

    @staticmethod
    def _values(job: Job) -> tuple:
        return (
            job.id,
            job.owner,
            job.run_id,
            job.phase.value,
            json.dumps(job.parameters),
            job.creation_time,
            job.start_time,
            job.end_time,
            job.execution_duration,
            job.destruction,
            job.error,
            json.dumps([r.__dict__ for r in job.results]),
        )

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id=? AND service=?", (job_id, self.service)
            ).fetchone()
        return _job(row) if row else None

    def list(
        self,
        owner: str,
        *,
        phases: list[Phase] | None = None,
        after: float | None = None,
        last: int | None = None,
    ) -> list[Job]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE service=? AND owner=?"
        args: list[object] = [self.service, owner]
        if phases:
            sql += f" AND phase IN ({','.join('?' * len(phases))})"
            args += [p.value for p in phases]
        else:
            sql += " AND phase != 'ARCHIVED'"
        if after is not None:
            sql += " AND creation_time > ?"
            args.append(after)
        sql += " ORDER BY creation_time DESC"
        if last is not None:
            sql += " LIMIT ?"
            args.append(last)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_job(r) for r in rows]

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id=? AND service=?", (job_id, self.service))

    def expired(self, now: float) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE service=? AND destruction < ?",
                (self.service, now),
            ).fetchall()
        return [_job(r) for r in rows]

    def recover(self, now: float) -> int:
        """Jobs that were running when the service stopped end in ERROR; returns how many."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET phase='ERROR', end_time=?, error=? "
                "WHERE service=? AND phase IN ('QUEUED', 'EXECUTING')",
                (
                    now,
                    "The service restarted while this job was running; submit it again",
                    self.service,
                ),
            )
            return cursor.rowcount
