"""The notebooks API against the real hub: real tokens, scopes, runs, cache, limits, history."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import code, notebook

pytestmark = pytest.mark.integration

BASE = "/services/api/notebooks"


async def _wait(client, headers, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await client.get(f"{BASE}/jobs/{job_id}", headers=headers)).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def _start(client, headers, template, parameters):
    """Submit a run of *template*; asserts it was accepted (202) and returns the response."""
    response = await client.post(f"{BASE}/templates/{template}/runs",
                                 json={"parameters": parameters}, headers=headers)  # fmt: skip
    assert response.status_code == 202, response.text
    return response


async def test_scope_is_required(nb_client, auth):
    assert (await nb_client.get(f"{BASE}/templates")).status_code == 401
    denied = await nb_client.get(f"{BASE}/templates", headers=auth("carol"))
    assert denied.status_code == 403
    assert "custom:notebooks:exec" in denied.json()["message"]
    refused = await nb_client.post(f"{BASE}/templates/lab/square/runs", json={},
                                   headers=auth("carol"))  # fmt: skip
    assert refused.status_code == 403


async def test_catalogue_lists_broken_templates_without_failing(nb_client, auth):
    response = await nb_client.get(f"{BASE}/templates", headers=auth("alice"))
    assert response.status_code == 200
    templates = {t["name"]: t for t in response.json()["templates"]}
    assert templates["lab/square"]["status"] == "ok"
    assert templates["lab/badyaml"]["status"] == "broken"
    assert "not valid YAML" in templates["lab/badyaml"]["error"]
    assert "commissioning/visit-image-quality" in templates
    broken = await nb_client.post(f"{BASE}/templates/lab/badyaml/runs", json={},
                                  headers=auth("alice"))  # fmt: skip
    assert broken.status_code == 409
    assert "is broken" in broken.json()["message"]
    missing = await nb_client.get(f"{BASE}/templates/lab/nope", headers=auth("alice"))
    assert missing.status_code == 404


async def test_bad_parameters_are_refused_before_running(nb_client, auth, nb_service):
    h = auth("alice")
    for params, field in (({"n": -5}, "'n'"), ({"label": "zzz"}, "'label'"),
                          ({"visit": 3}, "'visit'"), ({"n": "many"}, "'n'")):  # fmt: skip
        response = await nb_client.post(f"{BASE}/templates/lab/square/runs",
                                        json={"parameters": params}, headers=h)  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "UsageError"
        assert f"Parameter {field}" in response.json()["message"]
    bad_image = await nb_client.post(f"{BASE}/templates/lab/square/runs",
                                     json={"image": "nope"}, headers=h)  # fmt: skip
    assert bad_image.status_code == 400
    assert "unknown image 'nope'" in bad_image.json()["message"]
    assert nb_service.store.history("alice") == []


async def test_run_poll_render_cache_and_history(nb_client, auth):
    h = auth("alice")
    response = await _start(nb_client, h, "lab/square", {"n": 7, "label": "b"})
    job = response.json()
    assert response.headers["location"] == job["url"]
    assert job["status"] in ("queued", "running")
    done = await _wait(nb_client, h, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["parameters"] == {"n": 7, "label": "b", "loud": False}
    assert done["progress"] == {"done": 2, "total": 2}
    assert [t["index"] for t in done["cell_timings"]] == [0, 1]
    html = await nb_client.get(f"{BASE}/jobs/{job['id']}/html", headers=h)
    assert html.status_code == 200
    assert "square 49 b False alice" in html.text
    assert "sandbox" in html.headers["content-security-policy"]
    assert html.headers["content-encoding"] == "gzip"  # stored compressed, served as stored
    plain = await nb_client.get(f"{BASE}/jobs/{job['id']}/html",
                                headers={**h, "Accept-Encoding": "identity"})  # fmt: skip
    assert "content-encoding" not in plain.headers and plain.text == html.text
    assert "sandbox" in plain.headers["content-security-policy"]
    ipynb = (await nb_client.get(f"{BASE}/jobs/{job['id']}/ipynb", headers=h)).json()
    assert ipynb["cells"][0]["source"].startswith("# Parameters\nn = 7")

    started = time.monotonic()
    again = await nb_client.post(
        f"{BASE}/templates/lab/square/runs",
        json={"parameters": {"label": "b", "n": "7"}},
        headers=h,
    )
    assert again.status_code == 200
    assert again.json()["cached"] is True
    assert again.json()["id"] == job["id"]
    assert time.monotonic() - started < 2
    fresh = await nb_client.post(f"{BASE}/templates/lab/square/runs",
                                 json={"parameters": {"n": 7, "label": "b"}, "fresh": True},
                                 headers=h)  # fmt: skip
    assert fresh.status_code == 202
    assert fresh.json()["id"] != job["id"]
    await _wait(nb_client, h, fresh.json()["id"])

    # Bob has the same rights but his own cache and history.
    bobs = await nb_client.post(
        f"{BASE}/templates/lab/square/runs",
        json={"parameters": {"n": 7, "label": "b"}},
        headers=auth("bob"),
    )
    assert bobs.status_code == 202
    await _wait(nb_client, auth("bob"), bobs.json()["id"])

    history = (await nb_client.get(f"{BASE}/jobs?template=lab/square", headers=h)).json()["jobs"]
    assert {j["id"] for j in history} == {job["id"], fresh.json()["id"]}
    assert all(j["owner"] == "alice" for j in history)


async def test_failing_cell_and_timeout_are_reported(nb_client, auth):
    h = auth("alice")
    raises = (await nb_client.post(f"{BASE}/templates/lab/raises/runs",
                                   json={"parameters": {"x": 41}}, headers=h)).json()  # fmt: skip
    forever = (await nb_client.post(f"{BASE}/templates/lab/forever/runs",
                                    json={}, headers=h)).json()  # fmt: skip
    failed = await _wait(nb_client, h, raises["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["index"] == 2
    assert failed["error"]["ename"] == "ValueError"
    assert failed["error"]["evalue"] == "bad visit 41"
    assert "raise ValueError" in failed["error"]["traceback"]
    html = await nb_client.get(f"{BASE}/jobs/{raises['id']}/html", headers=h)
    assert "bad visit 41" in html.text
    timed_out = await _wait(nb_client, h, forever["id"])
    assert timed_out["status"] == "timeout"
    assert "timeout of 4 s" in timed_out["error"]["evalue"]
    assert timed_out["timeout"] == 4


async def test_per_user_limit_sharing_and_cancel(nb_client, auth, nb_service):
    h = auth("alice")
    assert nb_service.concurrency_limit(nb_service_user("alice")) == 2
    first = await nb_client.post(
        f"{BASE}/templates/lab/forever/runs",
        json={"parameters": {"s": 301}, "timeout": 60},
        headers=h,
    )
    second = await nb_client.post(
        f"{BASE}/templates/lab/forever/runs",
        json={"parameters": {"s": 302}, "timeout": 60},
        headers=h,
    )
    assert first.status_code == second.status_code == 202
    third = await nb_client.post(f"{BASE}/templates/lab/forever/runs",
                                 json={"parameters": {"s": 303}}, headers=h)  # fmt: skip
    assert third.status_code == 429
    assert "your limit is 2" in third.json()["message"]
    job_id = first.json()["id"]

    # Bob cannot see it until alice shares it, and never cancel it.
    assert (await nb_client.get(f"{BASE}/jobs/{job_id}", headers=auth("bob"))).status_code == 404
    shared = await nb_client.put(f"{BASE}/jobs/{job_id}/share", json={"shared": True}, headers=h)
    assert shared.json()["shared"] is True
    seen = await nb_client.get(f"{BASE}/jobs/{job_id}", headers=auth("bob"))
    assert seen.status_code == 200 and seen.json()["owner"] == "alice"
    assert (await nb_client.delete(f"{BASE}/jobs/{job_id}", headers=auth("bob"))).status_code == 403

    for job in (first.json(), second.json()):
        cancelled = await nb_client.delete(f"{BASE}/jobs/{job['id']}", headers=h)
        assert cancelled.json()["status"] == "cancelled"
    assert nb_service.store.count_active("alice") == 0


def nb_service_user(name):
    from sciplat.services.common.auth import AuthenticatedUser

    return AuthenticatedUser(name=name, scopes=frozenset(), groups=("users",))


async def test_noteburst_style_submission(nb_client, auth, nb_settings):
    from sciplat.services.portal.channels import ChannelSigner, channel_secret

    h = auth("bob")
    nb = notebook(
        code("import sys\nprint('hello from', sys.version_info[0])"),
        code("import os\nprint(os.environ['FIREFLY_CHANNEL'], os.environ['FIREFLY_URL'])"),
    )
    response = await nb_client.post(f"{BASE}/jobs", json={"ipynb": nb, "title": "probe"},
                                    headers=h)  # fmt: skip
    assert response.status_code == 202
    done = await _wait(nb_client, h, response.json()["id"])
    assert done["status"] == "succeeded"
    assert done["kind"] == "notebook"
    out = await nb_client.get(done["ipynb_url"].replace("http://testserver", ""), headers=h)
    assert out.json()["cells"][0]["outputs"][0]["text"] == "hello from 3\n"
    # The run has bob's portal channel, as his lab has (tutorial 04's round trips need it).
    channel, portal = out.json()["cells"][1]["outputs"][0]["text"].split()
    assert ChannelSigner(channel_secret(nb_settings)).user_of(channel) == "bob"
    assert portal == f"{nb_settings.public_url}/services/portal"
    bad = await nb_client.post(f"{BASE}/jobs", json={"ipynb": {"cells": "x"}}, headers=h)
    assert bad.status_code == 400
    assert "not a valid notebook" in bad.json()["message"]
    # Alice cannot read bob's run.
    other = await nb_client.get(f"{BASE}/jobs/{done['id']}/html", headers=auth("alice"))
    assert other.status_code == 404


def test_plugin_is_mounted_in_the_hub_managed_service(test_hub):
    token = test_hub.token_for("alice")
    response = httpx.get(f"{test_hub.api_service_url}/notebooks/templates",
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    names = {t["name"] for t in response.json()["templates"]}
    assert "commissioning/night-summary" in names
    page = httpx.get(f"{test_hub.api_service_url}/notebooks/ui", timeout=30)
    assert page.status_code == 200
    assert "Notebook runs" in page.text


async def test_shipped_platform_check_runs_with_the_users_token(nb_client, auth):
    h = auth("bob")
    response = await _start(
        nb_client, h, "templates/platform-check", {"points": 20, "title": "bob's check"}
    )
    done = await _wait(nb_client, h, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    html = (await nb_client.get(f"{BASE}/jobs/{done['id']}/html", headers=h)).text
    assert "hub user bob" in html  # the hub answered for bob's token inside the kernel
    assert "groups [&#39;users&#39;]" in html or "groups ['users']" in html
    assert "data:image/png;base64" in html  # the plot
