"""The TAP service behind the real hub and proxy, judged by outside clients: pyvo, STILTS
(taplint, tapquery), plain HTTP for the bad-input cases."""

from __future__ import annotations

import io
import json
import subprocess
import time

import numpy as np
import pytest
import pyvo
import requests
from astropy.io.votable import parse_single_table
from astropy.table import Table

pytestmark = pytest.mark.integration


def votable_error(response: requests.Response) -> str:
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    table = response.text
    assert 'name="QUERY_STATUS" value="ERROR"' in table
    return table


def test_vosi_anonymous(tap_url) -> None:
    caps = requests.get(f"{tap_url}/capabilities", timeout=30)
    assert caps.status_code == 200 and "ivo://ivoa.net/std/TAP" in caps.text
    avail = requests.get(f"{tap_url}/availability", timeout=30)
    assert avail.status_code == 200 and "<vosi:available>true</vosi:available>" in avail.text


def test_auth_required(tap_url, test_hub) -> None:
    anonymous = requests.get(f"{tap_url}/sync", params={"QUERY": "SELECT 1"}, timeout=30)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["www-authenticate"]
    votable_error(anonymous)
    carol = requests.get(
        f"{tap_url}/tables",
        headers={"Authorization": f"Bearer {test_hub.token_for('carol')}"},
        timeout=30,
    )
    assert carol.status_code == 403
    short = test_hub.token_for("alice", expires_in=1)
    time.sleep(2.5)
    expired = requests.get(
        f"{tap_url}/sync",
        params={"QUERY": "SELECT TOP 1 objectId FROM dp1.Object"},
        headers={"Authorization": f"Bearer {short}"},
        timeout=30,
    )
    assert expired.status_code == 401
    basic = requests.get(
        f"{tap_url}/sync",
        params={"QUERY": "SELECT TOP 1 objectId FROM dp1.Object"},
        auth=("x", test_hub.token_for("alice")),
        timeout=30,
    )
    assert basic.status_code == 200


def test_pyvo_sync_async_upload(tap_url, alice) -> None:
    service = pyvo.dal.TAPService(tap_url, session=alice)
    assert "dp1.Object" in [t.name for t in service.tables]
    result = service.run_sync("SELECT TOP 5 objectId, coord_ra FROM dp1.Object ORDER BY objectId")
    assert list(result["objectId"]) == [1, 2, 3, 4, 5]
    assert result.fieldname_with_ucd("pos.eq.ra;meta.main") == "coord_ra"
    capped = service.run_sync("SELECT objectId FROM dp1.Object", maxrec=7)
    assert len(capped) == 7 and capped.query_status == "OVERFLOW"
    exact = service.run_sync("SELECT TOP 7 objectId FROM dp1.Object", maxrec=7)
    assert len(exact) == 7 and exact.query_status == "OK"
    job = service.submit_job("SELECT COUNT(*) AS n FROM dp1.Object")
    job.run().wait(timeout=60)
    job.raise_if_error()
    assert job.phase == "COMPLETED" and job.fetch_result()["n"][0] == 5000
    job.delete()
    upload = Table({"id": np.array([3, 4, 99999]), "label": ["c", "d", "z"]})
    joined = service.run_sync(
        "SELECT u.id, u.label, o.objectId FROM TAP_UPLOAD.mine AS u JOIN dp1.Object AS o "
        "ON o.objectId = u.id ORDER BY u.id",
        uploads={"mine": upload},
    )
    assert list(joined["id"]) == [3, 4] and list(joined["label"]) == ["c", "d"]
    async_joined = service.run_async(
        "SELECT COUNT(*) AS n FROM TAP_UPLOAD.mine", uploads={"mine": upload}
    )
    assert async_joined["n"][0] == 3
    with pytest.raises(pyvo.dal.DALQueryError, match="bogus"):
        service.run_sync("SELECT bogus FROM dp1.Object")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "RESPONSEFORMAT": "pdf"}, "RESPONSEFORMAT"),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "MAXREC": "10000000000"}, "hard limit"),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "MAXREC": "-3"}, "MAXREC"),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "LANG": "SQL"}, "LANG"),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "REQUEST": "getCapabilities"}, "REQUEST"),
        ({}, "QUERY is required"),
        ({"QUERY": "SELECT * FROM read_csv('/etc/passwd')"}, "Table functions"),
        ({"QUERY": "COPY dp1.Object TO '/tmp/x'"}, "Only SELECT"),
        ({"QUERY": "SELECT 1; DROP TABLE dp1.Object"}, "one SELECT"),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "UPLOAD": "t,ftp://evil/x.xml"}, "inline"),
        (
            {"QUERY": "SELECT TOP 1 * FROM dp1.Object", "UPLOAD": "t,http://127.0.0.1:1/x.xml"},
            "not allowed",
        ),
        ({"QUERY": "SELECT TOP 1 * FROM dp1.Object", "UPLOAD": "t,param:nothere"}, "no such part"),
    ],
)
def test_bad_requests(tap_url, alice, params, message) -> None:
    for response in (
        alice.get(f"{tap_url}/sync", params=params, timeout=30),
        alice.post(f"{tap_url}/sync", data=params, timeout=30),
    ):
        assert response.status_code == 400, response.text
        assert message in votable_error(response)


