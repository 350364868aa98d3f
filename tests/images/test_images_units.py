"""Pieces without servers: coadd progenitors, URL signing, the VOTable writer, HiPS PNG tiles."""

from __future__ import annotations

import io
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from astropy.io.votable import parse_single_table

from sciplat.services.common.errors import PermissionDeniedError
from sciplat.services.hips.build import fits_to_png
from sciplat.services.images.backend import ImageBackend
from sciplat.services.images.butler import ImageRepository
from sciplat.services.images.datalink import _coadd_inputs
from sciplat.services.images.obscore import ObsCoreStore
from sciplat.services.images.signing import UrlSigner
from sciplat.services.images.votable import Field, votable_document


def _square(ra: float, dec: float, half: float) -> str:
    corners = [(ra - half, dec - half), (ra + half, dec - half), (ra + half, dec + half)]
    corners.append((ra - half, dec + half))
    return "POLYGON ICRS " + " ".join(f"{a} {d}" for a, d in corners)


def test_coadd_progenitors_are_overlapping_visit_images_of_its_band(tmp_path: Path) -> None:
    db = tmp_path / "catalog.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA ivoa")
    con.execute(
        "CREATE TABLE ivoa.ObsCore (obs_publisher_did VARCHAR, obs_id VARCHAR, "
        "calib_level SMALLINT, em_min DOUBLE, em_max DOUBLE, s_region VARCHAR)"
    )
    g, r = (4.0e-7, 5.52e-7), (5.52e-7, 6.91e-7)
    rows = [
        ("ivo://sciplat/dp?coadd", "coadd", 3, *g, _square(62.0, -37.0, 0.1)),
        ("ivo://sciplat/dp?in1", "v1", 2, *g, _square(62.05, -37.0, 0.05)),
        ("ivo://sciplat/dp?in2", "v2", 2, *g, _square(61.95, -37.05, 0.05)),
        ("ivo://sciplat/dp?other-band", "v3", 2, *r, _square(62.0, -37.0, 0.05)),
        ("ivo://sciplat/dp?far", "v4", 2, *g, _square(70.0, -37.0, 0.05)),
        ("ivo://sciplat/dp?raw", "v5", 1, *g, _square(62.0, -37.0, 0.05)),
    ]
    con.executemany("INSERT INTO ivoa.ObsCore VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()
    backend = ImageBackend(
        dataset_dir=tmp_path,
        public_url="https://dac.example/services/api",
        repo=ImageRepository(tmp_path / "butler"),
        obscore=ObsCoreStore(db),
        signer=UrlSigner(tmp_path / "key"),
    )
    links = _coadd_inputs(backend, "ivo://sciplat/dp?coadd")
    assert {link.description.split()[-1] for link in links} == {"v1", "v2"}
    assert all(link.semantics == "#progenitor" for link in links)
    assert links[0].access_url.startswith("https://dac.example/services/api/datalink/links?ID=")
    assert _coadd_inputs(backend, "ivo://sciplat/dp?in1") == []  # not a coadd


def test_signed_urls(tmp_path: Path) -> None:
    signer = UrlSigner(tmp_path / "state" / "key", lifetime=60)
    query = signer.sign("ivo://x?1", "file", "alice")
    signer.verify("ivo://x?1", "file", "alice", query["expires"], query["signature"])
    assert (tmp_path / "state" / "key").stat().st_mode & 0o777 == 0o600
    for dataset, plane, user in [("ivo://x?2", "file", "alice"), ("ivo://x?1", "mask", "alice")]:
        with pytest.raises(PermissionDeniedError, match="signature"):
            signer.verify(dataset, plane, user, query["expires"], query["signature"])
    with pytest.raises(PermissionDeniedError, match="signature"):
        signer.verify("ivo://x?1", "file", "bob", query["expires"], query["signature"])
    # Another process with the same key file accepts the link; a new key does not.
    assert UrlSigner(tmp_path / "state" / "key").key == signer.key
    other = UrlSigner(tmp_path / "other")
    with pytest.raises(PermissionDeniedError):
        other.verify("ivo://x?1", "file", "alice", query["expires"], query["signature"])
    old = UrlSigner(tmp_path / "state" / "key", lifetime=-10)
    stale = old.sign("ivo://x?1", "file", "alice")
    assert int(stale["expires"]) < time.time()
    with pytest.raises(PermissionDeniedError, match="expired"):
        signer.verify("ivo://x?1", "file", "alice", stale["expires"], stale["signature"])


def test_votable_writer_nulls_escaping_and_overflow() -> None:
    fields = [
        Field("id", "long"),
        Field("name", "char"),
        Field("x", "double"),
        Field("ok", "boolean"),
    ]
    rows = [(1, "a<b & 'c'", 1.5, True), (2, None, float("nan"), False), (3, "z", None, None)]
    text = "".join(
        votable_document(
            fields, rows, infos={"QUERY_STATUS": "OK"}, trailing_infos={"QUERY_STATUS": "OVERFLOW"}
        )
    )
    table = parse_single_table(io.BytesIO(text.encode())).to_table()
    assert list(table["id"]) == [1, 2, 3]
    assert table["name"][0] == "a<b & 'c'"
    assert table["x"].mask.tolist() == [False, True, True]
    assert text.index('value="OK"') < text.index("<TABLE>") < text.index('value="OVERFLOW"')


def test_png_tiles_flip_rows_and_are_transparent_outside_the_data() -> None:
    data = np.full((4, 4), np.nan, dtype=np.float32)
    data[0, :] = 10.0  # bottom row in FITS
    data[1, :] = 0.0
    rgba = fits_to_png(data, (0.0, 10.0))
    assert rgba.shape == (4, 4, 4) and rgba.dtype == np.uint8
    assert (rgba[-1, :, 0] == 255).all()  # FITS bottom row is the PNG's last row, white
    assert (rgba[-2, :, 0] == 0).all() and (rgba[-2, :, 3] == 255).all()
    assert (rgba[:2, :, 3] == 0).all()  # NaN is transparent


def test_catalog_connections_coexist_with_tap(tmp_path: Path) -> None:
    """DuckDB refuses a second connection with another configuration in one process."""
    from sciplat.services.scs.cone import ConeCatalog
    from sciplat.services.tap.storage.duckdb import DuckDBCatalog

    db = tmp_path / "catalog.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA ivoa; CREATE SCHEMA dp1")
    con.execute("CREATE TABLE ivoa.ObsCore AS SELECT 'ivo://sciplat/dp?x' AS obs_publisher_did")
    con.execute(
        'CREATE TABLE dp1."Object" AS SELECT 1::BIGINT AS objectId, 10.0 AS coord_ra, '
        "20.0 AS coord_dec"
    )
    con.close()
    tap = DuckDBCatalog(db)
    try:
        assert len(ObsCoreStore(db).snapshot()[1]) == 1
        assert len(ConeCatalog(db).search(10.0, 20.0, 0.1, 3, 10).rows) == 1
    finally:
        tap.close()
