"""The data release end to end on the tiny data preview: the DRP pipeline (with one corrupt raw
file), catalogs published into a private copy of the data preview and read back through the
TAP service's ADQL translator and DuckDB backend, coadds in ObsCore with their progenitors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler

from sciplat.pipelines.drp.release import ReleaseError, copy_repo, publish_release, run_release

BANDS = ("g", "r")


@pytest.fixture(scope="module")
def release(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("drp") / "dataset"
    copy_repo(tiny_dataset, root)
    butler = Butler.from_config(str(root / "butler"), collections="SimCam/defaults")
    visits = sorted(
        r.id for r in butler.query_dimension_records("visit") if r.physical_filter == "r_sim"
    )
    (bad,) = butler.query_datasets(
        "raw", where=f"exposure = {visits[0]} AND detector = 1", explain=False
    )
    path = Path(butler.getURI(bad).ospath)
    path.unlink()  # a hard link to the shared data set: replace it, never write through it
    path.write_bytes(b"SIMPLE  = not a FITS file")
    result = run_release(root / "butler", bands=BANDS, output_run="drp/1", progress=False)
    counts = publish_release(root, "drp/1")
    return {"root": root, "result": result, "counts": counts, "bad": (visits[0], 1)}


@pytest.fixture(scope="module")
def catalog(release: dict):
    from sciplat.services.tap.storage.duckdb import DuckDBCatalog

    cat = DuckDBCatalog(release["root"] / "catalog" / "catalog.duckdb")
    yield cat, cat.load_schema()
    cat.close()


def adql(catalog, query: str) -> list[dict]:
    from sciplat.services.tap.adql import translate

    cat, schema = catalog
    translation = translate(query, schema, cat.target())
    with cat.execute(translation.sql) as result:
        return [row for batch in result.batches for row in batch.to_pylist()]


def test_corrupt_raw_fails_alone_and_the_release_goes_on(release: dict) -> None:
    result = release["result"]
    visit, detector = release["bad"]
    assert [(f.task, f.data_id["exposure"], f.data_id["detector"]) for f in result.failed] == [
        ("isr", visit, detector)
    ]
    assert "raw" in result.failed[0].error
    # That detector's calibrate, writeSource and forcedPhot had nothing to work on.
    assert result.skipped == 3
    n_dv = 2 * 8 - 1  # 2 bands x 4 visits x 2 detectors, one lost
    assert len(result.seconds_by_task["calibrate"]) == n_dv
    assert len(result.seconds_by_task["makeCoadd"]) == len(BANDS)  # one patch per band
    assert len(result.seconds_by_task["forcedPhot"]) == n_dv


def test_catalogs_are_queryable_through_tap(release: dict, catalog) -> None:
    counts = release["counts"]
    for table in ("Object", "Source", "ForcedSource"):
        (row,) = adql(catalog, f"SELECT COUNT(*) AS n FROM dp1.{table}")
        assert row["n"] == counts[f"dp1.{table}"] > 0
    rows = adql(
        catalog,
        "SELECT TOP 5 objectId, coord_ra, coord_dec, r_psfFlux, g_psfMag, u_psfFlux, "
        "r_inputCount FROM dp1.Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
        "CIRCLE('ICRS', 62.0, -37.0, 0.05)) = 1 AND r_psfFlux > 10000 ORDER BY r_psfFlux DESC",
    )
    assert len(rows) == 5
    assert all(r["u_psfFlux"] is None for r in rows)  # no u data: NULL, not NaN
    assert all(1 <= r["r_inputCount"] <= 4 for r in rows)
    (visits,) = adql(catalog, "SELECT COUNT(DISTINCT visit) AS n FROM dp1.ForcedSource")
    assert visits["n"] == 8
    columns = adql(
        catalog,
        "SELECT column_name FROM TAP_SCHEMA.columns WHERE table_name = 'dp1.ForcedSource'",
    )
    assert {"psfDiffFlux", "objectId", "visit"} <= {c["column_name"] for c in columns}


def test_objects_match_truth(release: dict, catalog) -> None:
    rows = adql(
        catalog,
        "SELECT o.coord_ra, o.coord_dec, o.r_psfFlux, o.r_psfFluxErr, t.ra, t.dec, t.flux_r "
        "FROM dp1.Object AS o JOIN truth.MatchesTruth AS m ON m.match_objectId = o.objectId "
        "JOIN truth.TruthSummary AS t ON t.id = m.id WHERE m.is_good_match = 1 "
        "AND t.truth_type = 'star' AND t.is_variable = 0 AND t.mag_r < 22.5 "
        "AND o.r_psfFlux IS NOT NULL",
    )
    assert len(rows) > 20
    ra, dec, flux, err, t_ra, t_dec, t_flux = (
        np.array([r[k] for r in rows], dtype=float)
        for k in ("coord_ra", "coord_dec", "r_psfFlux", "r_psfFluxErr", "ra", "dec", "flux_r")
    )
    offset = np.hypot((ra - t_ra) * np.cos(np.radians(dec)), dec - t_dec) * 3600
    assert np.median(offset) < 0.08  # arcsec (stars move a little: proper motion)
    ratio = flux / t_flux
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    bright = err / flux < 0.01
    assert 1.4826 * np.median(np.abs(ratio[bright] - np.median(ratio[bright]))) < 0.03
    (complete,) = adql(
        catalog,
        "SELECT COUNT(*) AS n FROM truth.MatchesTruth AS m JOIN truth.TruthSummary AS t "
        "ON t.id = m.id WHERE t.mag_r < 22 AND t.truth_type = 'star'",
    )
    assert complete["n"] > 20


def _truth_ratio(catalog, column: str, truth_type: str, mag_limit: float) -> np.ndarray:
    rows = adql(
        catalog,
        f"SELECT o.{column} AS flux, t.flux_r FROM dp1.Object AS o JOIN truth.MatchesTruth AS m "
        "ON m.match_objectId = o.objectId JOIN truth.TruthSummary AS t ON t.id = m.id "
        f"WHERE m.is_good_match = 1 AND t.truth_type = '{truth_type}' AND t.is_variable = 0 "
        f"AND t.mag_r < {mag_limit} AND o.{column} IS NOT NULL AND o.detect_isIsolated = 1",
    )
    return np.array([r["flux"] / r["flux_r"] for r in rows])


def test_coadd_psf_and_model_fluxes_match_truth(release: dict, catalog) -> None:
    """One r visit-detector is missing, so the r coadd's inputs differ across the patch: PSF
    fluxes with the coadd PSF at each position match truth; cModel fluxes of galaxies are
    total fluxes (the PSF flux of a galaxy misses much of it)."""
    stars = _truth_ratio(catalog, "r_psfFlux", "star", 22.0)
    star_models = _truth_ratio(catalog, "r_cModelFlux", "star", 22.0)
    galaxies = _truth_ratio(catalog, "r_cModelFlux", "galaxy", 21.5)
    galaxy_psf = _truth_ratio(catalog, "r_psfFlux", "galaxy", 21.5)
    assert len(stars) > 20 and len(galaxies) > 10
    assert np.median(stars) == pytest.approx(1.0, abs=0.01)
    assert np.median(star_models) == pytest.approx(np.median(stars), abs=0.01)
    assert np.median(galaxies) == pytest.approx(1.0, abs=0.05)
    assert np.median(galaxy_psf) < np.median(galaxies) - 0.1


def test_forced_photometry_of_constant_stars_agrees_with_the_coadd(catalog) -> None:
    rows = adql(
        catalog,
        "SELECT f.psfFlux, f.psfDiffFlux, f.psfDiffFluxErr, t.mag_r FROM dp1.ForcedSource "
        "AS f JOIN truth.MatchesTruth AS m ON m.match_objectId = f.objectId JOIN "
        "truth.TruthSummary AS t ON t.id = m.id WHERE f.band = 'r' AND t.truth_type = 'star' "
        "AND t.is_variable = 0 AND m.is_good_match = 1 AND t.mag_r < 23 "
        "AND f.psfDiffFlux IS NOT NULL AND f.pixelFlags_edge = 0",
    )
    assert len(rows) > 30
    flux, diff, derr, mag = (
        np.array([r[k] for r in rows], dtype=float)
        for k in ("psfFlux", "psfDiffFlux", "psfDiffFluxErr", "mag_r")
    )
    # Visit and coadd fluxes agree within 3% (the coadd's PSF fluxes of 20-22 mag stars come
    # out ~2% brighter than the visits', which are calibrated to the reference catalog)...
    assert abs(np.median(diff / (flux - diff))) < 0.03
    # ...and where noise dominates (faint stars) the differences are noise.
    faint = mag > 22
    assert faint.sum() > 10
    pulls = diff[faint] / derr[faint]
    assert abs(np.median(pulls)) < 0.7
    assert np.median(np.abs(pulls)) < 1.3


def test_coadds_are_in_obscore_with_their_progenitors(release: dict, catalog) -> None:
    from sciplat.services.images.backend import ImageBackend
    from sciplat.services.images.butler import ImageRepository
    from sciplat.services.images.datalink import _coadd_inputs
    from sciplat.services.images.obscore import ObsCoreStore
    from sciplat.services.images.signing import UrlSigner

    coadds = adql(
        catalog,
        "SELECT obs_publisher_did, lsst_band, lsst_patch, s_region, t_exptime FROM ivoa.ObsCore "
        "WHERE calib_level = 3 ORDER BY lsst_band",
    )
    assert [c["lsst_band"] for c in coadds] == list(BANDS)
    assert release["counts"]["coadds"] == 2
    root = release["root"]
    backend = ImageBackend(
        dataset_dir=root,
        public_url="https://dac.example/services/api",
        repo=ImageRepository(root / "butler"),
        obscore=ObsCoreStore(root / "catalog" / "catalog.duckdb"),
        signer=UrlSigner(root / "key"),
    )
    links = _coadd_inputs(backend, coadds[1]["obs_publisher_did"])
    (n_r,) = adql(
        catalog,
        "SELECT COUNT(*) AS n FROM ivoa.ObsCore WHERE calib_level = 2 AND lsst_band = 'r'",
    )
    assert len(links) == n_r["n"] == 8  # every r visit image overlaps the patch
    assert all(link.semantics == "#progenitor" for link in links)
    butler = Butler.from_config(str(root / "butler"), collections="drp/1")
    (ref,) = butler.query_datasets("deep_coadd", where="band = 'r'", explain=False)
    coadd = butler.get(ref)
    assert coadd.metadata["NINPUTS"] == 7  # the corrupt raw's detector did not contribute
    assert coadds[1]["obs_publisher_did"].endswith(str(ref.id))


def test_publishing_again_is_idempotent(release: dict, catalog) -> None:
    before = adql(catalog, "SELECT objectId, r_psfFlux FROM dp1.Object ORDER BY objectId")
    again = publish_release(release["root"], "drp/1")
    assert again == release["counts"]
    from sciplat.services.tap.storage.duckdb import DuckDBCatalog

    fresh = DuckDBCatalog(release["root"] / "catalog" / "catalog.duckdb")
    try:
        after = adql((fresh, fresh.load_schema()), "SELECT objectId, r_psfFlux FROM dp1.Object "
                     "ORDER BY objectId")  # fmt: skip
        (n,) = adql(
            (fresh, fresh.load_schema()),
            "SELECT COUNT(*) AS n FROM ivoa.ObsCore WHERE calib_level = 3",
        )
    finally:
        fresh.close()
    assert after == before
    assert n["n"] == 2  # the coadd rows were replaced, not added again


def test_bad_requests_name_what_is_wrong(release: dict) -> None:
    with pytest.raises(ReleaseError, match=r"visit\(s\) \[1234\]"):
        run_release(release["root"] / "butler", visits=[1234], output_run="drp/x", progress=False)
    with pytest.raises(ReleaseError, match="no collection 'drp/none'"):
        publish_release(release["root"], "drp/none")


@pytest.mark.integration
def test_release_loads_into_postgresql(release: dict, catalog, tmp_path_factory) -> None:
    """The same tables in PostgreSQL, read through the TAP service's postgres backend."""
    import tempfile

    from sciplat.pipelines.drp.release import load_postgres
    from sciplat.services.tap.pgcluster import start_postgres
    from sciplat.services.tap.storage.postgres import PostgresCatalog

    cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-pg-drp-")))
    try:
        db = release["root"] / "catalog" / "catalog.duckdb"
        load_postgres(cluster.admin_url, db)
        load_postgres(cluster.admin_url, db)  # again: tables replaced, not appended to
        pg = PostgresCatalog(cluster.admin_url)
        try:
            pg_catalog = (pg, pg.load_schema())
            for table in ("Object", "Source", "ForcedSource"):
                (row,) = adql(pg_catalog, f"SELECT COUNT(*) AS n FROM dp1.{table}")
                assert row["n"] == release["counts"][f"dp1.{table}"]
            query = (
                "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT('ICRS', coord_ra, "
                "coord_dec), CIRCLE('ICRS', 62.0, -37.0, 0.02)) = 1 ORDER BY objectId"
            )
            assert adql(pg_catalog, query) == adql(catalog, query)
        finally:
            pg.close()
    finally:
        cluster.stop()


def test_single_quanta_read_back_from_the_saved_graph(release: dict) -> None:
    """Any one quantum of the saved graph reads back alone, as a worker would read it."""
    from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

    path = release["result"].graph
    whole = PredictedQuantumGraph.read_execution_quanta(path)
    whole.build_execution_quanta()
    nodes = whole.quantum_only_xgraph.nodes
    ids = sorted(nodes, key=str)
    assert len(ids) >= 60

    def outputs(quantum) -> set:
        return {ref.id for refs in quantum.outputs.values() for ref in refs}

    for qid in ids[:: max(len(ids) // 12, 1)]:
        one = PredictedQuantumGraph.read_execution_quanta(path, quantum_ids=[qid])
        one.build_execution_quanta()
        mine, theirs = one.quantum_only_xgraph.nodes[qid]["quantum"], nodes[qid]["quantum"]
        assert mine.dataId == theirs.dataId
        assert outputs(mine) == outputs(theirs)
