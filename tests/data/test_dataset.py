"""The tiny data preview: Butler repo, images, catalogs, DuckDB, TAP_SCHEMA, ObsCore."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from lsst.daf.butler import Butler

from sciplat.pipelines import repo
from sciplat.pipelines.butler_io import MASK_PLANES, SimExposure
from sciplat.pipelines.commands import data as data_cli
from sciplat.pipelines.database import HEALPIX_COLUMN, TABLES, healpix29
from sciplat.pipelines.dataset import build_dataset, load_info
from sciplat.pipelines.schema import load_felis
from sciplat.pipelines.sim.skymodel import make_sky
from sciplat.pipelines.sim.survey import INSTRUMENT, SIZES, make_survey
from sciplat.services.images.catalogdb import connect_catalog  # the services' DuckDB config


@pytest.fixture(scope="module")
def info(tiny_dataset: Path):
    found = load_info(tiny_dataset)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def butler(tiny_dataset: Path) -> Butler:
    return Butler.from_config(str(tiny_dataset / "butler"), collections=repo.DEFAULT_COLLECTION)


@pytest.fixture(scope="module")
def db(tiny_dataset: Path):
    con = connect_catalog(tiny_dataset / "catalog" / "catalog.duckdb")
    yield con
    con.close()


@pytest.fixture(scope="module")
def survey():
    return make_survey(SIZES["tiny"], 42)


def test_dataset_json_describes_the_build(tiny_dataset: Path, info, survey) -> None:
    assert (info.size, info.seed, info.format_version) == ("tiny", 42, 1)
    assert info.counts["images"] == 2 * len(survey.visits) * len(survey.detectors) + len(
        survey.detectors
    ) * (1 + len(survey.bands))
    assert info.counts["dp1.Object"] > 500
    for rel in info.paths.values():
        if rel != "hips":
            assert (tiny_dataset / rel).exists(), rel


def test_second_build_finds_the_data(tiny_dataset: Path, info) -> None:
    again = build_dataset(tiny_dataset, size="tiny", seed=42, progress=False)
    assert again == info
    result = CliRunner().invoke(
        data_cli, ["build", "--size", "tiny", "--data-dir", str(tiny_dataset.parent)]
    )
    assert result.exit_code == 0, result.output
    assert "already built" in result.output
    result = CliRunner().invoke(data_cli, ["info", "--data-dir", str(tiny_dataset.parent)])
    assert result.exit_code == 0, result.output
    assert '"size": "tiny"' in result.output


def test_butler_has_every_image_per_visit_and_detector(butler: Butler, survey) -> None:
    expected = {(v.id, d.id) for v in survey.visits for d in survey.detectors}
    raws = butler.query_datasets("raw", collections=repo.RAW_RUN, instrument=INSTRUMENT)
    images = butler.query_datasets("visit_image", collections=repo.DP_RUN, instrument=INSTRUMENT)
    assert sorted((r.dataId["exposure"], r.dataId["detector"]) for r in raws) == sorted(expected)
    assert sorted((r.dataId["visit"], r.dataId["detector"]) for r in images) == sorted(expected)
    band = {v.id: v.band for v in survey.visits}
    for ref in images:
        assert ref.dataId["band"] == band[ref.dataId["visit"]]
    # Calibrations are certified in the calibration collection.
    certified = {
        (a.ref.datasetType.name, a.ref.dataId["detector"])
        for kind in ("bias", "flat")
        for a in butler.registry.queryDatasetAssociations(kind, collections=[repo.CALIB_COLLECTION])
    }
    assert {("bias", d.id) for d in survey.detectors} <= certified
    assert {("flat", d.id) for d in survey.detectors} <= certified
    assert butler.query_datasets("ref_cat", collections=repo.REFCAT_RUN)
    summary = butler.get("truth_summary", collections=repo.TRUTH_RUN)
    assert "flux_r" in summary.colnames and str(summary["ra"].unit or "deg")


def test_butler_get_returns_pixels_wcs_metadata(butler: Butler, survey) -> None:
    visit, det = survey.visits[0], survey.detectors[0]
    exp = butler.get("visit_image", instrument=INSTRUMENT, visit=visit.id, detector=det.id)
    assert isinstance(exp, SimExposure)
    assert exp.image.shape == exp.variance.shape == exp.mask.shape == (det.npix, det.npix)
    assert exp.image.dtype == np.float32 and exp.image.dtype.byteorder in ("=", "<")
    assert (exp.variance > 0).mean() > 0.99
    assert exp.mask_of("EDGE")[0].all() and not exp.mask_of("EDGE")[det.npix // 2, det.npix // 2]
    assert exp.mask_of("BAD").any()  # the dead column
    assert exp.metadata["BAND"] == visit.band and exp.metadata["BUNIT"] == "nJy"
    ra, dec = exp.wcs.wcs_pix2world([[det.npix / 2, det.npix / 2]], 0)[0]
    assert abs(ra - visit.ra) < 0.2 and abs(dec - visit.dec) < 0.2
    # Background-subtracted: the median is near zero and the noise matches the variance plane.
    good = ~exp.mask_of(*MASK_PLANES)
    assert abs(np.median(exp.image[good])) < 0.2 * np.median(np.sqrt(exp.variance[good]))
    wcs = butler.get("visit_image.wcs", instrument=INSTRUMENT, visit=visit.id, detector=det.id)
    assert np.allclose(wcs.wcs.crval, exp.wcs.wcs.crval)
    raw = butler.get("raw", instrument=INSTRUMENT, exposure=visit.id, detector=det.id)
    assert raw.image.dtype.kind == "i" and raw.variance is None
    assert 800 < np.median(raw.image) < 3000  # bias level + sky, in ADU


def test_truth_star_lands_on_a_peak(butler: Butler, survey) -> None:
    """A bright truth star, moved to the visit's epoch, projects onto a detectable peak."""
    sky = make_sky(survey)
    visit, det = survey.visits[-1], survey.detectors[1]
    exp = butler.get("visit_image", instrument=INSTRUMENT, visit=visit.id, detector=det.id)
    ra, dec = sky.star_positions(visit.mjd_mid)
    x, y = exp.wcs.wcs_world2pix(ra, dec, 0)
    mag = sky.stars[f"mag_{visit.band}"]
    n = det.npix
    ok = (x > 20) & (y > 20) & (x < n - 20) & (y < n - 20) & (mag > 18) & (mag < 21)
    ok &= ~sky.stars["is_variable"]
    candidates = np.flatnonzero(ok)
    assert len(candidates) >= 3
    for i in candidates[:5]:
        ix, iy = round(float(x[i])), round(float(y[i]))
        cut = exp.image[iy - 3 : iy + 4, ix - 3 : ix + 4]
        py, px = np.unravel_index(np.argmax(cut), cut.shape)
        assert abs(px - 3) <= 1 and abs(py - 3) <= 1, (i, px, py)
        snr = cut.max() / math.sqrt(exp.variance[iy, ix])
        assert snr > 10


