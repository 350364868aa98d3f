"""Science validation of processing outputs against the simulation's truth.

Used by the commissioning notebook ``notebooks/commissioning/science-validation.ipynb`` and the
batch template: every function reads pipeline outputs from the Butler and compares them with
the sky model the data preview was rendered from (rebuilt from ``dataset.json``'s size and
seed, so no truth needs to be shipped beside the images).

- :func:`transient_recovery`: each injected transient on each processed detector-visit (where
  the difference image has usable pixels), its true flux, the S/N it should have on the
  difference image (PSF-fit error from the difference image's variance plane at its position)
  and whether a DIASource was found within 1".
- :func:`false_dia_sources`: DIASources with no transient, variable star or mover nearby.
- :func:`single_visit_scatter`: astrometric (mas) and photometric (mmag) scatter of calibrated
  single-visit sources against truth stars.
- :func:`alert_completeness`: DIASources that got an alert packet.
- :func:`object_truth_match`: Object-catalog completeness and flux ratio against truth.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sciplat.pipelines.tasks.imaging import match_sky, psf_flux
from sciplat.pipelines.tasks.prompt import psf_from_array

__all__ = [
    "alert_completeness",
    "false_dia_sources",
    "object_truth_match",
    "recovered_fraction",
    "single_visit_scatter",
    "sky_for",
    "transient_recovery",
]

MATCH_ARCSEC = 1.0


def sky_for(dataset_root: str | Path) -> tuple[Any, Any]:
    """(survey, sky model) of the data preview at *dataset_root*."""
    from sciplat.pipelines.dataset import load_info
    from sciplat.pipelines.sim.skymodel import make_sky
    from sciplat.pipelines.sim.survey import SIZES, make_survey

    info = load_info(Path(dataset_root))
    if info is None:
        raise FileNotFoundError(f"no data preview (dataset.json) in {dataset_root}")
    survey = make_survey(SIZES[info.size], info.seed)
    return survey, make_sky(survey)


def _refs(butler: Any, dataset_type: str, run: str) -> list[Any]:
    return sorted(
        butler.query_datasets(dataset_type, collections=run, explain=False),
        key=lambda r: tuple(r.dataId.required.values()),
    )


def transient_recovery(butler: Any, run: str, sky: Any) -> pd.DataFrame:
    """One row per (transient, detector-visit of *run* that covers it)."""
    t = sky.transients
    rows = []
    for ref in _refs(butler, "difference_image", run):
        visit, detector = int(ref.dataId["visit"]), int(ref.dataId["detector"])
        diff = butler.get(ref)
        where = {"visit": visit, "detector": detector, "instrument": ref.dataId["instrument"]}
        psf = psf_from_array(butler.get("visit_psf", where, collections=run))
        dia = butler.get("dia_source", where, collections=run)
        band = str(diff.metadata.get("BAND"))
        mjd = float(diff.metadata.get("MJD-MID", diff.metadata.get("MJD-OBS")))
        flux = sky.transient_flux(band, mjd)
        x, y = diff.wcs.wcs_world2pix(t["ra"], t["dec"], 0)
        ny, nx = diff.shape
        on = (x >= 15) & (y >= 15) & (x < nx - 15) & (y < ny - 15)
        unusable = diff.mask_of("NO_DATA", "BAD", "EDGE") | ~(diff.variance > 0)
        for i in np.flatnonzero(on):
            ix, iy = round(float(x[i])), round(float(y[i]))
            if unusable[iy - 3 : iy + 4, ix - 3 : ix + 4].any():
                continue  # not observable there (no template coverage, bad pixels)
            _, err = psf_flux(diff.image, diff.variance, psf, float(x[i]), float(y[i]))
            near = np.zeros(0, dtype=int)
            if len(dia):
                _, i2, _ = match_sky(
                    np.array([t["ra"][i]]), np.array([t["dec"][i]]),
                    np.asarray(dia["ra"]), np.asarray(dia["dec"]), MATCH_ARCSEC,
                )  # fmt: skip
                near = i2[np.asarray(dia["psfFlux"])[i2] > 0]
            rows.append(
                {
                    "visit": visit,
                    "detector": detector,
                    "band": band,
                    "transient": int(t["id"][i]),
                    "true_flux": float(flux[i]),
                    "expected_snr": float(flux[i] / err) if err > 0 else np.nan,
                    "recovered": bool(len(near)),
                    "measured_flux": float(dia["psfFlux"][near[0]]) if len(near) else np.nan,
                    "diaSourceId": int(dia["diaSourceId"][near[0]]) if len(near) else 0,
                }
            )
    return pd.DataFrame(rows)


def recovered_fraction(recovery: pd.DataFrame, edges: list[float]) -> pd.DataFrame:
    """Recovered fraction per bin of expected S/N (with counts)."""
    snr = recovery["expected_snr"].to_numpy()
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (snr >= lo) & (snr < hi)
        n = int(sel.sum())
        k = int(recovery["recovered"].to_numpy()[sel].sum())
        out.append({"snr_min": lo, "snr_max": hi, "n": n, "recovered": k,
                    "fraction": k / n if n else np.nan})  # fmt: skip
    return pd.DataFrame(out)


def false_dia_sources(butler: Any, run: str, sky: Any, radius_arcsec: float = 1.5) -> pd.DataFrame:
    """Per detector-visit: DIASources, and those with no transient/variable/mover within
    *radius_arcsec* (false positives: subtraction residuals, noise)."""
    s, t = sky.stars, sky.transients
    rows = []
    for ref in _refs(butler, "dia_source", run):
        dia = butler.get(ref)
        visit, detector = int(ref.dataId["visit"]), int(ref.dataId["detector"])
        if len(dia):
            mjd = float(np.asarray(dia["midpointMjdTai"])[0])
            sra, sdec = sky.star_positions(mjd)
            mra, mdec = sky.mover_positions(mjd)
            var = np.asarray(s["is_variable"], dtype=bool)
            ra = np.concatenate([t["ra"], sra[var], mra])
            dec = np.concatenate([t["dec"], sdec[var], mdec])
            i1, _, _ = match_sky(np.asarray(dia["ra"]), np.asarray(dia["dec"]), ra, dec,
                                 radius_arcsec)  # fmt: skip
            real = len(np.unique(i1))
        else:
            real = 0
        rows.append({"visit": visit, "detector": detector, "dia_sources": len(dia),
                     "false": len(dia) - real})  # fmt: skip
    return pd.DataFrame(rows)


def single_visit_scatter(
    butler: Any, run: str, sky: Any, min_snr: float = 50.0, dataset_type: str = "preliminary_source"
) -> pd.DataFrame:
    """Per detector-visit: RMS astrometric offset (mas) and robust photometric scatter (mmag)
    of bright calibrated sources matched to constant truth stars, and the median flux ratio."""
    s = sky.stars
    constant = ~np.asarray(s["is_variable"], dtype=bool)
    rows = []
    for ref in _refs(butler, dataset_type, run):
        src = butler.get(ref)
        where = {k: ref.dataId[k] for k in ("instrument", "visit", "detector")}
        meta = butler.get("preliminary_visit_image.metadata", where, collections=run)
        band = str(meta.get("BAND"))
        mjd = float(meta.get("MJD-MID", meta.get("MJD-OBS")))
        sra, sdec = sky.star_positions(mjd)
        flux = sky.star_flux(band, mjd)
        snr = np.asarray(src["psfFlux"]) / np.asarray(src["psfFluxErr"])
        good = (snr > min_snr) & ~np.asarray(src["flag_saturated"], dtype=bool)
        ra, dec = np.asarray(src["coord_ra"])[good], np.asarray(src["coord_dec"])[good]
        i1, i2, sep = match_sky(ra, dec, sra[constant], sdec[constant], MATCH_ARCSEC)
        ratio = np.asarray(src["psfFlux"])[good][i1] / flux[constant][i2]
        med = float(np.median(ratio)) if len(ratio) else np.nan
        mad = float(1.4826 * np.median(np.abs(ratio / med - 1))) if len(ratio) else np.nan
        rms_mas = float(np.sqrt(np.mean(sep**2))) * 1000 if len(sep) else np.nan
        rows.append(
            {
                "visit": int(where["visit"]),
                "detector": int(where["detector"]),
                "band": band,
                "stars": len(i1),
                "astrometric_rms_mas": rms_mas,
                "photometric_scatter_mmag": 1085.7 * mad,
                "flux_ratio": med,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def alert_completeness(butler: Any, run: str) -> dict[str, float]:
    """DIASources in *run* and how many have an alert packet."""
    sources, alerted = set(), set()
    for ref in _refs(butler, "dia_source", run):
        sources.update(int(i) for i in np.asarray(butler.get(ref)["diaSourceId"]))
    for ref in _refs(butler, "alert_packets", run):
        alerted.update(butler.get(ref).column("diaSourceId").to_pylist())
    n = len(sources)
    return {
        "dia_sources": n,
        "alerts": len(alerted),
        "with_alert": len(sources & alerted),
        "completeness": len(sources & alerted) / n if n else float("nan"),
    }


def object_truth_match(objects: pd.DataFrame, sky: Any, band: str = "r") -> pd.DataFrame:
    """Truth stars and galaxies with the nearest Object within 1" (NaN when none)."""
    from sciplat.pipelines.sim.skymodel import mag_to_njy

    g, s = sky.galaxies, sky.stars
    ra = np.concatenate([g["ra"], s["ra"]])
    dec = np.concatenate([g["dec"], s["dec"]])
    mag = np.concatenate([g[f"mag_{band}"], s[f"mag_{band}"]])
    kind = np.array(["galaxy"] * len(g["ra"]) + ["star"] * len(s["ra"]))
    out = pd.DataFrame({"ra": ra, "dec": dec, "mag": mag, "kind": kind,
                        "true_flux": mag_to_njy(mag)})  # fmt: skip
    out["objectId"] = 0
    out["psfFlux"] = np.nan
    out["cModelFlux"] = np.nan
    if len(objects):
        i1, i2, _ = match_sky(ra, dec, objects["coord_ra"].to_numpy(),
                                objects["coord_dec"].to_numpy(), MATCH_ARCSEC)  # fmt: skip
        out.loc[i1, "objectId"] = objects["objectId"].to_numpy()[i2]
        out.loc[i1, "psfFlux"] = objects[f"{band}_psfFlux"].to_numpy()[i2]
        out.loc[i1, "cModelFlux"] = objects[f"{band}_cModelFlux"].to_numpy()[i2]
    return out
