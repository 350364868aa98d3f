"""The gateway behind a real hub: clusters, scaling, computing, dashboards, isolation, quotas,
culling, failures and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dask_gateway import GatewayCluster
from distributed import Client

import sciplat.dask as sciplat

pytestmark = pytest.mark.integration

SCOPE = "access:services!service=dask-gateway"


def _collect_refused() -> None:
    """Finalise, on this thread, what a refused ``new_cluster()``/``connect()`` left behind.

    The failed ``GatewayCluster`` and its own ``Gateway`` stay in reference cycles. Should a
    garbage collection that happens to run on dask-gateway's event-loop thread finalise that
    ``Gateway``, its ``__del__`` waits on the very loop it runs on and the test hangs forever
    (seen: ``shutdown()`` stuck in test_per_user_quotas_across_clusters).
    """
    gc.collect()


def _workers(gateway_hub, name: str) -> int:
    """Workers the gateway counts for cluster *name* (what the quotas are checked against)."""
    return next(c["workers"] for c in gateway_hub.admin_snapshot()["clusters"] if c["name"] == name)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_user_creates_scales_computes_and_dashboard_needs_auth(gateway_hub) -> None:
    with gateway_hub.gateway("gwalice") as gateway:
        cluster = gateway.new_cluster(worker_memory=0.5)
        try:
            assert isinstance(cluster, GatewayCluster)
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=60)
            assert len(client.scheduler_info()["workers"]) == 2
            futures = client.map(lambda x: x * x, range(100))
            assert client.submit(sum, futures).result() == 328350
            # The scheduler was forked from the gateway's pre-imported fork server.
            parent = client.run_on_scheduler(
                lambda: Path(f"/proc/{os.getppid()}/cmdline").read_text().replace("\0", " ")
            )
            assert "sciplat.hub.gateway.forkserver" in parent, parent
            title = client.run_on_scheduler(lambda: Path("/proc/self/cmdline").read_text())
            assert title.startswith("dask scheduler [tls://"), title
            # Both workers did work, as gwalice's Unix account when run as root.
            who = client.run(os.getuid)
            assert len(who) == 2
            if os.geteuid() == 0:
                import pwd

                assert set(who.values()) == {pwd.getpwnam("gwalice").pw_uid}

            route = f"/clusters/{cluster.name}/status"
            assert cluster.dashboard_link.endswith(f"/services/dask-gateway{route}")
            with gateway_hub.http("gwalice") as http:
                page = http.get(route)
                assert page.status_code == 200, page.text[:300]
                assert "Dask" in page.text
                plots = http.get(f"/clusters/{cluster.name}/individual-plots.json")
                assert plots.status_code == 200 and "Individual Task Stream" in plots.json()
            with gateway_hub.http(None) as anonymous:
                assert anonymous.get(route).status_code == 401
                browser = anonymous.get(route, headers={"Accept": "text/html"})
                assert browser.status_code == 302
                assert "/hub/api/oauth2/authorize" in browser.headers["Location"]
                assert "client_id=service-dask-gateway" in browser.headers["Location"]
            with gateway_hub.http("gwbob") as other:
                assert other.get(route).status_code == 403
            with gateway_hub.http("gwadmin") as admin:
                assert admin.get(route).status_code == 200
            # The live plots: Bokeh's websocket through the authenticating proxy.
            session_token = re.search(r'"token":\s*"([^"]+)"', page.text).group(1)
            ws_url = f"{gateway_hub.address}/clusters/{cluster.name}/status/ws"
            assert asyncio.run(_bokeh_ws(ws_url, session_token, gateway_hub.token("gwalice")))
            assert asyncio.run(_bokeh_ws(ws_url, session_token, None)) == 401
        finally:
            cluster.shutdown()


async def _bokeh_ws(url: str, session_token: str, hub_token: str | None) -> object:
    """Open Bokeh's websocket; True if it sends its ACK, else the HTTP status."""
    import aiohttp

    headers = {"Authorization": f"token {hub_token}"} if hub_token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        try:
            ws = await session.ws_connect(url, protocols=["bokeh", session_token])
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        async with ws:
            frames = [await ws.receive(timeout=20) for _ in range(2)]
            return any(
                b"ACK" in (f.data if isinstance(f.data, bytes) else f.data.encode())
                for f in frames
                if f.data
            )


