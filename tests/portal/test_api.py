"""The portal's query/result API against the real TAP service (as the user), and the
notebook side of the round trip (sciplat.get_query on the portal's job)."""

from __future__ import annotations

import io
import json
import time

import pyarrow.parquet as pq
import pytest

from sciplat.client import discovery
from sciplat.tap import get_query

pytestmark = pytest.mark.integration


def _run(alice, query: str, maxrec: int | None = None) -> dict:
    job = alice.post("/api/query", json={"query": query, "maxrec": maxrec}).json()
    deadline = time.monotonic() + 120
    while job["phase"] in ("PENDING", "QUEUED", "EXECUTING") and time.monotonic() < deadline:
        job = alice.get(f"/api/jobs/{job['job_id']}", params={"wait": 1}).json()
    return job


def test_query_page_sort_filter_download(alice, portal_hub, counts, tmp_path):
    job = _run(alice, "SELECT objectId, coord_ra, coord_dec, g_psfFlux FROM dp1.Object")
    assert job["phase"] == "COMPLETED", job
    n = counts["dp1.Object"]
    info = alice.post(f"/api/jobs/{job['job_id']}/load").json()
    assert info["rows"] == n and info["job_id"] == job["job_id"]
    rid = info["id"]
    page = alice.post(f"/api/results/{rid}/page", json={"offset": 100, "limit": 50}).json()
    assert page["total"] == n and len(page["rows"]) == 50
    ordered = alice.post(
        f"/api/results/{rid}/page",
        json={"limit": 5, "sort": "coord_dec", "descending": True},
    ).json()
    decs = [r[2] for r in ordered["rows"]]
    assert decs == sorted(decs, reverse=True)
    filtered = alice.post(
        f"/api/results/{rid}/page",
        json={"filters": [{"column": "coord_dec", "op": "between", "value": [-37.0, -36.98]}]},
    ).json()
    assert 0 < filtered["total"] < n
    assert all(-37.0 <= r[2] <= -36.98 for r in filtered["rows"])
    stats = alice.post(f"/api/results/{rid}/stats", json={"column": "g_psfFlux"}).json()
    assert stats["rows"] == n and stats["nulls"] > 0 and stats["min"] <= stats["median"]
    csv = alice.get(f"/api/results/{rid}/download", params={"format": "csv"})
    assert csv.status_code == 200 and csv.text.count("\n") == n + 1
    parquet = alice.get(f"/api/results/{rid}/download", params={"format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == n
    votable = alice.get(f"/api/results/{rid}/download", params={"format": "votable"})
    assert b"<VOTABLE" in votable.content[:1000]
    plot = alice.post(
        f"/api/results/{rid}/plot", json={"type": "scatter", "x": "coord_ra", "y": "coord_dec"}
    ).json()
    assert plot["type"] == "points" and len(plot["x"]) == n
    hist = alice.post(
        f"/api/results/{rid}/plot", json={"type": "histogram", "x": "g_psfFlux", "bins": 10}
    ).json()
    assert sum(hist["counts"]) == stats["non_null"]
    bad = alice.post(
        f"/api/results/{rid}/page", json={"filters": [{"column": "nope", "op": "=", "value": 1}]}
    )
    assert bad.status_code == 400 and "nope" in bad.json()["message"]
    # the notebook gets the same job's result
    doc = discovery(portal_hub.url, token=portal_hub.token_for("alice"))
    table = get_query(job["job_id"], doc=doc)
    assert len(table) == n and "coord_ra" in table.colnames
    # history lists it
    history = alice.get("/api/history").json()
    assert any(h.get("job_id") == job["job_id"] for h in history)
    # another user cannot see alice's result
    bob = portal_hub.token_for("bob")
    other = alice.post(
        f"/api/results/{rid}/page", json={}, headers={"Authorization": f"Bearer {bob}"}
    )
    assert other.status_code == 404
    # the deep link ?job= names the job by id or by its URL (the lab's "Open in portal");
    # bob is told alice's job is not his
    job_url = f"{portal_hub.url}/services/api/tap/async/{job['job_id']}"
    for ref in (job["job_id"], job_url):
        linked = alice.get("/api/joblink", params={"ref": ref}).json()
        assert linked["job_id"] == job["job_id"] and linked["phase"] == "COMPLETED"
        assert "dp1.Object" in linked["query"]
    refused = alice.get(
        "/api/joblink", params={"ref": job_url}, headers={"Authorization": f"Bearer {bob}"}
    )
    assert refused.status_code == 404
    assert refused.json()["message"] == (
        f"Job {job['job_id']} is not one of your TAP jobs: it belongs to another user, or it "
        "was deleted"
    )
    bad = alice.get("/api/joblink", params={"ref": "http://elsewhere/x"})
    assert bad.status_code == 400 and "neither a TAP job id" in bad.json()["message"]


def test_bad_adql_empty_and_cancel(alice):
    job = _run(alice, "SELECT nosuchcolumn\nFROM dp1.Object")
    assert job["phase"] == "ERROR"
    assert "nosuchcolumn" in job["error"]
    assert job["position"] is not None and job["position"]["line"] == 1
    empty = _run(alice, "SELECT objectId FROM dp1.Object WHERE coord_dec > 91")
    assert empty["phase"] == "COMPLETED"
    info = alice.post(f"/api/jobs/{empty['job_id']}/load").json()
    assert info["rows"] == 0
    page = alice.post(f"/api/results/{info['id']}/page", json={}).json()
    assert page["total"] == 0 and page["rows"] == []
    slow = alice.post(
        "/api/query",
        json={"query": "SELECT COUNT(*) FROM dp1.Object a, dp1.Object b, dp1.Object c"},
    ).json()
    aborted = alice.post(f"/api/jobs/{slow['job_id']}/abort").json()
    assert aborted["phase"] in ("ABORTED", "COMPLETED", "ERROR")
    if aborted["phase"] == "ABORTED":
        refused = alice.post(f"/api/jobs/{slow['job_id']}/load")
        assert refused.status_code == 400 and "cancelled" in refused.json()["message"]
    missing = alice.post("/api/jobs/nosuchjob/load")
    assert missing.status_code == 404


def test_schema_browser_source(alice):
    """The schema browser's tables and columns come from TAP /tables with units, UCDs and
    descriptions."""
    schemas = {s["schema"]: s["tables"] for s in alice.get("/api/schema").json()}
    tables = {t["name"]: t for t in schemas["dp1"]}
    assert {"dp1.Object", "dp1.ForcedSource", "dp1.DiaSource"} <= set(tables)
    assert tables["dp1.Object"]["description"]
    ra = next(c for c in tables["dp1.Object"]["columns"] if c["name"] == "coord_ra")
    assert ra["unit"] == "deg" and ra["ucd"] == "pos.eq.ra;meta.main"
    assert "Right Ascension" in ra["description"] and ra["datatype"]


def test_resolve_object_names(alice, tiny_dataset):
    """The cone form's names resolve from our catalogs (objectId, diaObjectId, obs_id)."""
    from sciplat.services.images.catalogdb import connect_catalog

    con = connect_catalog(tiny_dataset / "catalog" / "catalog.duckdb")
    try:
        known = {
            "dp1.Object": con.execute(
                "SELECT objectId, coord_ra, coord_dec FROM dp1.Object ORDER BY objectId LIMIT 1"
            ).fetchone(),
            "dp1.DiaObject": con.execute(
                "SELECT diaObjectId, ra, dec FROM dp1.DiaObject WHERE diaObjectId NOT IN "
                "(SELECT objectId FROM dp1.Object) ORDER BY diaObjectId LIMIT 1"
            ).fetchone(),
            "ivoa.ObsCore": con.execute(
                "SELECT obs_id, s_ra, s_dec FROM ivoa.ObsCore ORDER BY obs_id LIMIT 1"
            ).fetchone(),
        }
    finally:
        con.close()
    for table, (name, ra, dec) in known.items():
        got = alice.get("/api/resolve", params={"name": str(name)}).json()
        assert got["table"] == table and got["name"] == str(name), got
        assert abs(got["ra"] - ra) < 1e-9 and abs(got["dec"] - dec) < 1e-9
    missing = alice.get("/api/resolve", params={"name": "999999999999999"})
    assert missing.status_code == 404
    assert missing.json()["message"].startswith("No object '999999999999999' in our catalogs")
    bad = alice.get("/api/resolve", params={"name": "x' OR 1=1 --"})
    assert bad.status_code == 400 and "Bad object name" in bad.json()["message"]


def test_unreadable_image_and_no_token(alice, portal_url):
    import httpx

    key = httpx.post(
        f"{portal_url}/sticky/CmdSrv?cmd=upload",
        files={"file": ("junk.fits", b"not a fits file at all")},
        headers=alice.headers,
    ).text
    import json

    action = {"type": "ImagePlotCntlr.PlotImage", "payload": {"wpRequest": {"file": key}}}
    status = httpx.post(
        f"{portal_url}/sticky/CmdSrv",
        data={"cmd": "pushAction", "channelID": "c1", "action": json.dumps(action)},
        headers=alice.headers,
    ).json()[0]
    assert status["success"] is False and "cannot be read as FITS" in status["error"]
    anonymous = httpx.get(f"{portal_url}/api/results")
    assert anonymous.status_code == 401


def test_image_from_workspace_via_datalink_and_save(alice, portal_hub, tmp_path):
    """An image URL on the platform is fetched with the user's token; a DataLink document is
    followed to its #this link; an unreadable file is refused; results save to the workspace."""
    import numpy as np
    from astropy.io import fits
    from astropy.io.votable import from_table
    from astropy.table import Table

    token = portal_hub.token_for("alice")
    dav = f"{portal_hub.url}/services/api/webdav/home/alice"
    headers = {"Authorization": f"Bearer {token}"}
    import httpx

    with httpx.Client(headers=headers, timeout=120) as http:
        http.request("MKCOL", f"{dav}/imgs/")
        image = tmp_path / "im.fits"
        fits.PrimaryHDU(np.arange(64 * 48, dtype="f4").reshape(48, 64)).writeto(image)
        assert http.put(f"{dav}/imgs/im.fits", content=image.read_bytes()).status_code < 300
        links = Table(
            {
                "ID": ["ivo://test/im"],
                "access_url": [f"{dav}/imgs/im.fits"],
                "semantics": ["#this"],
                "content_type": ["application/fits"],
            }
        )
        doc = tmp_path / "links.xml"
        from_table(links).to_xml(str(doc))
        assert http.put(f"{dav}/imgs/links.xml", content=doc.read_bytes()).status_code < 300
        assert http.put(f"{dav}/imgs/junk.fits", content=b"junk").status_code < 300

    info = alice.post("/api/images", json={"url": f"{dav}/imgs/links.xml"}).json()
    assert info["width"] == 64 and info["height"] == 48 and info["has_wcs"] is False
    png = alice.get(f"/api/images/{info['id']}/png", params={"stretch": "log", "cmap": "viridis"})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    no_wcs = alice.get(f"/api/images/{info['id']}/world", params={"x": 1, "y": 1})
    assert no_wcs.status_code == 400 and "WCS" in no_wcs.json()["message"]
    bad_stretch = alice.get(f"/api/images/{info['id']}/png", params={"stretch": "nope"})
    assert bad_stretch.status_code == 400 and "nope" in bad_stretch.json()["message"]
    junk = alice.post("/api/images", json={"url": f"{dav}/imgs/junk.fits"})
    assert junk.status_code == 400 and "cannot be read as FITS" in junk.json()["message"]

    job = _run(alice, "SELECT TOP 10 objectId, coord_ra FROM dp1.Object")
    rid = alice.post(f"/api/jobs/{job['job_id']}/load").json()["id"]
    saved = alice.post(f"/api/results/{rid}/save", json={"format": "csv", "name": "ten"}).json()
    assert saved["path"] == "~/portal/ten.csv"
    back = httpx.get(f"{dav}/portal/ten.csv", headers=headers)
    assert back.status_code == 200 and back.text.count("\n") == 11
    refused = alice.post(f"/api/results/{rid}/save", json={"format": "csv", "name": "../x"})
    assert refused.status_code == 400


def test_get_query_is_one_function(alice, portal_hub):
    """sciplat.get_query gives an astropy Table for any async job of the user (a portal job
    with a Parquet result, a pyvo job with VOTable) and says why it cannot."""
    import pyvo
    from astropy.table import Table

    import sciplat
    import sciplat.portal
    from sciplat.tap import QueryError

    assert sciplat.get_query is sciplat.portal.get_query is get_query
    token = portal_hub.token_for("alice")
    doc = discovery(portal_hub.url, token=token)
    tap = pyvo.dal.TAPService(doc.url("tap"), session=doc.requests_session())
    job = tap.submit_job("SELECT TOP 7 objectId, coord_ra FROM dp1.Object ORDER BY objectId")
    job.run()
    # still running (or queued) is waited for; by job URL as well as by id
    table = get_query(job.url, doc=doc)
    assert isinstance(table, Table) and len(table) == 7
    assert list(table["objectId"]) == sorted(table["objectId"])
    assert list(get_query(job.job_id, doc=doc)["objectId"]) == list(table["objectId"])
    failed = _run(alice, "SELECT nosuch FROM dp1.Object")
    with pytest.raises(QueryError, match=r"ERROR.*nosuch"):
        get_query(failed["job_id"], doc=doc)
    with pytest.raises(QueryError, match="No TAP job"):
        get_query("nosuchjob", doc=doc)
    # bob cannot read alice's job
    bob = discovery(portal_hub.url, token=portal_hub.token_for("bob"))
    with pytest.raises(QueryError):
        get_query(job.job_id, doc=bob)


def counts_not_null(alice, rid: str, column: str) -> int:
    return alice.post(f"/api/results/{rid}/stats", json={"column": column}).json()["non_null"]


def _models(item: dict) -> dict[str, dict]:
    """The named models of a Bokeh JSON item."""
    found: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            name = (node.get("attributes") or {}).get("name")
            if node.get("type") == "object" and isinstance(name, str):
                found[name] = node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(item)
    return found


def test_bokeh_plots_and_expression_filters(alice, counts):
    """Scatter, colour-magnitude, histogram and light curve as Bokeh documents (HoloViews);
    a box on a colour axis filters the table by that expression."""
    job = _run(alice, "SELECT objectId, coord_ra, coord_dec, g_psfMag, r_psfMag FROM dp1.Object")
    rid = alice.post(f"/api/jobs/{job['job_id']}/load").json()["id"]
    both = alice.post(
        f"/api/results/{rid}/page",
        json={
            "limit": 1,
            "filters": [
                {"column": "g_psfMag", "op": "is not null"},
                {"column": "r_psfMag", "op": "is not null"},
            ],
        },
    ).json()["total"]
    assert 0 < both < counts["dp1.Object"]
    scatter = alice.post(
        f"/api/results/{rid}/bokeh", json={"kind": "scatter", "x": "coord_ra", "y": "coord_dec"}
    ).json()
    assert scatter["renderer"] == "points" and scatter["n"] == counts["dp1.Object"]
    models = _models(scatter["item"])
    assert {"points", "highlight"} <= set(models)
    cmd = alice.post(
        f"/api/results/{rid}/bokeh",
        json={"kind": "cmd", "x": "g_psfMag - r_psfMag", "y": "r_psfMag"},
    ).json()
    assert cmd["renderer"] == "points" and cmd["n"] == both
    assert cmd["y_range"][0] < cmd["y_range"][1]
    y_axis = _models(cmd["item"])["y"]["attributes"]  # magnitudes: bright at the top
    assert y_axis["start"] > y_axis["end"]
    # the box drawn on the colour axis, as the page sends it
    lo, hi = 0.0, 0.8
    colour = alice.post(
        f"/api/results/{rid}/page",
        json={
            "limit": 1000,
            "filters": [{"column": "g_psfMag - r_psfMag", "op": "between", "value": [lo, hi]}],
        },
    ).json()
    assert 0 < colour["total"] < both
    assert all(lo <= r[3] - r[4] <= hi for r in colour["rows"])
    zoomed = alice.post(
        f"/api/results/{rid}/bokeh",
        json={"kind": "scatter", "x": "coord_ra", "y": "coord_dec",
              "x_range": [61.95, 62.0], "y_range": [-37.0, -36.97]},
    ).json()  # fmt: skip
    assert zoomed["renderer"] == "raster" and zoomed["x_range"] == [61.95, 62.0]
    assert "Image" in json.dumps(zoomed["item"])
    hist = alice.post(f"/api/results/{rid}/bokeh", json={"kind": "histogram", "x": "r_psfMag"})
    assert hist.status_code == 200 and hist.json()["n"] == counts_not_null(alice, rid, "r_psfMag")
    # light curve of the object with the most forced measurements
    top = _run(
        alice,
        "SELECT TOP 1 objectId, COUNT(*) AS n FROM dp1.ForcedSource GROUP BY objectId "
        "ORDER BY n DESC",
    )
    top_id = alice.post(f"/api/jobs/{top['job_id']}/load").json()["id"]
    object_id, n = alice.post(f"/api/results/{top_id}/page", json={}).json()["rows"][0]
    lc_job = _run(
        alice,
        "SELECT f.band, v.expMidptMJD AS mjd, f.psfFlux FROM dp1.ForcedSource AS f "
        f"JOIN dp1.Visit AS v ON f.visit = v.visit WHERE f.objectId = {object_id}",
    )
    lc_rid = alice.post(f"/api/jobs/{lc_job['job_id']}/load").json()["id"]
    lc = alice.post(
        f"/api/results/{lc_rid}/bokeh", json={"kind": "lightcurve", "x": "mjd", "y": "psfFlux"}
    ).json()
    assert lc["kind"] == "lightcurve" and lc["n"] == n
    assert "Legend" in json.dumps(lc["item"])
    for body, text in [
        ({"kind": "pie", "x": "coord_ra"}, "pie"),
        ({"kind": "scatter", "x": "coord_ra", "y": "nosuch"}, "nosuch"),
        ({"kind": "scatter", "x": "coord_ra"}, "needs x and y"),
        ({"kind": "scatter", "x": "coord_ra", "y": "coord_dec", "width": 5}, "width"),
    ]:
        bad = alice.post(f"/api/results/{rid}/bokeh", json=body)
        assert bad.status_code == 400 and text in bad.json()["message"], bad.text


def test_workspace_browse_upload_save_open(alice, portal_hub, tmp_path):
    """The user's workspace through the portal (WebDAV as the user): browse, upload, save a
    result as VOTable/CSV/Parquet, open table files and images; traversal and quota refused."""
    import httpx
    from skydata import star_field

    from sciplat.services.workspace.quota import set_override

    csv = "ra,dec,mag\n62.0,-37.0,20.1\n61.99,-36.99,21.5\n"
    up = alice.post(
        "/api/workspace/upload", data={"folder": "tables"}, files={"file": ("mine.csv", csv)}
    )
    assert up.status_code == 200, up.text
    assert up.json()["path"] == "tables/mine.csv" and up.json()["size"] == len(csv)
    root = alice.get("/api/workspace").json()
    assert any(e["name"] == "tables" and e["folder"] for e in root["entries"])
    listing = alice.get("/api/workspace", params={"path": "tables"}).json()
    (entry,) = [e for e in listing["entries"] if e["name"] == "mine.csv"]
    assert entry["size"] == len(csv) and not entry["folder"] and entry["modified"]
    opened = alice.post("/api/workspace/open", json={"path": "tables/mine.csv"}).json()
    assert opened["kind"] == "table" and opened["result"]["rows"] == 2
    rid = opened["result"]["id"]
    for fmt, ext in [("votable", "xml"), ("parquet", "parquet"), ("csv", "csv")]:
        saved = alice.post(
            f"/api/results/{rid}/save", json={"format": fmt, "name": "again", "folder": "tables"}
        ).json()
        assert saved["path"] == f"~/tables/again.{ext}", saved
        back = alice.post("/api/workspace/open", json={"path": f"tables/again.{ext}"}).json()
        assert back["result"]["rows"] == 2, fmt
        page = alice.post(f"/api/results/{back['result']['id']}/page", json={}).json()
        assert [round(r[2], 1) for r in page["rows"]] == [20.1, 21.5]
    image = tmp_path / "field.fits"
    star_field(image)
    files = {"file": ("field.fits", image.read_bytes())}
    assert alice.post("/api/workspace/upload", data={"folder": ""}, files=files).status_code == 200
    shown = alice.post("/api/workspace/open", json={"path": "field.fits"}).json()
    assert shown["kind"] == "image" and shown["image"]["width"] == 400
    # refusals: paths out of the home, missing files, unknown formats
    for path in ("../bob", "tables/../../bob", "/etc"):
        bad = alice.get("/api/workspace", params={"path": path})
        assert bad.status_code in (400, 404), (path, bad.text)
        if path != "/etc":
            assert "Bad workspace path" in bad.json()["message"]
    missing = alice.post("/api/workspace/open", json={"path": "nosuch.csv"})
    assert missing.status_code in (400, 404) and "nosuch.csv" in missing.json()["message"]
    junk = {"file": ("junk.bin", bytes(range(256)) * 4)}
    alice.post("/api/workspace/upload", data={"folder": "tables"}, files=junk)
    unreadable = alice.post("/api/workspace/open", json={"path": "tables/junk.bin"})
    assert unreadable.status_code == 400 and "table" in unreadable.json()["message"]
    # over quota: the upload is refused with WebDAV's quota message and nothing is written
    set_override(portal_hub.settings, "users", "bob", 1024)
    try:
        bob = {"Authorization": f"Bearer {portal_hub.token_for('bob')}"}
        big = {"file": ("big.csv", "x\n" + "1\n" * 4000)}
        refused = alice.post("/api/workspace/upload", files=big, headers=bob)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "QuotaExceeded"
        assert "quota" in refused.json()["message"].lower()
        names = [e["name"] for e in alice.get("/api/workspace", headers=bob).json()["entries"]]
        assert "big.csv" not in names
    finally:
        set_override(portal_hub.settings, "users", "bob", None)
    # another user's token never sees alice's files
    other = httpx.get(
        f"{portal_hub.url}/services/portal/api/workspace",
        params={"path": "tables"},
        headers={"Authorization": f"Bearer {portal_hub.token_for('bob')}"},
    )
    assert other.status_code == 404 or all(e["name"] != "mine.csv" for e in other.json()["entries"])
