"""UWS job logic: create, run, abort, wait, expire. Protocol-independent; a service supplies a
``runner`` that does the work of one job and returns its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from sciplat.services.common.errors import NotFoundError, ServiceError, UsageError
from sciplat.services.common.uws.models import ACTIVE_PHASES, Job, JobResult, Phase
from sciplat.services.common.uws.store import JobStore

__all__ = ["CancelToken", "Runner", "UWSService"]

log = logging.getLogger("sciplat.services.uws")


class CancelToken:
    """Set when a job is aborted or times out; runners register how to stop their work."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self.event.is_set():
                callback()
            else:
                self._callbacks.append(callback)

    def cancel(self) -> None:
        with self._lock:
            self.event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()


#: Does one job's work; writes results under ``job_dir`` and returns them.
Runner = Callable[[Job, Path, CancelToken], Awaitable[list[JobResult]]]
#: Admission control: an async context held while the job executes (e.g. a per-user slot).
Admission = Callable[[Job], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def _always(job: Job) -> AsyncIterator[None]:
    yield


class UWSService:
    def __init__(
        self,
        store: JobStore,
        *,
        runner: Runner,
        results_dir: Path,
        default_duration: int = 600,
        max_duration: int = 3600,
        retention: int = 7 * 86400,
        max_wait: int = 60,
        admission: Admission = _always,
        heartbeat: float = 10.0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.results_dir = results_dir
        self.default_duration = default_duration
        self.max_duration = max_duration
        self.retention = retention
        self.max_wait = max_wait
        self.admission = admission
        self.heartbeat = heartbeat
        self._changed: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, tuple[asyncio.Task, CancelToken]] = {}
        self._reaper: asyncio.Task | None = None

    # life cycle -----------------------------------------------------------------------------
    async def startup(self) -> None:
        now = time.time()
        self.store.heartbeat(now)
        alive_after = None if self.store.exclusive else now - 3 * self.heartbeat
        recovered = self.store.recover(now, alive_after)
        if recovered:
            log.warning("%d job(s) were running at the last shutdown; marked ERROR", recovered)
        self._reaper = asyncio.create_task(self._reap_forever())

    async def shutdown(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for task, token in list(self._tasks.values()):
            token.cancel()
            task.cancel()
        for task, _ in list(self._tasks.values()):
            with contextlib.suppress(BaseException):
                await task
        self.store.forget_worker()

    def job_dir(self, job_id: str) -> Path:
        return self.results_dir / job_id

    # jobs -----------------------------------------------------------------------------------
    def new_id(self) -> str:
        return secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")

    def create(
        self, job_id: str, owner: str, parameters: list[tuple[str, str]], run_id: str | None
    ) -> Job:
        now = time.time()
        job = Job(
            id=job_id,
            owner=owner,
            phase=Phase.PENDING,
            parameters=parameters,
            creation_time=now,
            execution_duration=self.default_duration,
            destruction=now + self.retention,
            run_id=run_id,
        )
        self.store.add(job)
        return job

    def get(self, owner: str, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"No job {job_id!r}")
        return job

    def list(self, owner: str, **filters: object) -> list[Job]:
        return self.store.list(owner, **filters)  # type: ignore[arg-type]

    def _save(self, job: Job) -> None:
        self.store.save(job)
        event = self._changed.pop(job.id, None)
        if event is not None:
            event.set()

    def update_parameters(self, job: Job, parameters: list[tuple[str, str]]) -> Job:
        if job.phase != Phase.PENDING:
            raise UsageError(f"Parameters can only change while the job is PENDING ({job.phase})")
        names = {name for name, _ in parameters}
        job.parameters = [p for p in job.parameters if p[0] not in names] + parameters
        self._save(job)
        return job

    def set_execution_duration(self, job: Job, value: str) -> Job:
        try:
            seconds = int(value)
        except ValueError as exc:
            raise UsageError(f"EXECUTIONDURATION must be an integer, not {value!r}") from exc
        if seconds < 0:
            raise UsageError("EXECUTIONDURATION must not be negative")
        if job.phase != Phase.PENDING:
            raise UsageError("EXECUTIONDURATION can only change while the job is PENDING")
        job.execution_duration = (
            self.max_duration if seconds == 0 else min(seconds, self.max_duration)
        )
        self._save(job)
        return job

    def set_destruction(self, job: Job, when: float) -> Job:
        job.destruction = min(max(when, time.time()), job.creation_time + self.retention)
        self._save(job)
        return job

    async def run(self, job: Job) -> Job:
        if job.phase in (Phase.QUEUED, Phase.EXECUTING):
            return job
        if job.phase != Phase.PENDING:
            raise UsageError(f"Cannot run a job in phase {job.phase}")
        job.phase = Phase.QUEUED
        self._save(job)
        token = CancelToken()
        task = asyncio.create_task(self._execute(job, token))
        self._tasks[job.id] = (task, token)
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def abort(self, job: Job) -> Job:
        if job.phase not in ACTIVE_PHASES:
            raise UsageError(f"Cannot abort a job in phase {job.phase}")
        running = self._tasks.get(job.id)
        if running:
            task, token = running
            token.cancel()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            job = self.store.get(job.id) or job
        if job.phase in ACTIVE_PHASES:
            job.phase = Phase.ABORTED
            job.end_time = time.time()
            self._save(job)
        return job

    async def delete(self, job: Job) -> None:
        if job.phase in ACTIVE_PHASES and job.id in self._tasks:
            await self.abort(job)
        self.store.delete(job.id)
        shutil.rmtree(self.job_dir(job.id), ignore_errors=True)
        event = self._changed.pop(job.id, None)
        if event:
            event.set()

    async def wait(self, job: Job, seconds: float, phase: Phase | None = None) -> Job:
        """Block until the job leaves its current (active) phase, at most *seconds*."""
        if job.phase not in ACTIVE_PHASES or (phase is not None and job.phase != phase):
            return job
        if seconds < 0 or seconds > self.max_wait:
            seconds = self.max_wait
        deadline = time.monotonic() + seconds
        current = job.phase
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            event = self._changed.setdefault(job.id, asyncio.Event())
            # Changes made by another replica sharing the store are seen by polling it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 1.0))
            fresh = self.store.get(job.id)
            if fresh is None:
                return job
            job = fresh
            if job.phase != current:
                return job

    async def _execute(self, job: Job, token: CancelToken) -> None:
        directory = self.job_dir(job.id)
        try:
            async with self.admission(job):
                job.phase = Phase.EXECUTING
                job.start_time = time.time()
                self._save(job)
                directory.mkdir(parents=True, exist_ok=True)
                timeout = job.execution_duration or None
                results = await asyncio.wait_for(self.runner(job, directory, token), timeout)
            job.results = results
            job.phase = Phase.COMPLETED
        except TimeoutError:
            token.cancel()
            job.phase = Phase.ERROR
            job.error = f"The job exceeded its execution duration of {job.execution_duration} s"
        except asyncio.CancelledError:
            token.cancel()
            job.phase = Phase.ABORTED
        except ServiceError as exc:
            job.phase = Phase.ERROR
            job.error = exc.message
        except Exception:
            log.exception("job %s failed", job.id)
            job.phase = Phase.ERROR
            job.error = "Internal error while running the job; it has been logged"
        job.end_time = time.time()
        if self.store.get(job.id) is not None:
            self._save(job)

    async def reap(self) -> int:
        expired = self.store.expired(time.time())
        for job in expired:
            await self.delete(job)
        return len(expired)

    def beat(self) -> int:
        """Heartbeat, and end the jobs of service processes that died (shared stores: another
        replica's crash); returns how many jobs were ended."""
        now = time.time()
        self.store.heartbeat(now)
        recovered = self.store.recover(now, now - 3 * self.heartbeat)
        if recovered:
            log.warning("%d job(s) of a stopped service process marked ERROR", recovered)
        return recovered

    async def _reap_forever(self) -> None:
        last_reap = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await asyncio.to_thread(self.beat)
                if time.monotonic() - last_reap >= 60:
                    last_reap = time.monotonic()
                    await self.reap()
            except Exception:
                log.exception("job store upkeep failed")