def test_other_users_cannot_see_connect_or_stop_but_admin_can(gateway_hub) -> None:
    with gateway_hub.gateway("gwalice") as alice, gateway_hub.gateway("gwbob") as bob:
        cluster = alice.new_cluster(worker_memory=0.5)
        try:
            name = cluster.name
            assert [c.name for c in alice.list_clusters()] == [name]
            assert name not in [c.name for c in bob.list_clusters()]
            with pytest.raises(Exception, match=r"403|lacks permissions"):
                bob.connect(name)
            _collect_refused()
            with pytest.raises(Exception, match=r"403|lacks permissions"):
                bob.stop_cluster(name)
            with gateway_hub.http("gwbob") as http:
                response = http.post(f"/api/v1/clusters/{name}/scale", json={"count": 1})
                assert response.status_code == 403
            assert alice.get_cluster(name).status.name == "RUNNING"

            snapshot = gateway_hub.admin_snapshot()
            row = next(c for c in snapshot["clusters"] if c["name"] == name)
            assert row["user"] == "gwalice" and row["status"] == "RUNNING"
            assert snapshot["capacity"]["cores"] == os.cpu_count()
            with gateway_hub.http("gwbob") as http:
                assert http.get("/api/v1/admin/clusters").status_code == 403
                assert http.get("/admin").status_code == 403
            with gateway_hub.http("gwadmin") as http:
                page = http.get("/admin")
                assert page.status_code == 200 and name in page.text and "gwalice" in page.text
            # The hub's own admin page has the batch-compute section (hub/gateway/templates).
            with httpx.Client(
                base_url=gateway_hub.hub.url, timeout=60, follow_redirects=True
            ) as browser:
                browser.get("/hub/login")
                login = {"username": "gwadmin", "password": gateway_hub.hub.password}
                browser.post("/hub/login", data={**login, "_xsrf": browser.cookies["_xsrf"]})
                hub_admin = browser.get("/hub/admin")
            assert hub_admin.status_code == 200, hub_admin.text[:300]
            assert str(hub_admin.url).endswith("/hub/admin")
            assert 'id="sciplat-batch-compute"' in hub_admin.text
            assert 'src="/services/dask-gateway/admin"' in hub_admin.text
            with gateway_hub.gateway("gwadmin") as admin:
                connected = admin.connect(name)
                assert connected.name == name
                with gateway_hub.http("gwadmin") as http:
                    metrics = http.get("/api/metrics")
                    assert metrics.status_code == 200
                    assert 'dask_gateway_clusters{user="gwalice"} 1.0' in metrics.text
                admin.stop_cluster(name)
            _wait(lambda: name not in [c.name for c in alice.list_clusters()], 30, "stop")
        finally:
            cluster.shutdown()


def test_users_without_the_scope_and_other_services_are_refused(gateway_hub) -> None:
    with gateway_hub.gateway("gwcarol") as carol, pytest.raises(Exception, match="403"):
        carol.list_clusters()
    # Through sciplat's client the refusal says why.
    carol = sciplat.get_gateway(
        gateway_hub.hub.url,
        token=gateway_hub.token("gwcarol"),
        proxy_address=gateway_hub.proxy_address,
    )
    with carol, pytest.raises(PermissionError, match=f"gwcarol may not use .*{SCOPE}"):
        carol.list_clusters()

    # A token of gwalice without the gateway scope, and a token of another hub service.
    narrow = gateway_hub.token("gwalice", ["read:users:name!user"])
    for token in (narrow, gateway_hub.hub.admin_token):
        response = httpx.get(
            f"{gateway_hub.address}/api/v1/clusters/", headers={"Authorization": f"token {token}"}
        )
        assert response.status_code == 403
        assert SCOPE in response.json()["error"]
    bogus = httpx.get(
        f"{gateway_hub.address}/api/v1/clusters/", headers={"Authorization": "token nonsense"}
    )
    assert bogus.status_code == 401


def test_bad_options_get_clear_errors_naming_the_limit(gateway_hub) -> None:
    def create(options: object) -> httpx.Response:
        with gateway_hub.http("gwalice") as http:
            return http.post("/api/v1/clusters/", json={"cluster_options": options})

    cases = {
        "worker_cores": ({"worker_cores": 64}, "dask_cores"),
        "memory": ({"worker_memory": 1000}, "dask_memory"),
        "type": ({"worker_cores": "lots"}, "must be a number"),
        "bool": ({"worker_cores": True}, "must be a number"),
        "image": ({"image": "nonexistent"}, "unknown image 'nonexistent'; available"),
        "field": ({"gpu": 4}, "Unknown fields"),
        "idle": ({"idle_timeout": 10**9}, "max_idle_timeout"),
        "not a dict": ([1, 2], "must be a dict"),
    }
    for label, (options, message) in cases.items():
        response = create(options)
        assert response.status_code == 422, (label, response.text)
        assert message in response.json()["error"], (label, response.json())
    # The client library refuses out-of-bounds values too.
    with gateway_hub.gateway("gwalice") as gateway, pytest.raises(ValueError):
        gateway.new_cluster(worker_cores=64)
    _collect_refused()
    # The gateway keeps serving.
    with gateway_hub.gateway("gwbob") as bob:
        assert bob.list_clusters() == []


