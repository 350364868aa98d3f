"""``sciplat bench dask``: cluster start, worker start and task throughput through the hub.

Timed as a user sees them: ``new_cluster()`` until it returns a running cluster whose
scheduler answers, ``scale(k)`` until the k-th worker has joined the scheduler, and a
map-reduce of small tasks (``client.map`` + a final ``sum``) as tasks per second.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from sciplat.config import Settings

__all__ = ["BENCH_USER", "bench_gateway", "run_dask_bench"]

BENCH_USER = "sciplat-bench-dask"
GOALS = {"cluster_ready_s": 3.0, "worker_s": 2.0}


def _inc(x: int) -> int:
    return x + 1


def bench_gateway(
    gateway: Any,
    *,
    clusters: int = 3,
    workers: int = 2,
    tasks: int = 2000,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the measurements with a ``dask_gateway.Gateway``; clusters are shut down after."""
    ready: list[float] = []
    worker_times: list[float] = []
    cluster = None
    try:
        for i in range(clusters):
            start = time.perf_counter()
            cluster = gateway.new_cluster(worker_memory=0.5)
            ready.append(time.perf_counter() - start)
            say(f"cluster {i + 1}/{clusters} ready in {ready[-1]:.2f} s")
            if i < clusters - 1:
                cluster.shutdown()
                cluster = None
        client = cluster.get_client()
        for k in range(1, workers + 1):
            start = time.perf_counter()
            cluster.scale(k)
            client.wait_for_workers(k, timeout=120)
            worker_times.append(time.perf_counter() - start)
            say(f"worker {k}/{workers} joined in {worker_times[-1]:.2f} s")
        client.submit(_inc, 0).result()  # warm up the workers
        start = time.perf_counter()
        futures = client.map(_inc, range(tasks))
        total = client.submit(sum, futures).result()
        elapsed = time.perf_counter() - start
        if total != tasks * (tasks + 1) // 2:
            raise RuntimeError(f"map-reduce gave {total}, expected {tasks * (tasks + 1) // 2}")
        say(f"{tasks} tasks + reduce in {elapsed:.2f} s")
        client.close()
    finally:
        if cluster is not None:
            cluster.shutdown()
    return {
        "cluster_ready_s": _stats(ready),
        "worker_s": _stats(worker_times),
        "map_reduce": {
            "tasks": tasks + 1,
            "workers": workers,
            "seconds": round(elapsed, 3),
            "tasks_per_s": round((tasks + 1) / elapsed, 1),
        },
    }


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "each": [round(v, 3) for v in values],
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def _bench_token(platform: Any, user: str) -> str:
    """Create *user* in group ``users`` (gateway access) and mint a token for them."""
    with platform.api() as api:
        r = api.post("/users", json={"usernames": [user]})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"could not create {user}: HTTP {r.status_code} {r.text[:200]}")
        r = api.post("/groups/users/users", json={"users": [user]})
        if r.status_code >= 400:
            raise RuntimeError(f"could not add {user} to users: HTTP {r.status_code}")
        r = api.post(f"/users/{user}/tokens", json={"note": "sciplat bench dask"})
        r.raise_for_status()
        return r.json()["token"]


def _wait_gateway(address: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{address}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the gateway at {address} did not answer in {timeout:.0f} s")


def run_dask_bench(
    settings: Settings,
    *,
    ephemeral: bool = True,
    clusters: int = 3,
    workers: int = 2,
    tasks: int = 2000,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The whole bench, on a throw-away platform (*ephemeral*) or the running one."""
    from dask_gateway import Gateway, JupyterHubAuth

    from sciplat.hub.bench import bench_platform

    with bench_platform(
        settings, ephemeral=ephemeral, name="dask", accounts=[BENCH_USER], say=say
    ) as platform:
        address = f"{platform.local_url}/services/dask-gateway"
        _wait_gateway(address)
        token = _bench_token(platform, BENCH_USER)
        gateway = Gateway(
            address=address,
            proxy_address=f"gateway://127.0.0.1:{platform.settings.ports.gateway_tcp}",
            auth=JupyterHubAuth(api_token=token),
        )
        load_before = os.getloadavg()[0]
        with gateway:
            result = bench_gateway(
                gateway, clusters=clusters, workers=workers, tasks=tasks, say=say
            )
    return {
        "benchmark": "dask",
        "cpus": os.cpu_count(),
        "backend": settings.gateway.backend,
        # The machine's 1-minute load average when the timing began and ended (noisy if high).
        "load_average_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        **result,
        "goal": GOALS,
        "meets_goal": {
            "cluster_ready": result["cluster_ready_s"]["median"] < GOALS["cluster_ready_s"],
            "worker": result["worker_s"]["median"] < GOALS["worker_s"],
        },
    }