def test_bad_upload(tap_url, alice) -> None:
    response = alice.post(
        f"{tap_url}/sync",
        data={"QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:t"},
        files={"t": ("t.xml", b"<VOTABLE><RESOURCE><TABLE>broken", "application/xml")},
        timeout=30,
    )
    assert response.status_code == 400 and "not a readable VOTable" in votable_error(response)


def test_formats_over_http(tap_url, alice) -> None:
    query = "SELECT TOP 20 objectId, coord_ra, g_psfFlux FROM dp1.Object ORDER BY objectId"
    for fmt, media in [
        ("votable", "application/x-votable+xml"),
        ("votable/td", "application/x-votable+xml;serialization=TABLEDATA"),
        ("csv", "text/csv"),
        ("tsv", "text/tab-separated-values"),
        ("fits", "application/fits"),
        ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
    ]:
        response = alice.get(
            f"{tap_url}/sync", params={"QUERY": query, "RESPONSEFORMAT": fmt}, timeout=30
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
        assert len(response.content) > 100


def test_uws_jobs(tap_url, alice, bob) -> None:
    created = alice.post(
        f"{tap_url}/async",
        data={"QUERY": "SELECT TOP 3 objectId FROM dp1.Object ORDER BY objectId", "RUNID": "r1"},
        allow_redirects=False,
        timeout=30,
    )
    assert created.status_code == 303
    job_url = created.headers["location"]
    assert alice.get(f"{job_url}/phase", timeout=30).text == "PENDING"
    assert (
        alice.post(
            f"{job_url}/executionduration", data={"EXECUTIONDURATION": "30"}, timeout=30
        ).status_code
        == 200
    )
    assert alice.get(f"{job_url}/executionduration", timeout=30).text == "30"
    bad = alice.post(f"{job_url}/phase", data={"PHASE": "EXPLODE"}, timeout=30)
    assert bad.status_code == 400
    assert (
        alice.post(
            f"{job_url}/executionduration", data={"EXECUTIONDURATION": "x"}, timeout=30
        ).status_code
        == 400
    )
    # Another user cannot see, change or list it.
    assert bob.get(job_url, timeout=30).status_code == 404
    assert bob.post(f"{job_url}/phase", data={"PHASE": "RUN"}, timeout=30).status_code == 404
    assert job_url.rsplit("/", 1)[1] not in bob.get(f"{tap_url}/async", timeout=30).text
    alice.post(f"{job_url}/phase", data={"PHASE": "RUN"}, timeout=30)
    body = alice.get(job_url, params={"WAIT": "30"}, timeout=60).text
    for _ in range(20):
        if "COMPLETED" in body:
            break
        body = alice.get(job_url, params={"WAIT": "30"}, timeout=60).text
    assert "<uws:phase>COMPLETED</uws:phase>" in body and "<uws:runId>r1</uws:runId>" in body
    listing = alice.get(f"{tap_url}/async", params={"PHASE": "COMPLETED", "LAST": "1"}, timeout=30)
    assert job_url.rsplit("/", 1)[1] in listing.text
    result = alice.get(f"{job_url}/results/result", timeout=30)
    assert bob.get(f"{job_url}/results/result", timeout=30).status_code == 404
    table = parse_single_table(io.BytesIO(result.content)).to_table()
    assert list(table["objectId"]) == [1, 2, 3]
    failing = alice.post(
        f"{tap_url}/async",
        data={"QUERY": "SELECT nope FROM dp1.Object", "PHASE": "RUN"},
        timeout=60,
    )
    failed_url = failing.url
    body = alice.get(failed_url, params={"WAIT": "30", "PHASE": "QUEUED"}, timeout=60).text
    body = alice.get(failed_url, params={"WAIT": "30", "PHASE": "EXECUTING"}, timeout=60).text
    assert "<uws:phase>ERROR</uws:phase>" in body and "nope" in body
    assert "nope" in alice.get(f"{failed_url}/error", timeout=30).text
    deleted = alice.delete(job_url, allow_redirects=False, timeout=30)
    assert deleted.status_code == 303
    assert alice.get(job_url, timeout=30).status_code == 404
    assert (
        alice.get(f"{tap_url}/async", params={"AFTER": "yesterday"}, timeout=30).status_code == 400
    )


def test_history(tap_url, test_hub) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {test_hub.token_for('bob')}"
    session.get(
        f"{tap_url}/sync", params={"QUERY": "SELECT TOP 2 tract FROM dp1.Object"}, timeout=30
    )
    history = session.get(f"{tap_url}/history", params={"limit": "5"}, timeout=30).json()
    assert history["user"] == "bob"
    latest = history["queries"][0]
    assert latest["query"] == "SELECT TOP 2 tract FROM dp1.Object"
    assert latest["rows"] == 2 and latest["status"] == "OK" and latest["duration"] >= 0
    # Async jobs link to their job; once deleted, the entry stays without a link that 404s.
    job_urls = []
    for n in (1, 2):
        created = session.post(
            f"{tap_url}/async",
            data={"QUERY": f"SELECT TOP {n} tract FROM dp1.Object", "PHASE": "RUN"},
            allow_redirects=False,
            timeout=30,
        )
        job_urls.append(created.headers["location"])
        session.get(job_urls[-1], params={"WAIT": "30"}, timeout=60)
    assert session.delete(job_urls[0], timeout=30).status_code in (200, 303)
    entries = session.get(f"{tap_url}/history", params={"limit": "2"}, timeout=30).json()
    kept, deleted = entries["queries"]
    assert kept["job_url"] == job_urls[1] and "job_deleted" not in kept
    assert session.get(kept["job_url"], timeout=30).status_code == 200
    assert "job_url" not in deleted and deleted["job_deleted"] is True


def test_examples_all_run(tap_url, alice) -> None:
    import re
    from html import unescape

    page = alice.get(f"{tap_url}/examples", timeout=30).text
    queries = [unescape(q) for q in re.findall(r'<pre property="query">(.*?)</pre>', page, re.S)]
    assert len(queries) >= 3
    service = pyvo.dal.TAPService(tap_url, session=alice)
    for query in queries:
        assert len(service.run_sync(query)) > 0, query


def _stilts(test_hub, *args: str) -> subprocess.CompletedProcess:
    token = test_hub.token_for("alice")
    return subprocess.run(
        ["stilts", "-Dstar.basicauth.user=token", f"-Dstar.basicauth.password={token}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stilts_tapquery(tap_url, test_hub, tmp_path) -> None:
    for mode in ("true", "false"):
        out = tmp_path / f"out-{mode}.csv"
        done = _stilts(
            test_hub,
            "tapquery",
            f"tapurl={tap_url}",
            f"sync={mode}",
            "adql=SELECT TOP 4 objectId, band FROM dp1.Source ORDER BY sourceId",
            f"out={out}",
            "ofmt=csv",
        )
        assert done.returncode == 0, done.stderr
        assert out.read_text().splitlines()[0] == "objectId,band"
        assert len(out.read_text().splitlines()) == 5


def _taplint_gate(test_hub, url: str, tmp_path) -> set[str]:
    """STILTS taplint, every stage but ObsLocTAP, authenticated: no errors, no failures.
    Returns the stages that ran."""
    done = _stilts(test_hub, "taplint", f"tapurl={url}", "format=json", "report=EWF", "stages=-LOC")
    (tmp_path / "taplint.json").write_text(done.stdout)
    report = json.loads(done.stdout)
    problems = [
        f"{section['code']} {r['level']} {r['code']}: {r.get('text', '')}"
        for section in report["sections"]
        for r in section["reports"]
        if r["level"] in ("ERROR", "FAILURE")
    ]
    totals = report["totals"]
    assert totals["ERROR"] == 0 and totals["FAILURE"] == 0, "\n".join(problems)
    return {section["code"] for section in report["sections"]}


_STAGES = {"TME", "TMS", "CAP", "AVV", "QGE", "QPO", "QAS", "UWS", "MDQ", "OBS", "UPL", "EXA"}


def test_taplint_zero_errors(obscore_tap_url, test_hub, tmp_path) -> None:
    """taplint on the data preview (DuckDB), ObsCore stage included: the capabilities declare
    ObsCore 1.1 and ivoa.ObsCore passes its column, type, UCD, utype and content checks."""
    assert _taplint_gate(test_hub, obscore_tap_url, tmp_path) >= _STAGES
    caps = requests.get(f"{obscore_tap_url}/capabilities", timeout=30).text
    assert 'ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1"' in caps


def test_client_api(tap_url, test_hub, tmp_path, monkeypatch) -> None:
    """sciplat.get_tap_service() outside a lab (URL + token) and inside one (discovery file)."""
    import sciplat
    from sciplat.client import discovery_document

    token = test_hub.token_for("alice")
    outside = sciplat.get_tap_service(test_hub.url, token=token)
    assert isinstance(outside, pyvo.dal.TAPService)
    assert outside.run_sync("SELECT TOP 1 objectId FROM dp1.Object")["objectId"][0] > 0
    document = tmp_path / "discovery.json"
    document.write_text(discovery_document(test_hub.url).model_dump_json())
    monkeypatch.setenv("SCIPLAT_DISCOVERY", str(document))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    inside = sciplat.get_tap_service()
    job = inside.submit_job("SELECT COUNT(*) AS n FROM dp1.Source")
    job.run().wait(timeout=60)
    again = sciplat.get_query(job.job_id)  # the job's result, as an astropy Table
    assert again["n"][0] == 15000
    history = sciplat.get_query_history(limit=5)
    assert any(h.get("job_id") == job.job_id for h in history)


@pytest.fixture(scope="module")
def pg_tap_url(test_hub, postgres_catalog, tmp_path_factory):
    """A second API service (TAP only) on the PostgreSQL backend, checking tokens with the hub."""
    from sciplat.config import CatalogConfig, Settings
    from sciplat.services.tap.bench import serve_tap

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("pgapi"),
        catalog=CatalogConfig(backend="postgres", url=postgres_catalog.url),
    )
    with serve_tap(settings, hub_api_url=test_hub.api_url) as url:
        yield url


def test_postgres_backend_pyvo(pg_tap_url, alice) -> None:
    service = pyvo.dal.TAPService(pg_tap_url, session=alice)
    cone = service.run_sync(
        "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
        "CIRCLE('ICRS', 10, 20, 8)) = 1 ORDER BY objectId"
    )
    assert len(cone) > 0
    upload = Table({"id": np.array([3, 4, 99999])})
    joined = service.run_async(
        "SELECT u.id, o.objectId FROM TAP_UPLOAD.mine AS u JOIN dp1.Object AS o "
        "ON o.objectId = u.id ORDER BY u.id",
        uploads={"mine": upload},
    )
    assert list(joined["objectId"]) == [3, 4]


def test_taplint_postgres(obscore_pg_tap_url, test_hub, tmp_path) -> None:
    """The same taplint gate (ObsCore included) on the PostgreSQL backend, whose UWS jobs are
    kept in PostgreSQL."""
    assert _taplint_gate(test_hub, obscore_pg_tap_url, tmp_path) >= _STAGES
