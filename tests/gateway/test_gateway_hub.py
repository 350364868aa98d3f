"""The gateway behind a real hub: clusters, scaling, computing, isolation between users."""

from __future__ import annotations

import pytest
from dask_gateway import GatewayCluster

pytestmark = pytest.mark.integration


def test_user_creates_scales_and_computes(gateway_hub) -> None:
    with gateway_hub.gateway("gwalice") as gateway:
        cluster = gateway.new_cluster(worker_memory=0.5)
        try:
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=60)
            total = client.submit(sum, range(1000)).result()
            assert total == 499500
            futures = client.map(lambda x: x * x, range(100))
            assert client.submit(sum, futures).result() == sum(x * x for x in range(100))
            assert len(client.scheduler_info()["workers"]) == 2
        finally:
            cluster.shutdown()
    assert isinstance(cluster, GatewayCluster)