def test_per_user_quotas_across_clusters(gateway_hub) -> None:
    with gateway_hub.gateway("gwalice") as gateway:
        first = gateway.new_cluster(worker_memory=0.5)
        try:
            # Absurd counts are capped at the cluster's limit (quota dask_cores 4 = 1 + 3).
            with pytest.warns(Warning, match="exceed resource limit of 3 workers"):
                first.scale(10**9)
            with gateway_hub.http("gwalice") as http:
                negative = http.post(f"/api/v1/clusters/{first.name}/scale", json={"count": -1})
                assert negative.status_code == 422
            # 4 cores are now held: a second cluster's scheduler would exceed dask_cores.
            with pytest.raises(ValueError, match="your quota dask_cores is 4 cores"):
                gateway.new_cluster(worker_memory=0.5)
            _collect_refused()
            first.scale(1)
            # Workers start fast (the gateway forks them): wait until the gateway counts the
            # retired ones as gone before asking for the room they held.
            _wait(lambda: _workers(gateway_hub, first.name) <= 1, 60, "the scale-down")
            second = gateway.new_cluster(worker_memory=0.5)
            try:
                # Scaling the second past what is left of the user's cores fails by name.
                with pytest.raises(Exception, match="dask_cores"):
                    second.scale(2)
                # And gateway.max_clusters_per_user (2) is enforced.
                with gateway_hub.http("gwalice") as http:
                    third = http.post("/api/v1/clusters/", json={"cluster_options": {}})
                assert third.status_code == 422
                assert "max_clusters_per_user" in third.json()["error"]
            finally:
                second.shutdown()
        finally:
            first.shutdown()


def test_idle_cluster_is_culled(gateway_hub) -> None:
    with gateway_hub.gateway("gwbob") as gateway:
        cluster = gateway.new_cluster(worker_memory=0.5, idle_timeout=2)
        name = cluster.name
        try:
            _wait(lambda: gateway.get_cluster(name).status.name == "STOPPED", 60, "idle culling")
            assert name not in [c.name for c in gateway.list_clusters()]
        finally:
            cluster.shutdown()


@contextlib.contextmanager
def _cluster_with_workers(gateway, workers: int) -> Iterator[tuple[GatewayCluster, Client]]:
    """A new cluster scaled to *workers* workers and a client of it; shut down after."""
    cluster = gateway.new_cluster(worker_memory=0.5)
    try:
        cluster.scale(workers)
        client = cluster.get_client()
        client.wait_for_workers(workers, timeout=60)
        yield cluster, client
    finally:
        cluster.shutdown()


def test_killed_worker_is_replaced_and_work_finishes(gateway_hub) -> None:
    with gateway_hub.gateway("gwbob") as gateway, _cluster_with_workers(gateway, 2) as (_, client):

        def slow_square(x: int) -> int:
            time.sleep(0.2)
            return x * x

        futures = client.map(slow_square, range(40))
        pids = client.run(os.getpid)
        victim_address, victim = next(iter(pids.items()))
        os.kill(victim, signal.SIGKILL)
        assert sum(client.gather(futures)) == sum(x * x for x in range(40))
        _wait(
            lambda: (
                len(workers := client.scheduler_info()["workers"]) == 2
                and victim_address not in workers
            ),
            60,
            "a replacement worker",
        )


def test_gateway_restart_keeps_running_clusters(gateway_hub) -> None:
    with (
        gateway_hub.gateway("gwalice") as gateway,
        _cluster_with_workers(gateway, 1) as (cluster, _),
    ):
        old_pid = gateway_hub.gateway_pid()
        os.kill(old_pid, signal.SIGTERM)
        _wait(lambda: not _alive(old_pid), 30, "the gateway to stop")
        # The hub notices its managed service died and starts it again.
        _wait(lambda: _health(gateway_hub), 120, "the hub to restart the gateway")
        assert gateway_hub.gateway_pid() != old_pid
        assert gateway.get_cluster(cluster.name).status.name == "RUNNING"
        again = gateway.connect(cluster.name)
        with again.get_client() as client2:
            assert client2.submit(lambda: 6 * 7).result(timeout=60) == 42
            assert len(client2.scheduler_info()["workers"]) == 1


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for the hub to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _health(gateway_hub) -> bool:
    try:
        return httpx.get(f"{gateway_hub.address}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
