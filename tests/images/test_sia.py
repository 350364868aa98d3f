"""SIA 2.0 over the data preview's ObsCore table: filters, answers, errors, auth, clients."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from astropy.io.votable import parse_single_table
from imagetools import stilts, votlint

pytestmark = pytest.mark.integration

SIA = "/services/api/sia/query"


def _rows(response) -> list[dict]:
    from io import BytesIO

    assert response.status_code == 200, response.text
    table = parse_single_table(BytesIO(response.content)).to_table()
    return [dict(zip(table.colnames, row, strict=True)) for row in table]


async def test_position_band_time_and_calib_filters(api, obscore_rows, visit_image):
    ra, dec = visit_image["s_ra"], visit_image["s_dec"]
    band = (visit_image["em_min"] + visit_image["em_max"]) / 2
    found = _rows(await api.get(SIA, params={"POS": f"CIRCLE {ra} {dec} 0.001", "CALIB": "2"}))
    dids = {r["obs_publisher_did"] for r in found}
    assert visit_image["obs_publisher_did"] in dids
    assert all(r["calib_level"] == 2 for r in found)

    same_band = _rows(
        await api.get(SIA, params={"POS": f"CIRCLE {ra} {dec} 0.001", "BAND": f"{band} {band}"})
    )
    expected = {
        r["obs_publisher_did"]
        for r in obscore_rows
        if r["em_min"] is not None
        and r["em_min"] <= band <= r["em_max"]
        and r["obs_publisher_did"] in dids
    }
    assert {r["obs_publisher_did"] for r in same_band} >= expected - {None}
    assert all(r["em_min"] <= band <= r["em_max"] for r in same_band)

    t = visit_image["t_min"] + 1e-5
    at_time = _rows(await api.get(SIA, params={"TIME": f"{t} {t}", "CALIB": "2"}))
    assert visit_image["obs_publisher_did"] in {r["obs_publisher_did"] for r in at_time}
    assert all(r["t_min"] <= t <= r["t_max"] for r in at_time)

    far = _rows(await api.get(SIA, params={"POS": "CIRCLE 200 40 0.5"}))
    assert far == []


async def test_every_row_links_to_datalink(api, image_server, visit_image):
    rows = _rows(await api.get(SIA, params={"ID": visit_image["obs_publisher_did"]}))
    assert len(rows) == 1
    url = rows[0]["access_url"]
    assert url.startswith(f"{image_server.api}/datalink/links?ID=")
    assert parse_qs(urlparse(url).query)["ID"] == [visit_image["obs_publisher_did"]]
    assert rows[0]["access_format"] == "application/x-votable+xml;content=datalink"


async def test_exact_and_range_parameters(api, obscore_rows, visit_image):
    for param, column in [
        ("COLLECTION", "obs_collection"),
        ("INSTRUMENT", "instrument_name"),
        ("FACILITY", "facility_name"),
        ("DPTYPE", "dataproduct_type"),
        ("TARGET", "target_name"),
        ("FORMAT", "access_format"),
    ]:
        value = visit_image[column]
        rows = _rows(await api.get(SIA, params={param: value, "MAXREC": "10000"}))
        assert len(rows) == sum(1 for r in obscore_rows if r[column] == value), param
        assert rows, param
    assert _rows(await api.get(SIA, params={"FORMAT": "image/png"})) == []
    assert _rows(await api.get(SIA, params={"TARGET": "no such target"})) == []
    exptime = visit_image["t_exptime"]
    rows = _rows(await api.get(SIA, params={"EXPTIME": f"{exptime - 1} {exptime + 1}"}))
    assert rows and all(abs(r["t_exptime"] - exptime) <= 1 for r in rows)
    assert _rows(await api.get(SIA, params={"EXPTIME": "1000 +Inf"})) == []
    fov = visit_image["s_fov"]
    assert _rows(await api.get(SIA, params={"FOV": f"{fov * 2} +Inf"})) == []
    res = visit_image["s_resolution"]
    rows = _rows(await api.get(SIA, params={"SPATRES": f"0 {res}", "MAXREC": "10000"}))
    assert len(rows) == sum(
        1 for r in obscore_rows if r["s_resolution"] is not None and r["s_resolution"] <= res
    )
    # Unpolarised images have no polarisation states to match.
    assert _rows(await api.get(SIA, params={"POL": "Q"})) == []


async def test_maxrec_and_overflow(api, obscore_rows):
    response = await api.get(SIA, params={"MAXREC": "3"})
    assert len(_rows(response)) == 3
    assert 'name="QUERY_STATUS" value="OVERFLOW"' in response.text
    everything = await api.get(SIA, params={"MAXREC": str(len(obscore_rows))})
    assert len(_rows(everything)) == len(obscore_rows)
    assert "OVERFLOW" not in everything.text
    metadata_only = await api.get(SIA, params={"MAXREC": "0"})
    assert _rows(metadata_only) == []
    assert "obs_publisher_did" in metadata_only.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"POS": "CIRCLE 400 0 1"}, "outside [0, 360]"),
        ({"POS": "POLYGON 10 10 11 11 11 10 10 11"}, "self-intersecting"),
        ({"POS": "POLYGON 10 10 11 10"}, "at least 3 vertices"),
        ({"BAND": "500 600"}, "metres"),
        ({"TIME": "yesterday"}, "not a number"),
        ({"CALIB": "9"}, "CALIB must be"),
        ({"MAXREC": "x"}, "MAXREC must be an integer"),
    ],
)
async def test_bad_input_is_a_dali_error(api, params, message):
    response = await api.get(SIA, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    assert 'name="QUERY_STATUS" value="ERROR"' in response.text
    assert message in response.text


async def test_auth(api, image_server, tokens):
    anonymous = await api.get(SIA, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.headers["www-authenticate"]
    carol = await api.get(SIA, headers={"Authorization": f"Bearer {tokens['carol']}"})
    assert carol.status_code == 403
    assert "custom:image:read" in carol.text
    narrow = await api.get(SIA, headers={"Authorization": f"Bearer {tokens['tap_only']}"})
    assert narrow.status_code == 403
    for path in ("capabilities", "availability"):
        open_ = await api.get(f"/services/api/sia/{path}", headers={"Authorization": ""})
        assert open_.status_code == 200, path
    caps = (await api.get("/services/api/sia/capabilities")).text
    assert 'standardID="ivo://ivoa.net/std/SIA#query-2.0"' in caps
    assert f"{image_server.api}/sia/query" in caps


def test_pyvo_sia2(image_server, tokens, visit_image):
    from pyvo.dal import SIA2Service

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['alice']}"
    service = SIA2Service(f"{image_server.api}/sia", session=session)
    ra, dec = visit_image["s_ra"], visit_image["s_dec"]
    results = service.search(pos=(ra, dec, 0.001), band=(4e-7, 1e-6), calib_level=2)
    assert len(results) >= 1
    record = next(r for r in results if r["obs_publisher_did"] == visit_image["obs_publisher_did"])
    assert math.isclose(record.s_ra.to_value("deg"), ra)
    assert record.access_url.startswith(f"{image_server.api}/datalink/links")
    # ObsCore 1.1: access_estsize is the real size (kB) of the file behind the #this link.
    path = image_server.settings.dataset_dir / "butler"
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(path))
    ref = butler.get_dataset(visit_image["lsst_dataset_id"])
    assert record["access_estsize"] == -(-butler.getURI(ref).size() // 1024)
    assert results.fieldname_with_ucd("phys.size;meta.file") == "access_estsize"
    assert results.getdesc("access_estsize").unit == "kbyte"
    utypes = {name: results.getdesc(name).utype for name in results.fieldnames}
    assert utypes["obs_collection"] == "obscore:DataID.Collection"
    assert utypes["pol_states"] == "obscore:Char.PolarizationAxis.stateList"


def test_stilts_votlint_and_cone_sia2(image_server, tokens, visit_image, tmp_path):
    token = tokens["alice"]
    position = f"CIRCLE {visit_image['s_ra']} {visit_image['s_dec']} 0.05"
    for name, params in [
        ("overflow", {"POS": position, "MAXREC": 2}),  # rows and the trailing OVERFLOW INFO
        ("error", {"POS": "CIRCLE 400 0 1"}),
    ]:
        response = requests.get(
            f"{image_server.api}/sia/query",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        path = tmp_path / f"sia-{name}.xml"
        path.write_bytes(response.content)
        assert votlint(path) == "", name  # no error and no warning

    out = tmp_path / "out.csv"
    cone = stilts(
        "cone",
        "servicetype=sia2",
        f"serviceurl={image_server.api}/sia/query",
        f"lon={visit_image['s_ra']}",
        f"lat={visit_image['s_dec']}",
        "radius=0.001",
        f"out={out}",
        "ofmt=csv",
        token=token,
    )
    assert cone.returncode == 0, cone.stdout + cone.stderr
    assert visit_image["obs_publisher_did"] in out.read_text()


def test_mounted_in_the_hub_managed_api_service(test_hub):
    """The services are plugins of the API service the hub runs (here without a data preview)."""
    for service in ("sia", "datalink", "soda", "scs"):
        caps = requests.get(f"{test_hub.api_service_url}/{service}/capabilities", timeout=30)
        assert caps.status_code == 200, service
        assert f"{test_hub.settings.public_url}/services/api/{service}/" in caps.text
    availability = requests.get(f"{test_hub.api_service_url}/sia/availability", timeout=30)
    assert "<vosi:available>false</vosi:available>" in availability.text
    assert "not built" in availability.text
    missing = requests.get(
        f"{test_hub.api_service_url}/sia/query",
        headers={"Authorization": f"Bearer {test_hub.token_for('alice')}"},
        timeout=30,
    )
    # The catalog there (TAP's sample, held open by TAP) has no ivoa.ObsCore: a clear 503.
    assert missing.status_code == 503
    assert "The ObsCore table cannot be read" in missing.text
