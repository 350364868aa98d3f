"""Simple Cone Search over Object, and the HiPS surveys."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table
from imagetools import stilts, votlint
from PIL import Image

from sciplat.services.images.catalogdb import connect_catalog

pytestmark = pytest.mark.integration

CONE = "/services/api/scs/cone"
HIPS = "/services/api/hips"


def _objects(image_dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    con = connect_catalog(image_dataset / "catalog" / "catalog.duckdb")
    try:
        rows = con.execute("SELECT objectId, coord_ra, coord_dec FROM dp1.Object").fetchnumpy()
    finally:
        con.close()
    return rows["objectId"], rows["coord_ra"], rows["coord_dec"]


def _within(ra, dec, ra0, dec0, radius) -> np.ndarray:
    r1, d1, r0, d0 = map(np.radians, (ra, dec, ra0, dec0))
    hav = np.sin((d1 - d0) / 2) ** 2 + np.cos(d1) * np.cos(d0) * np.sin((r1 - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(hav))) <= radius


async def test_cone_matches_brute_force(api, image_dataset):
    ids, ra, dec = _objects(image_dataset)
    ra0, dec0 = float(np.median(ra)), float(np.median(dec))
    for radius in (0.005, 0.02, 0.2):
        response = await api.get(CONE, params={"RA": ra0, "DEC": dec0, "SR": radius, "VERB": 1})
        assert response.status_code == 200
        table = parse_single_table(io.BytesIO(response.content)).to_table()
        assert table.colnames == ["objectId", "coord_ra", "coord_dec"]
        expected = set(ids[_within(ra, dec, ra0, dec0, radius)].tolist())
        assert set(table["objectId"].tolist()) == expected, radius
        assert expected, "the cone should not be empty"


async def test_verbosity_ucds_and_errors(api, image_dataset):
    _, ra, dec = _objects(image_dataset)
    params = {"RA": float(ra[0]), "DEC": float(dec[0]), "SR": 0.01}
    verbose = await api.get(CONE, params={**params, "VERB": 3})
    normal = await api.get(CONE, params=params)
    n3 = len(parse_single_table(io.BytesIO(verbose.content)).fields)
    n2 = len(parse_single_table(io.BytesIO(normal.content)).fields)
    assert n3 > n2 >= 3
    assert 'ucd="ID_MAIN"' in normal.text and 'ucd="POS_EQ_RA_MAIN"' in normal.text
    assert "_healpix_29" not in verbose.text
    for bad, message in [
        ({"RA": 10, "DEC": 95, "SR": 1}, "DEC 95 is outside"),
        ({"RA": 10, "DEC": 0, "SR": -1}, "SR -1 must not be negative"),
        ({"RA": "x", "DEC": 0, "SR": 1}, "RA must be a number"),
        ({"DEC": 0, "SR": 1}, "RA is required"),
        ({"RA": 1, "DEC": 0, "SR": 1, "VERB": 7}, "VERB must be 1, 2 or 3"),
        ({"RA": 1, "DEC": 0, "SR": 50}, "larger than"),
    ]:
        response = await api.get(CONE, params=bad)
        assert response.status_code == 200  # SCS 1.03 errors are VOTables with INFO Error
        assert '<INFO name="Error"' in response.text and message in response.text, bad


async def test_cone_auth(api, tokens):
    params = {"RA": 62, "DEC": -37, "SR": 0.01}
    assert (await api.get(CONE, params=params, headers={"Authorization": ""})).status_code == 401
    headers = {"Authorization": f"Bearer {tokens['image_only']}"}
    assert (await api.get(CONE, params=params, headers=headers)).status_code == 403


def test_stilts_cone(image_server, image_dataset, tokens, tmp_path):
    _, ra, dec = _objects(image_dataset)
    out = tmp_path / "out.csv"
    result = stilts(
        "cone",
        "servicetype=cone",
        f"serviceurl={image_server.api}/scs/cone?",
        f"lon={np.median(ra)}",
        f"lat={np.median(dec)}",
        "radius=0.02",
        "verb=1",
        f"out={out}",
        "ofmt=csv",
        token=tokens["alice"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = out.read_text().splitlines()
    assert "objectId" in lines[0] and len(lines) > 2

    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    for name, params in [
        ("full", {"RA": np.median(ra), "DEC": np.median(dec), "SR": 0.02, "VERB": 3}),
        ("error", {"RA": 1, "DEC": 100, "SR": 1}),
    ]:
        document = tmp_path / f"{name}.xml"
        document.write_bytes(
            httpx.get(f"{image_server.api}/scs/cone", params=params, headers=headers).content
        )
        assert votlint(document) == "", name  # no error and no warning


async def test_hips_survey(api, image_dataset):
    props = await api.get(f"{HIPS}/g/properties")
    assert props.status_code == 200
    values = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in props.text.splitlines())
    )
    assert values["hips_tile_format"] == "png fits"
    assert values["hips_frame"] == "equatorial"
    order = int(values["hips_order"])
    listing = await api.get(f"{HIPS}/list")
    assert "hips_service_url" in listing.text and "/hips/g" in listing.text

    tiles = sorted((image_dataset / "hips" / "g" / f"Norder{order}").glob("Dir*/Npix*.fits"))
    assert tiles
    tile = tiles[0]
    path = f"{HIPS}/g/Norder{order}/{tile.parent.name}/{tile.name}"
    response = await api.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fits"
    with fits.open(io.BytesIO(response.content)) as hdul:
        assert hdul[0].data.shape == (512, 512)
        assert np.isfinite(hdul[0].data).any()
    png = await api.get(path.replace(".fits", ".png"))
    assert png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (512, 512) and image.mode == "RGBA"
    for kind in ("png", "fits"):
        allsky = await api.get(f"{HIPS}/g/Norder3/Allsky.{kind}")
        assert allsky.status_code == 200, kind
    with fits.open(io.BytesIO(allsky.content)) as hdul:
        assert hdul[0].data.shape == (29 * 64, 27 * 64)


async def test_hips_refusals(api, tokens):
    for path in (
        f"{HIPS}/nope/properties",
        f"{HIPS}/g/Norder3/Dir0/Npix999999.png",
        f"{HIPS}/g/Norder9/Dir0/Npix2203502.png",  # wrong directory for the pixel
        f"{HIPS}/g/..%2F..%2Fbutler/butler.yaml",
        f"{HIPS}/g/Norder3/../../../catalog/catalog.duckdb",
        f"{HIPS}/g/index.html",
    ):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert b"DuckDB" not in response.content
    assert (await api.get(f"{HIPS}/g/properties", headers={"Authorization": ""})).status_code == 401
    headers = {"Authorization": f"Bearer {tokens['tap_only']}"}
    assert (await api.get(f"{HIPS}/g/properties", headers=headers)).status_code == 403


async def test_hips_catalogue(api, image_dataset):
    props = await api.get(f"{HIPS}/object/properties")
    assert props.status_code == 200
    values = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in props.text.splitlines())
    )
    assert values["dataproduct_type"] == "catalog" and values["hips_tile_format"] == "tsv"
    ids: list[str] = []
    root = image_dataset / "hips" / "object"
    for tile in sorted(root.glob("Norder*/Dir*/Npix*.tsv")):
        response = await api.get(f"{HIPS}/object/{tile.relative_to(root)}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/tab-separated-values")
        lines = response.text.splitlines()
        assert lines[0].split("\t")[:3] == ["objectId", "coord_ra", "coord_dec"]
        ids += [line.split("\t")[0] for line in lines[1:]]
    # Every object appears exactly once across the orders.
    assert len(ids) == len(set(ids)) == int(values["hips_cat_nrows"])
    objects, _, _ = _objects(image_dataset)
    assert set(map(int, ids)) == set(objects.tolist())
