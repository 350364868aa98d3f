"""The TAP area of the API service (mounted at ``/services/api/tap``)."""

from __future__ import annotations

import asyncio
import logging

from sciplat.config import Settings
from sciplat.services.common.uws.models import Job
from sciplat.services.common.uws.service import UWSService
from sciplat.services.common.uws.store import open_job_store
from sciplat.services.plugin import AppContext, ServicePlugin
from sciplat.services.tap.handlers import TapState, build_router
from sciplat.services.tap.history import QueryHistory
from sciplat.services.tap.quota import QueryQuota
from sciplat.services.tap.services import TapService
from sciplat.services.tap.storage.base import Catalog

__all__ = ["open_catalog", "plugin"]

log = logging.getLogger("sciplat.services.tap")

#: How long async jobs and their results are kept (seconds).
RETENTION = 7 * 86400


def open_catalog(settings: Settings) -> Catalog:
    """The configured catalog backend (DuckDB file of the data set, or PostgreSQL)."""
    if settings.catalog.backend == "postgres":
        from sciplat.services.tap.storage.postgres import PostgresCatalog

        return PostgresCatalog(settings.catalog.url)
    from sciplat.services.tap.storage.duckdb import DuckDBCatalog

    return DuckDBCatalog(settings.dataset_dir / "catalog" / "catalog.duckdb")


async def startup(context: AppContext) -> None:
    # pyarrow imports pandas lazily on first use; pay for it now, not in the first query.
    import pandas  # noqa: F401

    settings = context.settings
    state_dir = settings.services_state_dir / "tap"
    base_url = f"{context.public_url}/tap"
    try:
        catalog = open_catalog(settings)
    except Exception as exc:
        log.error("TAP: no catalog (%s); the service reports itself unavailable", exc)
        context.state["tap"] = TapState(None, None, reason=str(exc))
        return
    history = QueryHistory(state_dir / "history.sqlite3")
    quota = QueryQuota(settings)
    service = TapService(catalog, settings, history=history, quota=quota, public_url=base_url)
    store = await asyncio.to_thread(open_job_store, settings, state_dir, "tap")

    def groups_of(job: Job) -> tuple[str, ...]:
        return service.groups_of(job.id, jobs.job_dir(job.id))

    jobs = UWSService(
        store,
        runner=service.run_job,
        results_dir=state_dir / "results",
        default_duration=settings.catalog.query_timeout,
        max_duration=settings.catalog.query_timeout,
        retention=RETENTION,
        admission=lambda job: quota.slot(job.owner, groups_of(job)),
        heartbeat=settings.jobs.heartbeat,
    )
    await jobs.startup()
    context.state["tap"] = TapState(service, jobs)
    log.info("TAP: %d tables from %s", len(service.schema.tables), catalog.name)


async def shutdown(context: AppContext) -> None:
    state: TapState | None = context.state.get("tap")
    if state is None or state.service is None:
        return
    if state.jobs is not None:
        await state.jobs.shutdown()
        state.jobs.store.close()
    state.service.history.close()
    state.service.catalog.close()


plugin = ServicePlugin(
    name="tap",
    router_factory=build_router,
    error_format="votable",
    startup=startup,
    shutdown=shutdown,
)
