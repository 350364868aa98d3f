"""The UWS job store: SQLite (embedded default, one file under the services' state directory)
or PostgreSQL (scale-out: every API replica shares it).

Jobs survive restarts. Each store instance is a *worker* that records a heartbeat; a job that is
QUEUED or EXECUTING belongs to the worker that started it. :meth:`JobStore.recover` turns such
jobs into ERROR with a reason once their worker stopped beating (the process died), so none is
lost or stuck - without touching jobs that another live replica is running.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sciplat.services.common.uws.models import Job, JobResult, Phase

if TYPE_CHECKING:
    from sciplat.config import Settings

__all__ = ["JobStore", "PostgresJobStore", "open_job_store"]

log = logging.getLogger("sciplat.services.uws")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {jobs} (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    owner TEXT NOT NULL,
    run_id TEXT,
    phase TEXT NOT NULL,
    parameters TEXT NOT NULL,
    creation_time {real} NOT NULL,
    start_time {real},
    end_time {real},
    execution_duration BIGINT NOT NULL,
    destruction {real} NOT NULL,
    error TEXT,
    results TEXT NOT NULL DEFAULT '[]',
    worker TEXT
);
CREATE INDEX IF NOT EXISTS {jobs}_owner ON {jobs} (service, owner, creation_time);
CREATE TABLE IF NOT EXISTS {workers} (id TEXT PRIMARY KEY, seen {real} NOT NULL);
"""

