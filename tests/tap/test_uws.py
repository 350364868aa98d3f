"""UWS machinery without HTTP: persistence across restarts, crash recovery, WAIT, abort,
execution-duration limits, expiry; and the per-user query quota."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from sciplat.config import GroupConfig, QuotaConfig, Settings
from sciplat.services.common.errors import QuotaExceededError, UsageError
from sciplat.services.common.uws.models import Job, JobResult, Phase
from sciplat.services.common.uws.service import CancelToken, UWSService
from sciplat.services.common.uws.store import JobStore, PostgresJobStore, open_job_store
from sciplat.services.tap.quota import QueryQuota


async def _default_runner(job: Job, directory: Path, token: CancelToken) -> list[JobResult]:
    (directory / "result").write_text(job.parameter("query") or "")
    return [JobResult("result", "http://x/result", "text/plain", 1)]


def make_service(tmp_path: Path, runner=None, store=None, **kwargs) -> UWSService:
    store = store or JobStore(tmp_path / "jobs.sqlite3", service="test")
    return UWSService(
        store, runner=runner or _default_runner, results_dir=tmp_path / "results", **kwargs
    )


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request, tmp_path: Path):
    """Opens the job store as a (re)started service process would: SQLite file or a
    PostgreSQL database of the test cluster."""
    if request.param == "sqlite":
        return lambda: JobStore(tmp_path / "jobs.sqlite3", service="test")
    url = request.getfixturevalue("pg_database")("uws_store")
    return lambda: PostgresJobStore(url, service="test")


async def _crash_setup(tmp_path: Path, store) -> tuple[UWSService, Job, Job]:
    """A service with one COMPLETED job (with a result file) and one it was EXECUTING."""
    release = asyncio.Event()

    async def runner(job: Job, directory: Path, token: CancelToken) -> list[JobResult]:
        if job.parameter("query") == "slow":
            await release.wait()
        return await _default_runner(job, directory, token)

    service = make_service(tmp_path, runner=runner, store=store, heartbeat=0.2)
    await service.startup()
    done = service.create(service.new_id(), "alice", [("query", "q1")], "run-1")
    await service.run(done)
    done = await service.wait(service.get("alice", done.id), 5)
    done = await service.wait(done, 5)
    assert done.phase == Phase.COMPLETED
    running = service.create(service.new_id(), "alice", [("query", "slow")], None)
    await service.run(running)
    running = await service.wait(service.get("alice", running.id), 5, Phase.QUEUED)
    assert running.phase == Phase.EXECUTING
    return service, done, running


async def _crash(service: UWSService) -> None:
    """The process dies: its tasks stop without saving anything, its heartbeat stops."""
    service._reaper.cancel()
    for task, _ in list(service._tasks.values()):
        task.cancel()
    for task, _ in list(service._tasks.values()):
        with contextlib.suppress(BaseException):
            await task
    service.store.close()


async def test_jobs_survive_restart_and_crash_recovery(tmp_path: Path, new_store) -> None:
    """Jobs and results survive a restart; a job EXECUTING when the process died ends in ERROR
    with a reason, on both stores."""
    service, done, running = await _crash_setup(tmp_path, new_store())
    # What the crash leaves behind: the job still EXECUTING in the store.
    service._save = lambda job: None  # a dead process saves nothing
    await _crash(service)
    assert new_store().get(running.id).phase == Phase.EXECUTING

    restarted = make_service(tmp_path, store=new_store(), heartbeat=0.2)
    await restarted.startup()
    deadline = time.monotonic() + 10
    while restarted.get("alice", running.id).phase == Phase.EXECUTING:
        assert time.monotonic() < deadline, "the crashed job was never recovered"
        await asyncio.sleep(0.1)  # shared store: recovered once the dead heartbeat is stale
    crashed = restarted.get("alice", running.id)
    assert crashed.phase == Phase.ERROR and "restarted" in crashed.error
    assert [j.id for j in restarted.list("alice", phases=[Phase.ERROR])] == [running.id]
    again = restarted.get("alice", done.id)
    assert again.phase == Phase.COMPLETED and again.results[0].id == "result"
    assert (restarted.job_dir(done.id) / "result").read_text() == "q1"
    with pytest.raises(Exception, match="No job"):
        restarted.get("bob", done.id)
    await restarted.shutdown()


async def test_shared_store_spares_live_replicas(tmp_path: Path, pg_database) -> None:
    """Two replicas on one PostgreSQL store: a replica starting up (or beating) never ends a
    job the other, live, replica is running; the running job completes normally."""
    url = pg_database("uws_replicas")
    first, _, running = await _crash_setup(tmp_path, PostgresJobStore(url, service="test"))
    second = make_service(
        tmp_path / "b", store=PostgresJobStore(url, service="test"), heartbeat=0.2
    )
    await second.startup()
    await asyncio.sleep(1.0)  # several heartbeats of both
    assert second.beat() == 0
    assert second.get("alice", running.id).phase == Phase.EXECUTING
    # The first replica dies: the second ends its job within a few heartbeats.
    first._save = lambda job: None
    await _crash(first)
    deadline = time.monotonic() + 10
    while second.get("alice", running.id).phase == Phase.EXECUTING:
        assert time.monotonic() < deadline, "the dead replica's job was never recovered"
        await asyncio.sleep(0.1)
    assert second.get("alice", running.id).phase == Phase.ERROR
    await second.shutdown()


def test_job_store_selection(tmp_path: Path, pg_database) -> None:
    """jobs.url selects PostgreSQL; a postgres catalog whose role cannot create tables falls
    back to SQLite (with a warning); the embedded default is SQLite."""
    import psycopg

    from sciplat.config import CatalogConfig, JobsConfig

    url = pg_database("uws_select")
    chosen = open_job_store(Settings(jobs=JobsConfig(url=url)), tmp_path, "tap")
    assert isinstance(chosen, PostgresJobStore)
    chosen.close()
    embedded = open_job_store(Settings(), tmp_path, "tap")
    assert type(embedded) is JobStore and (tmp_path / "jobs.sqlite3").exists()
    embedded.close()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP ROLE IF EXISTS uws_reader")
        con.execute("CREATE ROLE uws_reader LOGIN PASSWORD 'r'")
    reader_url = url.replace("postgres@", "uws_reader:r@")
    catalog = CatalogConfig(backend="postgres", url=reader_url)
    fallback = open_job_store(Settings(catalog=catalog), tmp_path / "fb", "tap")
    assert type(fallback) is JobStore
    fallback.close()


async def test_abort_timeout_and_expiry(tmp_path: Path) -> None:
    async def slow(job: Job, directory: Path, token: CancelToken) -> list[JobResult]:
        await asyncio.sleep(30)
        return []

    service = make_service(tmp_path, runner=slow)
    await service.startup()
    job = service.create(service.new_id(), "alice", [], None)
    await service.run(job)
    await asyncio.sleep(0.1)
    aborted = await service.abort(service.get("alice", job.id))
    assert aborted.phase == Phase.ABORTED
    with pytest.raises(UsageError):
        await service.run(aborted)
    limited = service.create(service.new_id(), "alice", [], None)
    service.set_execution_duration(limited, "1")
    started = time.monotonic()
    await service.run(limited)
    result = await service.wait(service.get("alice", limited.id), 10, Phase.QUEUED)
    result = await service.wait(result, 10)
    assert result.phase == Phase.ERROR and "execution duration" in result.error
    assert time.monotonic() - started < 5
    with pytest.raises(UsageError):
        service.set_execution_duration(result, "-1")
    service.set_destruction(result, time.time() - 10)
    assert await service.reap() == 1
    assert service.store.get(limited.id) is None
    await service.shutdown()


def test_quota_from_groups() -> None:
    settings = Settings(
        groups={
            "users": GroupConfig(quotas=QuotaConfig(tap_concurrent=1)),
            "staff": GroupConfig(quotas=QuotaConfig(tap_concurrent=3)),
        },
        hub={"default_groups": ["users"]},
    )
    quota = QueryQuota(settings)
    assert quota.limit(("users",)) == 1 and quota.limit(("users", "staff")) == 3
    quota.acquire("alice", ("users",))
    with pytest.raises(QuotaExceededError, match="1 TAP queries"):
        quota.acquire("alice", ("users",))
    quota.acquire("bob", ("users",))
    quota.release("alice")
    quota.acquire("alice", ("users",))


async def test_sync_over_quota_is_429(tmp_path: Path) -> None:
    """Through the real app: a user whose groups allow no concurrent query gets HTTP 429."""
    from sciplat.services.app import create_app, load_plugins
    from sciplat.services.common.auth import AuthenticatedUser, HubTokenVerifier
    from sciplat.services.tap.sample import build_sample_catalog

    settings = Settings(
        data_dir=tmp_path,
        groups={"users": GroupConfig(quotas=QuotaConfig(tap_concurrent=0))},
        hub={"default_groups": ["users"]},
    )
    build_sample_catalog(settings.dataset_dir, objects=100)

    class Verifier(HubTokenVerifier):
        async def verify(self, token: str) -> AuthenticatedUser:
            return AuthenticatedUser(token, frozenset({"custom:tap:read"}), ("users",))

    app = create_app(settings, plugins=load_plugins(["sciplat.services.tap:plugin"]))
    async with LifespanManager(app):
        app.state.context.verifier = Verifier("http://unused", http=app.state.context.http)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(
                "/services/api/tap/sync",
                params={"QUERY": "SELECT TOP 1 objectId FROM dp1.Object"},
                headers={"Authorization": "Bearer alice"},
            )
    assert response.status_code == 429
    assert "QUERY_STATUS" in response.text and "most your groups allow" in response.text


def test_sync_slot_released_even_if_body_never_read(sample_catalog, make_tap_service) -> None:
    import gc

    from sciplat.services.common.params import DaliParams
    from sciplat.services.tap.services import parse_request

    service = make_tap_service(sample_catalog)
    settings = service.settings
    request = parse_request(
        DaliParams([("query", "SELECT TOP 3 objectId FROM dp1.Object"), ("format", "csv")]),
        settings,
    )
    service.quota.acquire("alice", ())
    body = service.sync_body(service.open(request, {}, timeout=None), request, "alice", 0.0)
    assert service.quota.running("alice") == 1
    del body
    gc.collect()
    assert service.quota.running("alice") == 0
    service.quota.acquire("alice", ())
    text = b"".join(
        service.sync_body(service.open(request, {}, timeout=None), request, "alice", time.time())
    )
    assert text.count(b"\n") == 4 and service.quota.running("alice") == 0
    entry = service.history.list("alice")[0]
    assert entry.rows == 3 and entry.status == "OK" and entry.format == "csv"


def test_small_sync_results_are_answered_whole(
    sample_catalog, make_tap_service, monkeypatch
) -> None:
    """A small result is written at once (bytes; slot released, query logged); a large one
    starts the same way and streams the rest, holding the slot until it is read."""
    from sciplat.services.common.params import DaliParams
    from sciplat.services.tap import services as tap_services
    from sciplat.services.tap.services import parse_request

    service = make_tap_service(sample_catalog)
    settings = service.settings

    def run(query: str) -> bytes | object:
        request = parse_request(DaliParams([("query", query), ("format", "csv")]), settings)
        service.quota.acquire("alice", ())
        return service.sync_response(
            service.open(request, {}, timeout=None), request, "alice", time.time()
        )

    small = run("SELECT TOP 3 objectId FROM dp1.Object")
    assert isinstance(small, bytes) and small.count(b"\n") == 4
    assert service.quota.running("alice") == 0
    assert service.history.list("alice")[0].rows == 3

    monkeypatch.setattr(tap_services, "INLINE_BYTES", 2000)
    large = run("SELECT objectId, coord_ra FROM dp1.Object")
    assert not isinstance(large, bytes)
    assert service.quota.running("alice") == 1
    text = b"".join(large)
    assert text.count(b"\n") == 3001 and service.quota.running("alice") == 0
    assert service.history.list("alice")[0].rows == 3000


def test_owner_groups_of_a_job_survive_a_restart(
    sample_catalog, make_tap_service, tmp_path: Path
) -> None:
    """A queued job keeps its owner's groups (quota admission, shared tables) across restarts."""
    job_dir = tmp_path / "jobs" / "j1"
    make_tap_service(sample_catalog).remember_groups("j1", ("staff", "users"), job_dir)
    restarted = make_tap_service(sample_catalog)
    assert restarted.groups_of("j1", job_dir) == ("staff", "users")
    assert restarted.groups_of("unknown", tmp_path / "jobs" / "unknown") == ()
