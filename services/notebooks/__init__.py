"""Prepared and templated notebooks: a catalogue of templates, an execution service that runs
them as the requesting user, a result cache, run history and a page for commissioning staff.

Mounted in the API service as ``/services/api/notebooks`` (plugin name ``notebooks``).
"""

from __future__ import annotations

import asyncio

from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["plugin"]


async def _startup(context: AppContext) -> None:
    from sciplat.services.notebooks.catalog import TemplateCatalog, default_template_dirs
    from sciplat.services.notebooks.engine import Executor
    from sciplat.services.notebooks.service import NotebookService
    from sciplat.services.notebooks.store import JobStore

    settings = context.settings
    store = JobStore(settings.services_state_dir / "notebooks")
    catalog = TemplateCatalog([*default_template_dirs(), *settings.notebooks.template_dirs])
    service = NotebookService(settings, store, catalog, Executor(settings))
    context.state["notebooks"] = service
    # Read the catalogue (and import nbformat/jsonschema, slow) in the background, so neither
    # the service's start nor its first request waits for it.
    service.warmup = asyncio.create_task(asyncio.to_thread(catalog.templates))


async def _shutdown(context: AppContext) -> None:
    service = context.state.pop("notebooks", None)
    if service is not None:
        if service.warmup is not None:
            await asyncio.gather(service.warmup, return_exceptions=True)
        await service.shutdown()
        service.store.close()


def _router():
    from sciplat.services.notebooks.handlers import build_router

    return build_router()


plugin = ServicePlugin(
    name="notebooks",
    router_factory=_router,
    error_format="json",
    startup=_startup,
    shutdown=_shutdown,
)
