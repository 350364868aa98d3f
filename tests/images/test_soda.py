"""SODA cutouts: pixels, WCS, planes, several cutouts, filters, refusals, pyvo round trip."""

from __future__ import annotations

import io
from urllib.parse import urlencode

import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from imagetools import votlint

pytestmark = pytest.mark.integration

SYNC = "/services/api/soda/sync"


def _full(image_dataset, did: str) -> fits.HDUList:
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(image_dataset / "butler"))
    try:
        path = butler.getURI(butler.get_dataset(did.split("?", 1)[1])).ospath
    finally:
        butler.close()
    return fits.open(path)


def _fits(response) -> fits.HDUList:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fits"
    return fits.open(io.BytesIO(response.content))


def _centre(row) -> tuple[float, float]:
    return float(row["s_ra"]), float(row["s_dec"])


async def test_circle_cutout_pixels_and_wcs(api, image_dataset, visit_image):
    did = visit_image["obs_publisher_did"]
    ra, dec = _centre(visit_image)
    radius = 50 * 0.2 / 3600  # 50 pixels
    cut = _fits(await api.get(SYNC, params={"ID": did, "CIRCLE": f"{ra} {dec} {radius}"}))
    with _full(image_dataset, did) as full:
        assert [h.name for h in cut] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        image = cut["IMAGE"]
        ny, nx = image.data.shape
        assert 98 <= nx <= 104 and 98 <= ny <= 104
        x0, y0 = -image.header["LTV1"], -image.header["LTV2"]
        for name in ("IMAGE", "MASK", "VARIANCE"):
            expected = full[name].data[y0 : y0 + ny, x0 : x0 + nx]
            assert np.array_equal(cut[name].data, expected), name
        wcs_cut, wcs_full = WCS(image.header), WCS(full["IMAGE"].header)
        for x, y in [(0, 0), (nx - 1, 0), (17, 42), (nx - 1, ny - 1)]:
            a = wcs_cut.pixel_to_world(x, y)
            b = wcs_full.pixel_to_world(x + x0, y + y0)
            assert a.separation(b).arcsec < 1e-6
        # The circle's centre falls in the middle of the cutout.
        cx, cy = wcs_cut.world_to_pixel_values(ra, dec)
        assert abs(cx - (nx - 1) / 2) < 1.5 and abs(cy - (ny - 1) / 2) < 1.5
    assert cut[0].header["CUTID1"] == did


async def test_polygon_and_several_cutouts(api, obscore_rows, visit_image):
    did = visit_image["obs_publisher_did"]
    ra, dec = _centre(visit_image)
    d = 0.004
    polygon = f"{ra - d} {dec - d} {ra + d} {dec - d} {ra} {dec + d}"
    other = next(
        r
        for r in obscore_rows
        if r["calib_level"] == 2
        and r["obs_publisher_did"] != did
        and abs(r["s_dec"] - dec) < 0.02
        and abs(r["s_ra"] - ra) < 0.02
    )
    params = [
        ("ID", did),
        ("ID", other["obs_publisher_did"]),
        ("CIRCLE", f"{ra} {dec} 0.002"),
        ("POLYGON", polygon),
    ]
    cut = _fits(await api.get(SYNC, params=params))
    assert cut[0].header["NCUTOUT"] == 4
    for version in range(1, 5):
        assert cut["IMAGE", version].data is not None
        assert cut["VARIANCE", version].data.shape == cut["IMAGE", version].data.shape
    # The polygon's vertices all fall inside its cutout.
    poly = cut["IMAGE", 2]
    wcs = WCS(poly.header)
    xs, ys = wcs.world_to_pixel_values([ra - d, ra + d, ra], [dec - d, dec - d, dec + d])
    ny, nx = poly.data.shape
    assert (xs > -1).all() and (xs < nx).all() and (ys > -1).all() and (ys < ny).all()
    assert cut[0].header["CUTID3"] == other["obs_publisher_did"]


async def test_filters_and_refusals(api, visit_image):
    did = visit_image["obs_publisher_did"]
    ra, dec = _centre(visit_image)
    circle = f"{ra} {dec} 0.002"
    mid = (visit_image["em_min"] + visit_image["em_max"]) / 2
    ok = await api.get(SYNC, params={"ID": did, "CIRCLE": circle, "BAND": f"{mid} {mid}"})
    assert ok.status_code == 200
    t = visit_image["t_min"]
    ok = await api.get(SYNC, params={"ID": did, "CIRCLE": circle, "TIME": f"{t - 1} {t + 1}"})
    assert ok.status_code == 200
    cases = [
        ({"ID": did, "CIRCLE": circle, "BAND": "1e-5 2e-5"}, 400, "does not overlap"),
        ({"ID": did, "CIRCLE": circle, "TIME": "50000 50001"}, 400, "does not overlap"),
        ({"ID": did, "CIRCLE": circle, "POL": "Q"}, 400, "does not match"),
        ({"ID": did, "CIRCLE": "10 10 0.01"}, 400, "does not overlap the footprint"),
        ({"ID": did, "CIRCLE": f"{ra} {dec}"}, 400, "needs 3 numbers"),
        ({"ID": did, "POLYGON": f"{ra} {dec} {ra} {dec}"}, 400, "at least 3 vertices"),
        ({"ID": did, "BAND": "500 600", "CIRCLE": circle}, 400, "metres"),
        ({"ID": did}, 400, "needs a region"),
        ({"CIRCLE": circle}, 400, "ID is required"),
        ({"ID": "ivo://sciplat/dp?" + "0" * 32, "CIRCLE": circle}, 404, "Unknown dataset"),
        ({"ID": "ivo://sciplat/dp?../../butler.yaml", "CIRCLE": circle}, 400, "not a dataset"),
        ({"ID": "file:///etc/passwd", "CIRCLE": circle}, 400, "Unknown dataset ID"),
    ]
    for params, status, message in cases:
        response = await api.get(SYNC, params=params)
        assert response.status_code == status, (params, response.text)
        assert response.headers["content-type"].startswith("application/x-votable+xml")
        assert message in response.text, (params, response.text)


