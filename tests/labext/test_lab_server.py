"""The lab server extension in a real spawned lab of a real platform (REST, as the lab's
frontend calls it): status, start-up checks, tutorials, query history -> notebook that runs,
portal send, run with parameters, the dask extension's gateway clusters; and a lab whose
services are unreachable."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from labhelpers import USER, notebook_json, put_file

pytestmark = pytest.mark.integration


def test_status_shows_image_size_and_memory(lab_platform):
    with lab_platform.lab_api() as lab:
        answer = lab.get("sciplat-lab/status").json()
    assert answer["image"] == {"name": "recommended", "tag": "recommended",
                               "display": "Recommended (sciplat's own environment)"}  # fmt: skip
    assert answer["size"] == {"name": "small", "cpu": 1.0, "memory_limit_bytes": 4 * 2**30}
    memory = answer["memory"]
    assert memory["limit_bytes"] == 4 * 2**30
    assert 20 * 2**20 < memory["used_bytes"] < memory["limit_bytes"]
    if os.geteuid() == 0:  # the local backend puts the lab into its own cgroup
        assert memory["source"] == "cgroup"


def test_usage_is_the_workspace_services_measurement(lab_platform):
    """Home and group disk use against the quota, as the workspace service measures and
    enforces it (its WebDAV quota properties), with the lab's own token."""
    from sciplat.services.workspace.quota import measure

    token = lab_platform.harness.token_for(USER)
    dav = f"{lab_platform.url}/services/api/webdav/home/{USER}/usage-probe.bin"
    r = httpx.put(dav, content=b"u" * 300_000, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (201, 204), r.text
    with lab_platform.lab_api() as lab:
        answer = lab.get("sciplat-lab/usage").json()
    home = answer["home"]
    assert home["path"] == f"home/{USER}"
    assert home["quota_bytes"] == lab_platform.settings.groups["users"].quotas.disk
    assert home["used_bytes"] >= 300_000
    assert abs(home["used_bytes"] - measure(lab_platform.home)) < 2**20
    assert [(g["name"], g["path"]) for g in answer["groups"]] == [("users", "groups/users")]
    assert answer["groups"][0]["quota_bytes"] == lab_platform.settings.groups["users"].quotas.disk


def test_no_startup_problems_in_a_healthy_lab(lab_platform):
    with lab_platform.lab_api() as lab:
        assert lab.get("sciplat-lab/startup-problems").json() == {"problems": []}


def test_tutorials_copy_into_the_users_home_without_overwriting(lab_platform):
    with lab_platform.lab_api() as lab:
        sections = lab.get("sciplat-lab/tutorials").json()["sections"]
        paths = [n["path"] for s in sections for n in s["notebooks"]]
        assert "02-tap-adql.ipynb" in paths
        r = lab.post("sciplat-lab/tutorials/copy", json={"path": "02-tap-adql.ipynb"})
        assert r.status_code == 200, r.text
        copied = r.json()["copied_to"]
        assert copied == "notebooks/tutorials/02-tap-adql.ipynb"
        copy = lab_platform.home / copied
        if os.geteuid() == 0:
            assert copy.stat().st_uid == lab_platform.home.stat().st_uid  # the user's own file
        lab.put(f"api/contents/{copied}", json={"type": "file", "format": "text",
                                                "content": "my edits"})  # fmt: skip
        r = lab.post("sciplat-lab/tutorials/copy", json={"path": "02-tap-adql.ipynb"})
        assert r.status_code == 409 and r.json()["error"] == "exists"
        assert r.json()["copied_to"] == copied and copy.read_text() == "my edits"
        r = lab.post("sciplat-lab/tutorials/copy",
                     json={"path": "02-tap-adql.ipynb", "overwrite": True})  # fmt: skip
        assert r.status_code == 200 and "my edits" not in copy.read_text()
        r = lab.post("sciplat-lab/tutorials/copy", json={"path": "../../etc/passwd.ipynb"})
        assert r.status_code == 400 and r.json()["error"] == "bad-request"
    # the read-only tutorials appear in the home too
    assert (lab_platform.home / "tutorials").is_symlink()


def _async_query(lab_platform, query: str) -> str:
    tap = f"{lab_platform.url}/services/api/tap"
    token = lab_platform.harness.token_for(USER)
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        r = http.post(f"{tap}/async", data={"LANG": "ADQL", "QUERY": query, "PHASE": "RUN"})
        assert r.status_code in (200, 303), r.text
        job_url = r.headers.get("location") or str(r.url)
        job_id = job_url.rstrip("/").rsplit("/", 1)[-1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            phase = http.get(f"{tap}/async/{job_id}/phase").text.strip()
            if phase in ("COMPLETED", "ERROR"):
                return job_id
            time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def test_query_history_and_query_notebook(lab_platform):
    with lab_platform.lab_api() as lab:
        assert lab.get("sciplat-lab/queries").json() == {"queries": []}  # empty history
        job_id = _async_query(lab_platform, "SELECT TOP 7 objectId, coord_ra FROM dp1.Object")
        items = lab.get("sciplat-lab/queries").json()["queries"]
        assert [i["job_id"] for i in items] == [job_id]
        assert items[0]["phase"] == "COMPLETED" and items[0]["rows"] == 7
        assert items[0]["portal_url"].endswith(f"/services/portal/?job={job_id}")  # that job
        r = lab.post("sciplat-lab/queries/notebook", json={"job_id": job_id})
        assert r.status_code == 200, r.text
        path = r.json()["path"]
        assert path == f"queries/{job_id}.ipynb"
        again = lab.post("sciplat-lab/queries/notebook", json={"job_id": job_id}).json()["path"]
        assert again == f"queries/{job_id}-1.ipynb"  # never overwrites
        assert lab.post("sciplat-lab/queries/notebook", json={"job_id": "nope"}).status_code == 404
        bad = lab.post("sciplat-lab/queries/notebook", json={"job_id": "a'b"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad-request"
        notebook = lab.get(f"api/contents/{path}").json()["content"]
    code = "\n".join(c["source"] for c in notebook["cells"] if c["cell_type"] == "code")
    assert code.endswith("\ntable")  # the last line shows the table; print its length instead
    out = lab_platform.harness.run_code(USER, code.removesuffix("table") + "print(len(table))")
    assert out.strip() == "7"


def test_a_portal_query_opens_as_notebook(lab_platform):
    """A query run in the portal is the user's async TAP job: listed, openable as notebook."""
    token = lab_platform.harness.token_for(USER)
    with httpx.Client(base_url=f"{lab_platform.url}/services/portal", timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as portal:  # fmt: skip
        job = portal.post("/api/query", json={"query": "SELECT TOP 3 objectId FROM dp1.Object"})
        assert job.status_code == 200, job.text
        job_id = job.json()["job_id"]
    with lab_platform.lab_api() as lab:
        items = {i["job_id"]: i for i in lab.get("sciplat-lab/queries").json()["queries"]}
        assert job_id in items and "TOP 3" in items[job_id]["query"]
        r = lab.post("sciplat-lab/queries/notebook", json={"job_id": job_id})
        assert r.status_code == 200 and r.json()["path"] == f"queries/{job_id}.ipynb", r.text


SIDECAR = """\
title: Square
description: n squared
parameters:
  n: {type: integer, default: 3, minimum: 0, maximum: 100}
  word: {type: string, enum: [hello, bye], default: hello}
"""


def test_run_with_parameters(lab_platform):
    put_file(
        lab_platform,
        "runs/square.ipynb",
        notebook_json("n = 1\nword = 'x'", "print('result', n * n, word)"),
        "notebook",
    )
    put_file(lab_platform, "runs/square.yaml", SIDECAR)
    put_file(lab_platform, "runs/broken.ipynb", notebook_json("n = 1"), "notebook")
    put_file(lab_platform, "runs/broken.yaml", "title: B\nparameters:\n  n: {type: integer}\n")
    with lab_platform.lab_api() as lab:
        schema = lab.get("sciplat-lab/run/schema", params={"path": "runs/square.ipynb"}).json()
        assert schema["has_template"] and schema["title"] == "Square"
        assert schema["schema"]["properties"]["word"]["enum"] == ["hello", "bye"]
        bad = lab.get("sciplat-lab/run/schema", params={"path": "runs/broken.ipynb"})
        assert bad.status_code == 422 and bad.json()["error"] == "bad-sidecar"
        assert "no default" in bad.json()["message"]
        r = lab.post("sciplat-lab/run", json={"path": "runs/square.ipynb",
                                              "parameters": {"n": 500}})  # fmt: skip
        assert r.status_code == 422 and r.json()["field"] == "n", r.text
        assert "maximum" in r.json()["message"]
        r = lab.post("sciplat-lab/run", json={"path": "runs/square.ipynb",
                                              "parameters": {"n": 12, "word": "bye"}})  # fmt: skip
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["html_url"].endswith(f"/user/{USER}/sciplat-lab/run/{job['job_id']}/html")
        deadline = time.monotonic() + 180
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(1)
            job = lab.get(f"sciplat-lab/run/{job['job_id']}").json()
        assert job["status"] == "succeeded", job["error"]
        html = lab.get(f"sciplat-lab/run/{job['job_id']}/html")
        assert html.status_code == 200 and "result 144 bye" in html.text
        assert html.headers["content-security-policy"].startswith("sandbox")
        assert html.headers["content-type"].startswith("text/html")
        assert lab.get("sciplat-lab/run/zzz-unknown").status_code == 404


def test_portal_send(lab_platform):
    put_file(lab_platform, "tables/stars.csv", "ra,dec,mag\n10.0,-5.0,17.2\n10.1,-5.1,18.9\n")
    put_file(lab_platform, "tables/notes.txt", "not a table")
    with lab_platform.lab_api() as lab:
        assert lab.get("sciplat-lab/portal").json()["url"].endswith("/services/portal/")
        r = lab.post("sciplat-lab/portal/send", json={"path": "tables/stars.csv"})
        assert r.status_code == 200, r.text
        assert r.json()["portal_url"].endswith("/services/portal/")
        r = lab.post("sciplat-lab/portal/send", json={"path": "tables/notes.txt"})
        assert r.status_code == 415 and r.json()["error"] == "unsupported-type"
        assert ".csv" in r.json()["message"]
        r = lab.post("sciplat-lab/portal/send", json={"path": "tables/none.csv"})
        assert r.status_code == 404
        r = lab.post("sciplat-lab/portal/send", json={"path": "/etc/hosts"})
        assert r.status_code == 400
    token = lab_platform.harness.token_for(USER)
    portal = f"{lab_platform.url}/services/portal"
    results = httpx.get(f"{portal}/api/results", headers={"Authorization": f"Bearer {token}"},
                        timeout=30).json()  # fmt: skip
    assert any(r.get("title") == "stars.csv" and r.get("rows") == 2 for r in results), results


def test_dask_labextension_lists_a_gateway_cluster(lab_platform):
    with lab_platform.lab_api() as lab:
        r = lab.put("dask/clusters/", json={})
        assert r.status_code == 200, r.text
        cluster = r.json()
        try:
            listed = lab.get("dask/clusters/").json()
            assert [c["id"] for c in listed] == [cluster["id"]]
            link = cluster["dashboard_link"]
            assert link.startswith(f"{lab_platform.url}/services/dask-gateway/clusters/"), link
            # the user's own gateway sees the same cluster
            auth = {"Authorization": f"token {lab_platform.harness.token_for(USER)}"}
            gw = httpx.get(f"{lab_platform.url}/services/dask-gateway/api/v1/clusters/",
                           headers=auth, timeout=30).json()  # fmt: skip
            # the sidebar names it by its gateway name (helper module daskclusters)
            assert cluster["name"] in gw, (cluster["name"], gw)
            assert link.rstrip("/").endswith(f"/clusters/{cluster['name']}/status"), link
        finally:
            assert lab.delete(f"dask/clusters/{cluster['id']}").status_code == 204
        assert lab.get("dask/clusters/").json() == []


# -- a lab whose services are unreachable ---------------------------------------------------


def _offline(offline_lab) -> httpx.Client:
    return httpx.Client(base_url=offline_lab["url"], timeout=60,
                        headers={"Authorization": f"token {offline_lab['token']}"})  # fmt: skip


def test_unreachable_services_are_named_and_the_lab_keeps_working(offline_lab):
    (offline_lab["home"] / "sq.ipynb").write_text(json.dumps(notebook_json("n = 1", "print(n)")))
    (offline_lab["home"] / "sq.yaml").write_text(SIDECAR)
    (offline_lab["home"] / "t.csv").write_text("a\n1\n")
    with _offline(offline_lab) as lab:
        problems = lab.get("/sciplat-lab/startup-problems").json()["problems"]
        assert [p["code"] for p in problems] == ["disk-full"]  # its threshold is set very high
        r = lab.get("/sciplat-lab/queries")
        assert r.status_code == 503 and r.json()["error"] == "tap-unreachable"
        assert "keeps working" in r.json()["message"]
        r = lab.post("/sciplat-lab/run", json={"path": "sq.ipynb", "parameters": {}})
        assert r.status_code == 503 and r.json()["error"] == "notebooks-unreachable"
        r = lab.post("/sciplat-lab/portal/send", json={"path": "t.csv"})
        assert r.status_code == 503 and r.json()["error"] == "portal-unavailable", r.text
        r = lab.post("/sciplat-lab/exit", json={"logout": False})
        assert r.status_code == 400 and r.json()["error"] == "not-in-hub"
        r = lab.get("/sciplat-lab/usage")
        assert r.status_code == 503 and r.json()["error"] == "webdav-unreachable"
        # the rest of the lab works: contents, kernels, our own local routes
        schema = lab.get("/sciplat-lab/run/schema", params={"path": "sq.ipynb"}).json()
        assert schema["has_template"]
        assert lab.get("/api/contents/t.csv").status_code == 200
        assert lab.get("/sciplat-lab/status").json()["size"]["name"] == "small"
