"""DataLink {links}: every link of a dataset, signed streamed downloads, errors, validators."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlparse

import pytest
import requests
from astropy.io import fits
from astropy.io.votable import parse
from imagetools import stilts, votlint

pytestmark = pytest.mark.integration

LINKS = "/services/api/datalink/links"


def _links(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-votable+xml")
    table = parse(io.BytesIO(response.content)).get_first_table().to_table(use_names_over_ids=True)
    return [
        {
            k: (None if hasattr(v, "mask") and v.mask else v)
            for k, v in zip(table.colnames, row, strict=True)
        }
        for row in table
    ]


def _butler_path(image_dataset, did: str):
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(image_dataset / "butler"))
    try:
        return butler.getURI(butler.get_dataset(did.split("?", 1)[1])).ospath
    finally:
        butler.close()


async def test_links_of_a_visit_image(api, image_server, image_dataset, visit_image):
    did = visit_image["obs_publisher_did"]
    links = _links(await api.get(LINKS, params={"ID": did}))
    by_semantics: dict[str, list[dict]] = {}
    for link in links:
        assert link["ID"] == did
        by_semantics.setdefault(link["semantics"], []).append(link)
    assert set(by_semantics) >= {"#this", "#auxiliary", "#cutout", "#progenitor", "#bias", "#flat"}
    this = by_semantics["#this"][0]
    assert this["content_type"] == "application/fits"
    assert this["access_url"].startswith(f"{image_server.api}/datalink/files/")
    assert {a["description"].split()[1] for a in by_semantics["#auxiliary"]} == {"mask", "variance"}
    assert by_semantics["#cutout"][0]["service_def"] == "cutout"
    assert "raw exposure" in by_semantics["#progenitor"][0]["description"]

    # #this streams exactly the Butler's file.
    path = _butler_path(image_dataset, did)
    async with api.stream("GET", this["access_url"], headers={"Authorization": ""}) as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == this["content_length"]
        digest = hashlib.sha256()
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(Path(path).read_bytes()).hexdigest()

    # An auxiliary plane is a valid FITS file with just that plane.
    variance = next(a for a in by_semantics["#auxiliary"] if "variance" in a["description"])
    body = (await api.get(variance["access_url"])).content
    assert len(body) == variance["content_length"]
    with fits.open(io.BytesIO(body)) as plane, fits.open(path) as full:
        assert [h.name for h in plane] == ["PRIMARY", "VARIANCE"]
        assert (plane["VARIANCE"].data == full["VARIANCE"].data).all()


async def test_service_descriptor_and_calibration_links(api, image_server, obscore_rows):
    raw = next(
        r for r in obscore_rows if r["calib_level"] == 1 and "raw" in str(r["dataproduct_subtype"])
    )
    response = await api.get(LINKS, params={"ID": raw["obs_publisher_did"]})
    links = _links(response)
    semantics = {link["semantics"] for link in links}
    assert "#bias" in semantics and "#flat" in semantics
    assert "#progenitor" not in semantics  # a raw has no progenitor
    assert 'utype="adhoc:service" ID="cutout"' in response.text
    assert f'value="{image_server.api}/soda/sync"' in response.text
    assert 'value="ivo://ivoa.net/std/SODA#sync-1.0"' in response.text


async def test_unknown_ids_and_path_tricks_get_error_rows(api, visit_image):
    ids = [
        "ivo://sciplat/dp?00000000-0000-0000-0000-000000000000",
        "ivo://sciplat/dp?../../../etc/passwd",
        "/etc/passwd",
        visit_image["obs_publisher_did"],
    ]
    links = _links(await api.get(LINKS, params=[("ID", i) for i in ids]))
    errors = {link["ID"]: link["error_message"] for link in links if link["error_message"]}
    assert set(errors) == set(ids[:3])
    assert all(message.startswith("NotFoundFault") for message in errors.values())
    assert any(link["ID"] == ids[3] and link["semantics"] == "#this" for link in links)
    missing = await api.get(LINKS)
    assert missing.status_code == 400
    assert "ID is required" in missing.text


async def test_signed_urls_cannot_be_altered(api, visit_image, obscore_rows):
    links = _links(await api.get(LINKS, params={"ID": visit_image["obs_publisher_did"]}))
    url = next(link["access_url"] for link in links if link["semantics"] == "#this")
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    base = f"{parsed.scheme}://{parsed.netloc}"

    def variant(path: str | None = None, **changes: str) -> str:
        return f"{base}{path or parsed.path}?{urlencode({**query, **changes})}"

    other = next(
        r for r in obscore_rows if r["obs_publisher_did"] != visit_image["obs_publisher_did"]
    )
    other_uuid = other["obs_publisher_did"].split("?", 1)[1]
    for bad in (
        variant(signature="0" * 64),
        variant(plane="variance"),
        variant(user="bob"),
        variant(expires=str(int(query["expires"]) + 3600)),
        variant(path=parsed.path.rsplit("/", 1)[0] + "/" + other_uuid),
    ):
        response = await api.get(bad, headers={"Authorization": ""})
        assert response.status_code == 403, bad
    expired = variant(expires="1000")
    assert (await api.get(expired)).status_code == 403
    tricks = await api.get(
        f"{base}{parsed.path.rsplit('/', 1)[0]}/..%2F..%2Fetc%2Fpasswd?{parsed.query}"
    )
    assert tricks.status_code == 404


async def test_auth(api, tokens, visit_image):
    params = {"ID": visit_image["obs_publisher_did"]}
    assert (await api.get(LINKS, params=params, headers={"Authorization": ""})).status_code == 401
    carol = await api.get(
        LINKS, params=params, headers={"Authorization": f"Bearer {tokens['carol']}"}
    )
    assert carol.status_code == 403


def test_pyvo_datalink_and_datalinklint(image_server, tokens, visit_image, tmp_path):
    from pyvo.dal.adhoc import DatalinkResults

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['alice']}"
    url = f"{image_server.api}/datalink/links?{urlencode({'ID': visit_image['obs_publisher_did']})}"
    results = DatalinkResults.from_result_url(url, session=session)
    this = next(r for r in results if r.semantics == "#this")
    assert this.content_type == "application/fits"
    descriptor = results.get_adhocservice_by_ivoid("ivo://ivoa.net/std/SODA#sync-1.0")
    params = {param.name: param.value for param in descriptor.params}
    assert params["accessURL"] == f"{image_server.api}/soda/sync"

    # Every kind of row in one document: a visit image's links and an unknown ID's error row.
    unknown = "ivo://sciplat/dp?00000000-0000-0000-0000-000000000000"
    document = tmp_path / "links.xml"
    document.write_bytes(session.get(url + f"&ID={quote(unknown)}", timeout=60).content)
    lint = stilts("datalinklint", f"votable={document}")
    report = lint.stdout + lint.stderr
    assert lint.returncode == 0, report
    assert "Totals: Errors: 0; Warnings: 0;" in report, report
    assert "I-SDDO-1 Service descriptor cutout" in report
    assert votlint(document) == ""  # no error and no warning