async def test_enormous_cutouts(api, obscore_rows, visit_image):
    did = visit_image["obs_publisher_did"]
    ra, dec = _centre(visit_image)
    whole = _fits(await api.get(SYNC, params={"ID": did, "CIRCLE": f"{ra} {dec} 10"}))
    assert whole["IMAGE"].data.shape == (visit_image["s_xel2"], visit_image["s_xel1"])
    assert whole["IMAGE"].header["LTV1"] == 0
    images = [r["obs_publisher_did"] for r in obscore_rows if r["calib_level"] == 2][:20]
    too_many = [("ID", i) for i in images] + [("CIRCLE", f"{ra} {dec} 10")] * 3
    response = await api.get(SYNC, params=too_many)
    assert response.status_code == 400
    assert "at most" in response.text
    too_big = [("ID", i) for i in images] + [("CIRCLE", f"{ra} {dec} 10")] * 2
    response = await api.post(
        SYNC,
        content=urlencode(too_big),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "pixels" in response.text


async def test_auth(api, tokens, visit_image):
    params = {"ID": visit_image["obs_publisher_did"], "CIRCLE": "62 -37 0.01"}
    assert (await api.get(SYNC, params=params, headers={"Authorization": ""})).status_code == 401
    headers = {"Authorization": f"Bearer {tokens['tap_only']}"}
    assert (await api.get(SYNC, params=params, headers=headers)).status_code == 403
    caps = await api.get("/services/api/soda/capabilities", headers={"Authorization": ""})
    assert "ivo://ivoa.net/std/SODA#sync-1.0" in caps.text


def test_pyvo_soda_round_trip(image_server, tokens, visit_image):
    from pyvo.dal.adhoc import DatalinkResults, SodaQuery

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['alice']}"
    url = f"{image_server.api}/datalink/links?{urlencode({'ID': visit_image['obs_publisher_did']})}"
    links = DatalinkResults.from_result_url(url, session=session)
    query = SodaQuery.from_resource(
        links.get_first_proc(), links.get_adhocservice_by_id("cutout"), session=session
    )
    ra, dec = _centre(visit_image)
    query.circle = (ra, dec, 0.003)
    with fits.open(io.BytesIO(query.execute_stream().read())) as cut:
        assert cut["IMAGE"].data.shape[0] > 50
        assert WCS(cut["IMAGE"].header).footprint_contains(SkyCoord(ra, dec, unit="deg"))


async def test_async_jobs(api, image_server, tokens, visit_image):
    did = visit_image["obs_publisher_did"]
    ra, dec = _centre(visit_image)
    created = await api.post(
        "/services/api/soda/async",
        data={"ID": did, "CIRCLE": f"{ra} {dec} 0.003", "PHASE": "RUN"},
    )
    assert created.status_code == 303
    job_url = created.headers["location"]
    assert job_url.startswith(f"{image_server.api}/soda/async/")
    job = await api.get(job_url, params={"WAIT": "30"})
    for _ in range(60):
        phase = (await api.get(f"{job_url}/phase")).text
        if phase not in ("QUEUED", "EXECUTING"):
            break
        job = await api.get(job_url, params={"WAIT": "5"})
    assert phase == "COMPLETED", job.text
    results = await api.get(f"{job_url}/results")
    assert f"{job_url}/results/cutout" in results.text
    cut = _fits(await api.get(f"{job_url}/results/cutout"))
    assert cut[0].header["CUTID1"] == did
    assert cut["IMAGE"].data.shape[0] > 50

    # Someone else cannot see the job; bad values are refused when the job is created.
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    assert (await api.get(job_url, headers=bob)).status_code == 404
    bad = await api.post("/services/api/soda/async", data={"ID": did, "CIRCLE": "400 0 1"})
    assert bad.status_code == 400
    assert "outside [0, 360]" in bad.text

    # A job without a region fails with the reason in its error document.
    incomplete = await api.post("/services/api/soda/async", data={"ID": did, "PHASE": "RUN"})
    url = incomplete.headers["location"]
    for _ in range(60):
        phase = (await api.get(f"{url}/phase")).text
        if phase == "ERROR":
            break
        await api.get(url, params={"WAIT": "5"})
    assert phase == "ERROR"
    assert "needs a region" in (await api.get(f"{url}/error")).text
    assert (await api.delete(url)).status_code == 303


def test_error_documents_pass_votlint(image_server, tokens, visit_image, tmp_path):
    response = requests.get(
        f"{image_server.api}/soda/sync",
        params={"ID": visit_image["obs_publisher_did"], "CIRCLE": "10 10 0.01"},
        headers={"Authorization": f"Bearer {tokens['alice']}"},
        timeout=60,
    )
    assert response.status_code == 400
    assert "does not overlap the footprint" in response.text
    document = tmp_path / "error.xml"
    document.write_bytes(response.content)
    assert votlint(document) == ""  # the DALI error document: no error and no warning