def test_catalog_counts_match_parquet_and_dataset_json(tiny_dataset: Path, db, info) -> None:
    parquet = tiny_dataset / "catalog" / "parquet"
    for name, spec in TABLES.items():
        rows = db.execute(f'SELECT count(*) FROM {spec.schema}."{spec.name}"').fetchone()[0]
        assert rows == info.counts[name], name
        base = parquet / spec.schema / spec.name
        if spec.spatial:
            meta = pq.read_metadata(base / "dataset" / "_metadata")
            assert meta.num_rows == rows, name
            props = dict(
                line.split("=", 1) for line in (base / "properties").read_text().splitlines()
            )
            assert int(props["hats_nrows"]) == rows
            assert props["hats_col_ra"] == spec.ra
            parts = (base / "partition_info.csv").read_text().splitlines()[1:]
            for line in parts:
                order, pixel = map(int, line.split(","))
                d = (pixel // 10_000) * 10_000
                assert (
                    base / "dataset" / f"Norder={order}" / f"Dir={d}" / f"Npix={pixel}.parquet"
                ).exists()
        else:
            assert pq.read_metadata(base / f"{spec.name}.parquet").num_rows == rows
    nonempty = ["dp1.Object", "dp1.Source", "dp1.ForcedSource", "dp1.Visit", "dp1.CcdVisit",
                "dp1.DiaSource", "dp1.DiaObject", "truth.TruthSummary", "ivoa.ObsCore"]  # fmt: skip
    for name in nonempty:
        assert info.counts[name] > 0, name


def test_healpix_index_is_the_position_and_sorted(db) -> None:
    rows = db.execute(f"SELECT {HEALPIX_COLUMN}, coord_ra, coord_dec FROM dp1.Object").fetchnumpy()
    assert np.array_equal(rows[HEALPIX_COLUMN], healpix29(rows["coord_ra"], rows["coord_dec"]))
    assert np.all(np.diff(rows[HEALPIX_COLUMN]) >= 0)


def test_tap_schema_matches_tables_units_ucds(db) -> None:
    tap_tables = {r[0] for r in db.execute("SELECT table_name FROM tap_schema.tables").fetchall()}
    for spec in TABLES.values():
        assert spec.qualified in tap_tables
        felis_cols = {t.name: t for t in load_felis(spec.felis).tables}[spec.name].columns
        tap = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT column_name, unit, ucd, datatype, description, principal, std, "
                "column_index, arraysize, xtype, indexed FROM tap_schema.columns "
                "WHERE table_name = ?",
                [spec.qualified],
            ).fetchall()
        }
        actual = [
            r[0]
            for r in db.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?",
                [spec.schema, spec.name],
            ).fetchall()
        ]
        assert set(actual) - {HEALPIX_COLUMN} == set(tap), spec.qualified
        for column in felis_cols:
            unit, ucd, datatype, description = tap[column.name][:4]
            assert (unit or None) == (column.ivoa_unit or None), (spec.qualified, column.name)
            assert ucd == column.ivoa_ucd
            assert description == column.description
            assert datatype in {"boolean", "short", "int", "long", "float", "double", "char",
                                "unicodeChar", "timestamp"}  # fmt: skip
    assert {"tap_schema.schemas", "tap_schema.tables", "tap_schema.columns", "tap_schema.keys",
            "tap_schema.key_columns", "ivoa.ObsCore"} <= {t.lower() if t.startswith("TAP") else t
                                                          for t in tap_tables}  # fmt: skip
    unit = db.execute(
        "SELECT unit, ucd FROM tap_schema.columns "
        "WHERE table_name = 'dp1.Object' AND column_name = 'r_psfFlux'"
    ).fetchone()
    assert unit == ("nJy", None)
    ucd = db.execute(
        "SELECT ucd FROM tap_schema.columns "
        "WHERE table_name = 'dp1.Object' AND column_name = 'coord_ra'"
    ).fetchone()
    assert ucd == ("pos.eq.ra;meta.main",)


