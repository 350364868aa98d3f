"""The dask JupyterLab extension's sidebar on the platform's dask-gateway.

dask-labextension keeps its clusters in one ``DaskClusterManager`` and lists only the clusters
it started itself; its dashboard proxy fetches a dashboard without credentials, which the
gateway (rightly, dask-gateway#570) refuses. When the lab has a gateway (``gateway.address``
in the dask configuration, set by the spawner), :func:`install`

- replaces that manager with a :class:`GatewayClusterManager` that also adopts every running
  cluster the gateway lists for the lab's token - the user's own, wherever they were started
  (a notebook, a pipeline, another lab); the gateway never lists another user's - and whose
  "shutdown" stops the cluster, adopted or not, and whose "adapt" reaches the gateway;
- answers ``GET dask/clusters`` after asking the gateway (at most once a second);
- serves ``dask/dashboard/<id>/...`` (the sidebar's dashboard panes) by forwarding to the
  gateway's authenticating dashboard route with the lab's hub token, never the browser's
  cookies, so a dashboard opens for its owner inside the lab.

Cluster ids are the gateway cluster names written as UUIDs (the extension's routes want those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

from tornado import web

__all__ = ["cluster_id", "install"]

log = logging.getLogger(__name__)


def cluster_id(name: str) -> str:
    """The extension's id of the gateway cluster *name* (a dashed UUID, stable)."""
    try:
        return str(uuid.UUID(hex=name))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _gateway_address() -> str | None:
    import dask

    return dask.config.get("gateway.address", None) or None


def install(serverapp: Any) -> bool:
    """Put the gateway-aware manager and routes in place; False when the lab has no gateway
    or no dask-labextension (the extension then works as shipped)."""
    address = _gateway_address()
    if not address:
        return False
    try:
        from dask_labextension import clusterhandler, dashboardhandler
        from dask_labextension import manager as manager_module
    except ImportError:
        return False
    try:
        _install(serverapp, address, (manager_module, clusterhandler, dashboardhandler))
    except Exception:  # never take the lab down: the sidebar then works as shipped
        serverapp.log.exception("dask sidebar: could not connect it to the gateway")
        return False
    return True


def _install(serverapp: Any, address: str, modules: tuple) -> None:
    from jupyter_server.utils import url_path_join

    manager = _manager_class()()
    handlers = _handler_classes(manager, address)
    for module in modules:
        module.manager = manager
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    uuid_re = r"(?P<cluster_id>\w+-\w+-\w+-\w+-\w+)"
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "dask/clusters/") + "?", handlers["clusters"]),
            (url_path_join(base, f"dask/clusters/{uuid_re}"), handlers["clusters"]),
            (
                url_path_join(base, f"dask/dashboard/{uuid_re}(?P<proxied_path>.+)"),
                handlers["dash"],
            ),
        ],
    )
    # dask-labextension registered the same routes first; tornado takes the first rule that
    # matches, so ours (just added, before the wildcard rule) go to the front.
    rules = web_app.default_router.rules
    rules.insert(0, rules.pop(-2))
    serverapp.log.info("dask sidebar: the user's clusters of the gateway at %s", address)


