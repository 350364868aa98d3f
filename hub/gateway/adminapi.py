"""Operator view of the gateway: every user's clusters, resources in use, Prometheus metrics.

``GET <prefix>/api/v1/admin/clusters`` (hub admins) lists all active clusters with their
workers, cores and memory, the totals and the machine's capacity; ``sciplat admin clusters``
reads it, and ``GET <prefix>/admin`` shows it as a page for hub admins in a browser (linked
from the hub's admin page). ``GET <prefix>/api/metrics`` serves Prometheus text to hub
admins and to hub services granted the gateway's access scope (a Prometheus scraper).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["cluster_summary", "install", "machine_capacity", "snapshot"]


def machine_capacity() -> dict[str, int]:
    """Cores and memory of this machine (what local clusters share)."""
    memory = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count() or 1, "memory": memory}


def cluster_summary(cluster: Any) -> dict[str, Any]:
    """One backend cluster record as the admin view shows it."""
    from sciplat.hub.gateway.backend import Usage

    usage = Usage()
    usage.add_cluster(cluster)
    config = cluster.config
    return {
        "name": cluster.name,
        "user": cluster.username,
        "status": cluster.model_status.name,
        "workers": usage.workers,
        "target_workers": cluster.count,
        "cores": usage.cores,
        "memory": usage.memory,
        "worker_cores": config.get("worker_cores"),
        "worker_memory": config.get("worker_memory"),
        "max_workers": config.get("cluster_max_workers"),
        "image": config.get("image", ""),
        "idle_timeout": config.get("idle_timeout"),
        "start_time": cluster.start_time,
        "dashboard_route": f"/clusters/{cluster.name}/status",
    }


def snapshot(backend: Any) -> dict[str, Any]:
    """All active clusters, totals and capacity."""
    clusters = [cluster_summary(c) for c in backend.db.list_clusters()]
    totals = {
        "clusters": len(clusters),
        "workers": sum(c["workers"] for c in clusters),
        "cores": sum(c["cores"] for c in clusters),
        "memory": sum(c["memory"] for c in clusters),
        "users": len({c["user"] for c in clusters}),
    }
    return {"clusters": clusters, "totals": totals, "capacity": machine_capacity()}


def _metrics(backend: Any) -> bytes:
    registry = CollectorRegistry()
    data = snapshot(backend)
    labels = ["user"]
    clusters = Gauge("dask_gateway_clusters", "Active clusters", labels, registry=registry)
    workers = Gauge("dask_gateway_workers", "Active workers", labels, registry=registry)
    cores = Gauge(
        "dask_gateway_cores", "Cores held (schedulers + workers)", labels, registry=registry
    )
    memory = Gauge(
        "dask_gateway_memory_bytes", "Memory held (schedulers + workers)", labels, registry=registry
    )
    per_user: dict[str, list[float]] = {}
    for c in data["clusters"]:
        row = per_user.setdefault(c["user"], [0, 0, 0, 0])
        row[0] += 1
        row[1] += c["workers"]
        row[2] += c["cores"]
        row[3] += c["memory"]
    for user, (n, w, k, m) in per_user.items():
        clusters.labels(user).set(n)
        workers.labels(user).set(w)
        cores.labels(user).set(k)
        memory.labels(user).set(m)
    Gauge("dask_gateway_capacity_cores", "Cores of the machine", registry=registry).set(
        data["capacity"]["cores"]
    )
    Gauge("dask_gateway_capacity_memory_bytes", "Memory of the machine", registry=registry).set(
        data["capacity"]["memory"]
    )
    return generate_latest(registry)


def render_page(snapshot: dict[str, Any], prefix: str) -> str:
    """The operator page (``templates/clusters.html``)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
    )
    return env.get_template("clusters.html").render(prefix=prefix, **snapshot)


def install(app: web.Application, backend: Any, dashboards: Any) -> None:
    """Add the admin listing, page and metrics routes to the gateway's web application."""
    authenticator = app["authenticator"]

    async def admin_only(request: web.Request, *, services: bool = False) -> None:
        user = await authenticator.authenticate(request)
        if not (user.admin or (services and user.name.startswith("service:"))):
            raise web.HTTPForbidden(reason=f"{user.name} is not a hub admin")

    async def list_all(request: web.Request) -> web.Response:
        try:
            await admin_only(request)
        except web.HTTPException as exc:
            return web.json_response(
                {"error": exc.reason},
                status=exc.status,
                headers={"WWW-Authenticate": "jupyterhub"} if exc.status == 401 else None,
            )
        return web.json_response(snapshot(backend))

    async def metrics(request: web.Request) -> web.Response:
        await admin_only(request, services=True)
        return web.Response(body=_metrics(backend), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def page(request: web.Request) -> web.Response:
        user = await dashboards.user(request)  # a hub login for browsers
        if not user.admin:
            raise web.HTTPForbidden(text=f"{user.name} is not a hub admin")
        html = render_page(snapshot(backend), backend.proxy.prefix)
        return web.Response(text=html, content_type="text/html")

    app.add_routes(
        [
            web.get("/api/v1/admin/clusters", list_all),
            web.get("/api/metrics", metrics),
            web.get("/admin", page),
        ]
    )
