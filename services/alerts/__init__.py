"""Alert distribution: the alert archive (replayable) and a filtered stream over HTTP.

Mounted in the API service as ``/services/api/alerts`` (plugin name ``alerts``; scope
``custom:tap:read``, the scope that reads catalog data). The prompt pipeline writes the archive
(``<data_dir>/alerts/archive/<visit>/<detector>.avro``); subscribers read it from any visit on
and then follow new visits as server-sent events, each with their own filter.
"""

from __future__ import annotations

from sciplat.services.plugin import AppContext, ServicePlugin

__all__ = ["SCOPE", "plugin"]

SCOPE = "custom:tap:read"


async def _startup(context: AppContext) -> None:
    from sciplat.services.alerts.service import AlertStreamService

    root = context.settings.data_dir / "alerts" / "archive"
    context.state["alerts"] = AlertStreamService(root)


def _router():
    from sciplat.services.alerts.handlers import build_router

    return build_router()


plugin = ServicePlugin(name="alerts", router_factory=_router, error_format="json", startup=_startup)