_COLUMNS = (
    "id, owner, run_id, phase, parameters, creation_time, start_time, end_time, "
    "execution_duration, destruction, error, results"
)
#: Why a recovered job ended.
RECOVERED_ERROR = (
    "The service restarted (or its process died) while this job was running; submit it again"
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
    """Jobs of one service (``service`` keeps TAP and SODA jobs apart in a shared store), in a
    SQLite file. Subclasses change the connection (:meth:`_run`) and the table names."""

    _JOBS = "jobs"
    _WORKERS = "workers"
    _REAL = "REAL"
    #: Only one process uses a SQLite file: at start-up every other worker is known dead.
    exclusive = True

    def __init__(self, path: Path, service: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.service = service
        self.worker = uuid.uuid4().hex
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._db.executescript(self._ddl())
            names = {row[1] for row in self._db.execute(f"PRAGMA table_info({self._JOBS})")}
            if "worker" not in names:  # a store written before workers were recorded
                self._db.execute(f"ALTER TABLE {self._JOBS} ADD COLUMN worker TEXT")

    def _ddl(self) -> str:
        return _SCHEMA.format(jobs=self._JOBS, workers=self._WORKERS, real=self._REAL)

    def _run(self, sql: str, args: tuple | list = ()) -> tuple[list[tuple], int]:
        """Execute one statement; returns (rows, rowcount)."""
        with self._lock:
            cursor = self._db.execute(sql, args)
            return cursor.fetchall(), cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: Job) -> None:
        self._run(
            f"INSERT INTO {self._JOBS} (service, {_COLUMNS}, worker) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.service, *self._values(job), self._owner_worker(job)),
        )

    def _owner_worker(self, job: Job) -> str | None:
        return self.worker if job.phase in (Phase.QUEUED, Phase.EXECUTING) else None

    def save(self, job: Job) -> None:
        values = self._values(job)
        worker = self._owner_worker(job)
        self._run(
            f"UPDATE {self._JOBS} SET owner=?, run_id=?, phase=?, parameters=?, "
            "creation_time=?, start_time=?, end_time=?, execution_duration=?, destruction=?, "
            "error=?, results=?, worker=COALESCE(?, worker) WHERE id=? AND service=?",
            (*values[1:], worker, values[0], self.service),
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
        rows, _ = self._run(
            f"SELECT {_COLUMNS} FROM {self._JOBS} WHERE id=? AND service=?",
            (job_id, self.service),
        )
        return _job(rows[0]) if rows else None

    def list(
        self,
        owner: str,
        *,
        phases: list[Phase] | None = None,
        after: float | None = None,
        last: int | None = None,
    ) -> list[Job]:
        sql = f"SELECT {_COLUMNS} FROM {self._JOBS} WHERE service=? AND owner=?"
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
        rows, _ = self._run(sql, args)
        return [_job(r) for r in rows]

    def existing(self, job_ids: list[str]) -> set[str]:
        """Which of *job_ids* are still in the store."""
        if not job_ids:
            return set()
        rows, _ = self._run(
            f"SELECT id FROM {self._JOBS} WHERE service=? AND id IN "
            f"({','.join('?' * len(job_ids))})",
            (self.service, *job_ids),
        )
        return {row[0] for row in rows}

    def delete(self, job_id: str) -> None:
        self._run(f"DELETE FROM {self._JOBS} WHERE id=? AND service=?", (job_id, self.service))

    def expired(self, now: float) -> list[Job]:
        rows, _ = self._run(
            f"SELECT {_COLUMNS} FROM {self._JOBS} WHERE service=? AND destruction < ?",
            (self.service, now),
        )
        return [_job(r) for r in rows]

    def heartbeat(self, now: float) -> None:
        """Record that this worker is alive."""
        self._run(
            f"INSERT INTO {self._WORKERS} (id, seen) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seen = excluded.seen",
            (self.worker, now),
        )

    def recover(self, now: float, alive_after: float | None = None) -> int:
        """Jobs left QUEUED or EXECUTING by a worker not seen since *alive_after* (default: any
        other worker) end in ERROR with a reason; returns how many."""
        if alive_after is None:
            alive_after = float("inf")
        _, count = self._run(
            f"UPDATE {self._JOBS} SET phase='ERROR', end_time=?, error=? "
            "WHERE service=? AND phase IN ('QUEUED', 'EXECUTING') AND (worker IS NULL OR "
            f"(worker <> ? AND worker NOT IN (SELECT id FROM {self._WORKERS} WHERE seen >= ?)))",
            (now, RECOVERED_ERROR, self.service, self.worker, alive_after),
        )
        return count

    def forget_worker(self) -> None:
        """A clean shutdown: this worker stops beating."""
        self._run(f"DELETE FROM {self._WORKERS} WHERE id=?", (self.worker,))


class PostgresJobStore(JobStore):
    """The same store in PostgreSQL (tables ``uws_jobs`` and ``uws_workers``), shared by every
    replica of the API service."""

    _JOBS = "uws_jobs"
    _WORKERS = "uws_workers"
    _REAL = "DOUBLE PRECISION"
    exclusive = False

    def __init__(self, url: str, service: str) -> None:
        import psycopg

        self.service = service
        self.worker = uuid.uuid4().hex
        self.url = url
        self._lock = threading.Lock()
        self._db = psycopg.connect(url, autocommit=True)
        self._migrate()

    def _migrate(self) -> None:
        # Several replicas may start at once: one creates the tables at a time.
        with self._lock, self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext('sciplat-uws-schema'))")
            for statement in filter(str.strip, self._ddl().split(";")):
                self._db.execute(statement)
            self._db.execute(f"ALTER TABLE {self._JOBS} ADD COLUMN IF NOT EXISTS worker TEXT")

    def _run(self, sql: str, args: tuple | list = ()) -> tuple[list[tuple], int]:
        import psycopg

        sql = sql.replace("?", "%s")
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
            except psycopg.OperationalError:
                # The connection broke (database restart): reconnect once and retry.
                self._db = psycopg.connect(self.url, autocommit=True)
                cursor = self._db.execute(sql, args)
            rows = cursor.fetchall() if cursor.description is not None else []
            return rows, cursor.rowcount


def open_job_store(settings: Settings, state_dir: Path, service: str) -> JobStore:
    """The configured job store: PostgreSQL at ``jobs.url`` (or at ``catalog.url`` when the
    catalog is on PostgreSQL and that role may create the tables), else SQLite under
    *state_dir*."""
    import psycopg

    url = settings.jobs.url
    if url:
        return PostgresJobStore(url, service)
    if settings.catalog.backend == "postgres" and settings.catalog.url:
        try:
            return PostgresJobStore(settings.catalog.url, service)
        except psycopg.Error as exc:
            log.warning(
                "UWS job store: catalog.url cannot hold the job tables (%s); using SQLite "
                "under %s (set jobs.url to a role that may create tables)",
                str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                state_dir,
            )
    return JobStore(state_dir / "jobs.sqlite3", service)
