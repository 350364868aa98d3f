"""Publish the APDB that prompt processing fills as ``dp1.DiaSource`` and ``dp1.DiaObject``.

The data preview's DiaSource/DiaObject tables are derived from truth until prompt processing
has run; :func:`publish_apdb` replaces them with what the pipeline measured: every DIASource
in the APDB (read through ``lsst-dax-apdb``), with its DIAObject id, and DIAObject summaries
(per-band means, scatter, chi^2, slopes... in the ``dp1.DiaObject`` columns) computed from
those DIASources, as Rubin's DiaObject table summarises its DiaSources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["apdb_dia_columns", "publish_apdb"]

#: dp1.DiaSource columns not measured by our prompt pipeline (published as NULL).
_NOT_MEASURED = ("scienceFlux", "scienceFluxErr", "reliability", "ssObjectId")


def _read_apdb(config_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every DIASource and the latest version of every DIAObject of the APDB."""
    from astropy.time import Time
    from lsst.dax.apdb import Apdb, ApdbConfig
    from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

    from sciplat.pipelines.sim.survey import FIELD_DEC, FIELD_RA

    apdb = Apdb.from_config(ApdbConfig.from_uri(str(config_path)))
    # The whole simulated field and well beyond it.
    region = Circle(UnitVector3d(LonLat.fromDegrees(FIELD_RA, FIELD_DEC)), Angle.fromDegrees(10))
    now = Time.now().tai
    sources = apdb.getDiaSources(region, None, now, start_time=Time(0, format="mjd", scale="tai"))
    objects = apdb.getDiaObjects(region)
    return (sources if sources is not None else pd.DataFrame()), objects


def _column(frame: pd.DataFrame, name: str, dtype: type, fill: float = np.nan) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), fill, dtype=dtype)
    values = pd.to_numeric(frame[name], errors="coerce")
    return values.fillna(fill).to_numpy(dtype=dtype)


def apdb_dia_columns(config_path: str | Path) -> tuple[dict, dict]:
    """(dp1.DiaSource columns, dp1.DiaObject columns) of the APDB's contents."""
    from sciplat.pipelines.catalogs import _dia_objects, _timestamps
    from sciplat.pipelines.sim.survey import PIXEL_SCALE

    src, objects = _read_apdb(config_path)
    src = src.sort_values("diaSourceId").reset_index(drop=True) if len(src) else src
    n = len(src)
    snr = np.abs(_column(src, "snr", np.float64))
    # Centroid error of a PSF-limited detection: ~ FWHM / (2.355 S/N), here in pixels.
    pos_err = np.clip(2.0 / np.clip(snr, 1.0, None), 0.01, None)
    ra, dec = _column(src, "ra", np.float64), _column(src, "dec", np.float64)
    psf_flux = _column(src, "psfFlux", np.float64)
    cols = {
        "diaSourceId": _column(src, "diaSourceId", np.int64, 0),
        "visit": _column(src, "visit", np.int64, 0),
        "detector": _column(src, "detector", np.int64, 0),
        "band": src["band"].astype(str).to_numpy() if n else np.zeros(0, dtype=str),
        "diaObjectId": _column(src, "diaObjectId", np.int64, 0),
        "parentDiaSourceId": np.zeros(n, dtype=np.int64),
        "midpointMjdTai": _column(src, "midpointMjdTai", np.float64),
        "time_processed": _timestamps(_column(src, "timeProcessedMjdTai", np.float64)),
        "ra": ra,
        "dec": dec,
        "raErr": pos_err * PIXEL_SCALE / 3600,
        "decErr": pos_err * PIXEL_SCALE / 3600,
        "coord_ra": ra,
        "coord_dec": dec,
        "x": _column(src, "x", np.float64),
        "y": _column(src, "y", np.float64),
        "xErr": pos_err,
        "yErr": pos_err,
        "psfFlux": psf_flux,
        "psfFluxErr": _column(src, "psfFluxErr", np.float64),
        "snr": _column(src, "snr", np.float64),
        "extendedness": np.full(n, np.nan),
        "isDipole": _column(src, "isDipole", np.float64, 0).astype(bool),
        "psfFlux_flag": ~np.isfinite(psf_flux),
        "pixelFlags_edge": _column(src, "pixelFlags_edge", np.float64, 0).astype(bool),
        "pixelFlags_saturated": _column(src, "pixelFlags_saturatedCenter", np.float64, 0).astype(
            bool
        ),
    }
    for name in _NOT_MEASURED:
        cols[name] = np.full(n, np.nan)
    cols["ssObjectId"] = np.zeros(n, dtype=np.int64)
    dia_objects = _dia_objects(cols) if n else {}
    if n:
        # Positions as the APDB holds them (the association's running mean).
        stored = objects.set_index("diaObjectId")
        ids = np.asarray(dia_objects["diaObjectId"], dtype=np.int64)
        have = np.isin(ids, stored.index.to_numpy())
        for key in ("ra", "dec"):
            values = np.asarray(dia_objects[key], dtype=np.float64)
            values[have] = stored.loc[ids[have], key].to_numpy(dtype=np.float64)
            dia_objects[key] = values
    return cols, dia_objects


def publish_apdb(
    dataset_root: str | Path,
    apdb_config: str | Path,
    *,
    postgres_url: str | None = None,
    say=None,
) -> dict[str, int]:
    """Replace the data preview's ``dp1.DiaSource`` and ``dp1.DiaObject`` with the APDB's
    contents, rebuild the catalog database and TAP_SCHEMA; returns the row counts."""
    from sciplat.pipelines import database as db
    from sciplat.pipelines.drp.release import ReleaseError, reload_catalogs

    say = say or (lambda msg: None)
    root = Path(dataset_root)
    parquet = root / "catalog" / "parquet"
    if not parquet.is_dir():
        raise ReleaseError(f"no data preview catalogs in {root} (run `sciplat data build`)")
    if not Path(apdb_config).is_file():
        raise ReleaseError(f"no APDB configuration {apdb_config} (made by `--apdb DIR`)")
    say(f"[apdb] reading {apdb_config}")
    sources, objects = apdb_dia_columns(apdb_config)
    counts = {}
    for name, columns in (("dp1.DiaSource", sources), ("dp1.DiaObject", objects)):
        spec = db.TABLES[name]
        counts[name] = db.write_hats(
            spec, parquet / spec.schema / spec.name, db.arrow_table(spec, columns)
        )
        say(f"[apdb] {name}: {counts[name]} rows")
    reload_catalogs(
        root,
        counts=counts,
        record={"apdb": str(apdb_config)},
        tables=list(counts),
        postgres_url=postgres_url,
        say=say,
    )
    return counts