def _manager_class() -> type:
    from dask_labextension.manager import DaskClusterManager, make_cluster, make_cluster_model

    class GatewayClusterManager(DaskClusterManager):
        """dask-labextension's manager, plus every running cluster the gateway lists."""

        min_interval = 1.0

        def __init__(self) -> None:
            super().__init__()
            self._gateway: Any = None
            self._gateway_names: dict[str, str] = {}
            self._refreshed = 0.0
            self._lock = asyncio.Lock()
            self._tasks: set[asyncio.Future] = set()

        def gateway(self) -> Any:
            if self._gateway is None:
                from dask_gateway import Gateway

                self._gateway = Gateway(asynchronous=True)
            return self._gateway

        def gateway_name(self, cid: str) -> str | None:
            """The gateway's name of the cluster the extension calls *cid*."""
            return self._gateway_names.get(cid)

        def _add(self, cluster: Any, adaptive: Any = None) -> str:
            cid = cluster_id(cluster.name)
            self._clusters[cid] = cluster
            self._cluster_names[cid] = cluster.name
            self._gateway_names[cid] = cluster.name
            if adaptive is not None:
                self._adaptives[cid] = adaptive
            return cid

        def _forget(self, cid: str) -> Any:
            self._cluster_names.pop(cid, None)
            self._adaptives.pop(cid, None)
            self._gateway_names.pop(cid, None)
            return self._clusters.pop(cid, None)

        async def refresh(self) -> None:
            """Adopt the user's running clusters the gateway lists; forget the gone ones."""
            async with self._lock:
                if time.monotonic() - self._refreshed < self.min_interval:
                    return
                reports = await self.gateway().list_clusters(status="running")
                listed = {cluster_id(r.name): r.name for r in reports}
                for cid in [c for c in self._clusters if c not in listed]:
                    gone = self._forget(cid)  # stopped elsewhere: a notebook, culling, an admin
                    with contextlib.suppress(Exception):
                        await gone.close(shutdown=False)
                for cid, name in listed.items():
                    if cid not in self._clusters:
                        self._add(await self.gateway().connect(name))
                self._refreshed = time.monotonic()

        async def start_cluster(self, cluster_id: str = "", configuration: dict | None = None):
            # The gateway names the cluster; the sidebar's id follows from that name.
            cluster, adaptive = await make_cluster(configuration or {})
            cid = self._add(cluster, adaptive)
            return make_cluster_model(cid, cluster.name, cluster, adaptive)

        def adapt_cluster(self, cluster_id: str, minimum: int, maximum: int):
            # Upstream calls adapt() and keeps its result; a gateway cluster's adapt() is a
            # coroutine here (asynchronous client) that nobody awaited, and the model then
            # failed on it. Run it, and remember the bounds for the model.
            cluster = self._clusters.get(cluster_id)
            if cluster is None:
                return None
            task = asyncio.ensure_future(cluster.adapt(minimum=minimum, maximum=maximum))
            self._tasks.add(task)
            task.add_done_callback(self._adapted)
            adaptive = SimpleNamespace(minimum=minimum, maximum=maximum)
            self._adaptives[cluster_id] = adaptive
            return make_cluster_model(cluster_id, cluster.name, cluster, adaptive)

        def _adapted(self, task: asyncio.Future) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("dask sidebar: adaptive scaling refused: %s", task.exception())

        async def close_cluster(self, cluster_id: str):
            cluster = self._clusters.get(cluster_id)
            if cluster is None:
                return None
            model = make_cluster_model(
                cluster_id, cluster.name, cluster, self._adaptives.get(cluster_id)
            )
            await cluster.shutdown()  # adopted clusters too: "shutdown" means stop it
            self._forget(cluster_id)
            return model

    return GatewayClusterManager


def _handler_classes(manager: Any, address: str) -> dict[str, type]:
    from dask_labextension.clusterhandler import DaskClusterHandler
    from dask_labextension.dashboardhandler import DaskDashboardHandler

    class GatewayClusterHandler(DaskClusterHandler):
        """``GET dask/clusters[/<id>]`` after adopting the user's gateway clusters."""

        @web.authenticated
        async def get(self, cluster_id: str = "") -> None:
            try:
                await manager.refresh()
            except Exception as exc:  # the gateway down or refusing: list what we have
                self.log.warning("dask sidebar: could not list the gateway's clusters: %s", exc)
            await super().get(cluster_id)

    gateway = urlparse(address)

    class GatewayDashboardHandler(DaskDashboardHandler):
        """A cluster's dashboard through the gateway's authenticating route, as the user."""

        def _target(self, cluster_id: str, proxied_path: str) -> tuple[str, int, str]:
            name = manager.gateway_name(cluster_id)
            if name is None:
                raise web.HTTPError(404, f"Dask cluster {cluster_id} not found")
            path = f"{gateway.path.rstrip('/')}/clusters/{name}{proxied_path}"
            return gateway.hostname, gateway.port or 80, path

        def proxy(self, cluster_id: str, proxied_path: str):
            return super(DaskDashboardHandler, self).proxy(*self._target(cluster_id, proxied_path))

        async def open(self, cluster_id: str, proxied_path: str):
            return await self.proxy_open(*self._target(cluster_id, proxied_path))

        def proxy_request_headers(self) -> Any:
            headers = super().proxy_request_headers()
            headers.pop("Cookie", None)  # the lab's cookies are not the gateway's business
            return headers

        def get_request_headers_override(self) -> dict[str, str]:
            # The token the lab's gateway client uses (JupyterHubAuth: the lab's hub token).
            return {"Authorization": f"token {manager.gateway().auth.api_token}"}

    return {"clusters": GatewayClusterHandler, "dash": GatewayDashboardHandler}