def test_catalog_is_realistic(db, survey) -> None:
    # Stars are point-like and galaxies mostly extended at bright magnitudes.
    rows = db.execute(
        "SELECT t.truth_type, avg(o.refExtendedness) FROM truth.MatchesTruth m "
        "JOIN dp1.Object o ON o.objectId = m.match_objectId JOIN truth.TruthSummary t "
        "ON t.id = m.id WHERE m.is_good_match AND o.i_psfMag < 23 GROUP BY 1"
    ).fetchall()
    ext = dict(rows)
    assert ext["star"] < 0.2 and ext["galaxy"] > 0.7
    # Blends: parents are not primary and have children that point to them.
    parents = db.execute(
        "SELECT p.objectId, p.deblend_nChild, count(c.objectId) FROM dp1.Object p "
        "JOIN dp1.Object c ON c.parentObjectId = p.objectId "
        "WHERE NOT p.detect_isPrimary GROUP BY 1, 2"
    ).fetchall()
    assert parents and all(n == k for _, n, k in parents)
    # Magnitudes follow fluxes.
    mag, flux = db.execute(
        "SELECT r_psfMag, r_psfFlux FROM dp1.Object WHERE r_psfFlux > 1000 LIMIT 1"
    ).fetchone()
    assert mag == pytest.approx(-2.5 * math.log10(flux) + 31.4, abs=1e-4)
    # Light curves: every ForcedSource row names a visit of the survey.
    visits = {v.id for v in survey.visits}
    fs_visits = {r[0] for r in db.execute("SELECT DISTINCT visit FROM dp1.ForcedSource").fetchall()}
    assert fs_visits <= visits and len(fs_visits) == len(visits)


def test_transients_and_movers_only_in_later_visits(db, survey) -> None:
    t0, t1 = survey.mjd_range
    middle = t0 + 0.5 * (t1 - t0)
    first = db.execute(
        "SELECT min(d.midpointMjdTai) FROM dp1.DiaSource d WHERE d.ssObjectId > 0"
    ).fetchone()[0]
    assert first is not None and first > middle
    transient_first = db.execute("SELECT min(mjd_explosion) FROM truth.Transient").fetchone()[0]
    assert transient_first > middle
    # The DiaObjects of transients have no detections before explosion.
    early = db.execute(
        "SELECT count(*) FROM dp1.DiaSource s JOIN dp1.DiaObject o USING (diaObjectId) "
        "JOIN truth.Transient t ON abs(t.ra - o.ra) < 2e-4 AND abs(t.dec - o.dec) < 2e-4 "
        "WHERE s.midpointMjdTai < t.mjd_explosion"
    ).fetchone()[0]
    assert early == 0


def test_obscore_describes_every_image(butler: Butler, db, info) -> None:
    rows = db.execute(
        "SELECT obs_publisher_did, lsst_dataset_id, lsst_dataset_type, s_ra, s_dec, s_region, "
        "calib_level, t_min, t_max, em_min, em_max, access_url FROM ivoa.ObsCore"
    ).fetchall()
    assert len(rows) == info.counts["images"]
    kinds = {r[2] for r in rows}
    assert kinds == {"raw", "visit_image", "bias", "flat"}
    for did, uuid, kind, s_ra, s_dec, region, level, t_min, t_max, em_min, em_max, url in rows:
        assert did == f"ivo://sciplat/dp?{uuid}"
        assert "datalink" in url
        ref = butler.get_dataset(uuid)
        assert ref is not None and ref.datasetType.name == kind
        if kind in ("raw", "visit_image"):
            assert level == (1 if kind == "raw" else 2)
            assert t_min < t_max and em_min < em_max
            corners = [float(v) for v in re.findall(r"-?\d+\.\d+", region)]
            assert len(corners) == 8
            assert min(corners[0::2]) < s_ra < max(corners[0::2])
            assert min(corners[1::2]) < s_dec < max(corners[1::2])
