"""A small data preview for the image-service tests, in the data build's layout.

Uses the data build's own pieces (survey plan, Butler repo, formatter, ObsCore schema) but
draws cheap synthetic pixels (noise + Gaussian stars) instead of GalSim, so it takes seconds.
Used only while ``sciplat.pipelines.dataset.build_dataset`` does not exist yet.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
from astropy import units as u
from astropy.coordinates import Latitude, Longitude
from astropy_healpix import HEALPix

from sciplat.pipelines.butler_io import MASK_PLANES, SimExposure, write_fits
from sciplat.pipelines.repo import (
    CALIB_RUN,
    DP_RUN,
    RAW_RUN,
    Ingest,
    certify_calibs,
    create_repo,
    ingest_files,
    open_repo,
    register_survey,
)
from sciplat.pipelines.sim.survey import BAND_EDGES_M, EXPTIME, SIZES, make_survey

__all__ = ["HPX_ORDER", "build_mini_dataset"]

HPX_ORDER = 29


def _pixels(rng: np.random.Generator, npix: int, stars: list[tuple[float, float]]) -> np.ndarray:
    image = rng.normal(0.0, 10.0, (npix, npix)).astype(np.float32)
    yy, xx = np.mgrid[0:npix, 0:npix]
    for x, y in stars:
        if -10 < x < npix + 10 and -10 < y < npix + 10:
            sl = (slice(max(0, int(y) - 8), int(y) + 9), slice(max(0, int(x) - 8), int(x) + 9))
            image[sl] += 1000.0 * np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / 8.0)
    return image


def build_mini_dataset(root: Path, seed: int = 42) -> Path:
    """Build ``root/butler`` and ``root/catalog/catalog.duckdb``; returns *root*."""
    root = Path(root)
    survey = make_survey(SIZES["tiny"], seed)
    rng = np.random.default_rng(seed)
    star_ra = survey.ra + rng.uniform(-0.2, 0.2, 300) / np.cos(np.radians(survey.dec))
    star_dec = survey.dec + rng.uniform(-0.2, 0.2, 300)

    butler_root = root / "butler"
    create_repo(butler_root)
    staging = root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    butler = open_repo(butler_root, writeable=True)
    items: list[Ingest] = []
    calib_items: list[Ingest] = []
    try:
        register_survey(butler, survey)
        npix = survey.detectors[0].npix
        for det in survey.detectors:
            bias = SimExposure(
                image=np.full((npix, npix), 1000, np.int32), metadata={"DET": det.id}
            )
            path = staging / f"bias_{det.id}.fits"
            write_fits(bias, path)
            calib_items.append(
                Ingest("bias", {"instrument": "SimCam", "detector": det.id}, CALIB_RUN, path)
            )
            for band in survey.bands:
                flat = SimExposure(image=np.ones((npix, npix), np.float32))
                path = staging / f"flat_{det.id}_{band}.fits"
                write_fits(flat, path)
                data_id = {
                    "instrument": "SimCam",
                    "detector": det.id,
                    "physical_filter": f"{band}_sim",
                }
                calib_items.append(Ingest("flat", data_id, CALIB_RUN, path))
        for visit in survey.visits:
            for det in survey.detectors:
                wcs = survey.wcs(visit, det)
                x, y = wcs.all_world2pix(star_ra, star_dec, 0)
                image = _pixels(rng, npix, list(zip(x, y, strict=True)))
                mask = np.zeros(image.shape, np.int32)
                mask[:4, :] |= 1 << MASK_PLANES["EDGE"]
                meta = {"VISIT": visit.id, "DETECTOR": det.id, "BAND": visit.band}
                calexp = SimExposure(
                    image=image,
                    variance=np.full(image.shape, 100.0, np.float32),
                    mask=mask,
                    wcs=wcs,
                    metadata={**meta, "BUNIT": "nJy"},
                )
                raw = SimExposure(image=(image + 1000).astype(np.int32), wcs=wcs, metadata=meta)
                p1 = staging / f"raw_{visit.id}_{det.id}.fits"
                p2 = staging / f"vi_{visit.id}_{det.id}.fits"
                write_fits(raw, p1)
                write_fits(calexp, p2)
                items.append(
                    Ingest(
                        "raw",
                        {"instrument": "SimCam", "exposure": visit.id, "detector": det.id},
                        RAW_RUN,
                        p1,
                    )
                )
                items.append(
                    Ingest(
                        "visit_image",
                        {"instrument": "SimCam", "visit": visit.id, "detector": det.id},
                        DP_RUN,
                        p2,
                    )
                )
        calib_refs = ingest_files(butler, calib_items)
        certify_calibs(butler, calib_refs)
        refs = ingest_files(butler, items)
    finally:
        butler.close()

    rows = []
    for item, ref in zip(items, refs, strict=True):
        visit_id = item.data_id.get("visit", item.data_id.get("exposure"))
        visit = survey.visit(int(visit_id))  # type: ignore[arg-type]
        det = survey.detector(int(item.data_id["detector"]))  # type: ignore[arg-type]
        corners = survey.corners(visit, det)
        centre = survey.wcs(visit, det).all_pix2world([[det.npix / 2 - 0.5] * 2], 0)[0]
        region = "POLYGON ICRS " + " ".join(f"{ra:.7f} {dec:.7f}" for ra, dec in corners)
        level = 1 if item.dataset_type == "raw" else 2
        rows.append(
            {
                "dataproduct_type": "image",
                "dataproduct_subtype": f"lsst.{item.dataset_type}",
                "obs_title": f"{item.dataset_type} {visit.id} {det.id}",
                "facility_name": "sciplat",
                "calib_level": level,
                "target_name": "sciplat-dp",
                "obs_id": visit.obs_id,
                "obs_collection": "sciplat-dp",
                "obs_publisher_did": f"ivo://sciplat/dp?{ref.id}",
                "access_url": f"https://example.invalid/{ref.id}",
                "access_format": "application/fits",
                "s_ra": float(centre[0]),
                "s_dec": float(centre[1]),
                "s_fov": det.npix * 0.2 / 3600 * 1.42,
                "s_region": region,
                "s_resolution": visit.seeing,
                "s_xel1": det.npix,
                "s_xel2": det.npix,
                "t_xel": 1,
                "t_min": visit.mjd_start,
                "t_max": visit.mjd_end,
                "t_exptime": EXPTIME,
                "t_resolution": EXPTIME,
                "em_xel": 1,
                "em_min": BAND_EDGES_M[visit.band][0],
                "em_max": BAND_EDGES_M[visit.band][1],
                "em_res_power": None,
                "o_ucd": "phot.count" if level == 1 else "phot.flux.density",
                "pol_xel": None,
                "instrument_name": "SimCam",
                "lsst_visit": visit.id,
                "lsst_detector": det.id,
                "lsst_band": visit.band,
                "lsst_dataset_type": item.dataset_type,
            }
        )
    catalog = root / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(catalog / "catalog.duckdb"))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS ivoa")
        con.execute("CREATE SCHEMA IF NOT EXISTS dp1")
        con.execute("CREATE SCHEMA IF NOT EXISTS tap_schema")
        import pandas as pd

        obscore = pd.DataFrame(rows)  # noqa: F841 - read by DuckDB below
        con.execute("CREATE OR REPLACE TABLE ivoa.obscore AS SELECT * FROM obscore")
        hp = HEALPix(nside=2**HPX_ORDER, order="nested")
        n = 20000
        ra = survey.ra + rng.uniform(-0.3, 0.3, n) / np.cos(np.radians(survey.dec))
        dec = survey.dec + rng.uniform(-0.3, 0.3, n)
        objects = pd.DataFrame(  # noqa: F841
            {
                "objectId": np.arange(1, n + 1, dtype=np.int64),
                "coord_ra": ra,
                "coord_dec": dec,
                "g_psfFlux": rng.uniform(100, 1e5, n).astype(np.float32),
                "r_psfFlux": rng.uniform(100, 1e5, n).astype(np.float32),
                "refExtendedness": rng.uniform(0, 1, n),
                "_healpix_29": hp.lonlat_to_healpix(
                    Longitude(ra * u.deg), Latitude(dec * u.deg)
                ).astype(np.int64),
            }
        )
        con.execute(
            "CREATE OR REPLACE TABLE dp1.Object AS SELECT * FROM objects ORDER BY _healpix_29"
        )
        con.execute(
            "CREATE OR REPLACE TABLE tap_schema.columns (table_name VARCHAR, column_name VARCHAR, "
            "unit VARCHAR, ucd VARCHAR, description VARCHAR, principal INTEGER)"
        )
        con.executemany(
            "INSERT INTO tap_schema.columns VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("dp1.Object", "objectId", None, "meta.id;src", "Unique id", 1),
                ("dp1.Object", "coord_ra", "deg", "pos.eq.ra;meta.main", "RA", 1),
                ("dp1.Object", "coord_dec", "deg", "pos.eq.dec;meta.main", "Dec", 1),
                ("dp1.Object", "g_psfFlux", "nJy", "phot.flux", "PSF flux g", 1),
                ("dp1.Object", "r_psfFlux", "nJy", "phot.flux", "PSF flux r", 0),
            ],
        )
    finally:
        con.close()
    return root
