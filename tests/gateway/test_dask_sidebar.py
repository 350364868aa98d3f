"""The dask JupyterLab extension's server side in a real lab on the real hub + gateway: it lists
the user's gateway clusters wherever they were started (never another user's), scales and
stops them, and opens their dashboards through the gateway's authenticating route."""

from __future__ import annotations

import time

import httpx
import pytest

from sciplat.labextension.daskclusters import cluster_id

pytestmark = pytest.mark.integration


def _listed(lab: httpx.Client, want: set[str], timeout: float = 60) -> list[dict]:
    """The lab's cluster listing once its ids are exactly *want*."""
    deadline = time.monotonic() + timeout
    while True:
        response = lab.get("/dask/clusters")
        assert response.status_code == 200, response.text
        models = response.json()
        if {m["id"] for m in models} == want or time.monotonic() > deadline:
            assert {m["id"] for m in models} == want, models
            return models
        time.sleep(0.5)


def test_sidebar_lists_own_gateway_clusters_and_opens_dashboards(gateway_hub, alice_lab) -> None:
    lab = alice_lab
    with gateway_hub.gateway("gwalice") as alice, gateway_hub.gateway("gwbob") as bob:
        mine = alice.new_cluster(worker_memory=0.5)  # "from a notebook", not the sidebar
        theirs = bob.new_cluster(worker_memory=0.5)
        try:
            mid, tid = cluster_id(mine.name), cluster_id(theirs.name)
            [model] = _listed(lab, {mid})  # gwbob's cluster is never listed
            assert model["name"] == mine.name
            assert model["dashboard_link"].endswith(
                f"/services/dask-gateway/clusters/{mine.name}/status"
            )
            assert lab.get(f"/dask/clusters/{mid}").json()["name"] == mine.name
            assert lab.get(f"/dask/clusters/{tid}").status_code == 404

            # Scaling and adaptive scaling from the sidebar reach the gateway.
            scaled = lab.patch(f"/dask/clusters/{mid}", json={"workers": 1})
            assert scaled.status_code == 200, scaled.text
            client = mine.get_client()
            client.wait_for_workers(1, timeout=120)
            adapt = {"minimum": 2, "maximum": 2}
            adapted = lab.patch(f"/dask/clusters/{mid}", json={"adapt": adapt})
            assert adapted.status_code == 200, adapted.text
            assert adapted.json()["adapt"] == adapt
            client.wait_for_workers(2, timeout=120)

            # The dashboard panes, through the lab and the gateway's authenticating route.
            plots = lab.get(f"/dask/dashboard/{mid}/individual-plots.json")
            assert plots.status_code == 200, plots.text[:300]
            assert "Individual Task Stream" in plots.json()
            page = lab.get(f"/dask/dashboard/{mid}/status")
            assert page.status_code == 200 and "Dask" in page.text
            assert lab.get(f"/dask/dashboard/{tid}/status").status_code == 404
            with httpx.Client(base_url=str(lab.base_url), timeout=30) as anonymous:
                refused = anonymous.get(f"/dask/dashboard/{mid}/individual-plots.json")
                assert refused.status_code in (302, 401, 403)
                assert "Individual Task Stream" not in refused.text

            # Stopped elsewhere: gone from the sidebar. Shut down from the sidebar: stopped.
            client.close()
            mine.shutdown()
            _listed(lab, set())
            again = alice.new_cluster(worker_memory=0.5)
            aid = cluster_id(again.name)
            _listed(lab, {aid})
            assert lab.delete(f"/dask/clusters/{aid}").status_code == 204
            assert alice.get_cluster(again.name).status.name in ("STOPPING", "STOPPED")
            assert again.name not in [c.name for c in alice.list_clusters()]
        finally:
            mine.shutdown()
            theirs.shutdown()
