"""The dask JupyterLab extension's server side in a real lab on the real hub + gateway: it lists
the user's gateway clusters wherever they were started (never another user's), scales and
stops them, and opens their dashboards through the gateway's authenticating route."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sciplat.hub.gateway.hubconf import lab_environment
from sciplat.labextension.daskclusters import cluster_id
from support.net import free_port, wait_for_http

pytestmark = pytest.mark.integration

LAB_TOKEN = "sidebar-lab-token"


@pytest.fixture(scope="module")
def alice_lab(gateway_hub, tmp_path_factory) -> Iterator[httpx.Client]:
    """gwalice's lab server (JupyterLab, dask-labextension, sciplat's extension) with the
    environment the spawner gives labs and a hub token of gwalice."""
    home = tmp_path_factory.mktemp("alice-lab")
    port = free_port()
    env = {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "JUPYTERHUB_API_TOKEN": gateway_hub.token("gwalice"),
        **lab_environment(gateway_hub.settings),
    }
    log = open(home / "lab.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--allow-root", "--no-browser",
         f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={LAB_TOKEN}",
         f"--ServerApp.root_dir={home}"],
        env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/status?token={LAB_TOKEN}", timeout=180, process=proc)
        headers = {"Authorization": f"token {LAB_TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if os.environ.get("SCIPLAT_TEST_KEEP"):
            print((home / "lab.log").read_text()[-5000:])


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
