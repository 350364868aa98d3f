"""``ivoa.ObsCore`` rows (ObsCore 1.1) for every image in the Butler repo.

``obs_publisher_did`` is ``ivo://sciplat/dp?<Butler dataset UUID>`` and ``lsst_dataset_id``,
``lsst_dataset_type`` and ``lsst_run`` map each row back to its ``DatasetRef``. ``access_url``
is the DataLink ``links`` endpoint of the API service, relative to the platform's public URL
(:data:`ACCESS_URL_TEMPLATE`), to be resolved by the image services.
"""

from __future__ import annotations

import math
from urllib.parse import quote

import numpy as np

from sciplat.pipelines.sim.survey import BAND_EDGES_M, EXPTIME, INSTRUMENT, PIXEL_SCALE, Survey

__all__ = ["ACCESS_URL_TEMPLATE", "DID_PREFIX", "file_kbytes", "obscore_rows", "publisher_did"]

DID_PREFIX = "ivo://sciplat/dp?"
#: Relative to the platform's public URL; ``{did}`` is the URL-encoded obs_publisher_did.
ACCESS_URL_TEMPLATE = "services/api/datalink/links?ID={did}"
_SUBTYPE = {
    "raw": ("lsst.raw", 1, "phot.count"),
    "visit_image": ("lsst.visit_image", 2, "phot.flux.density"),
    "bias": ("lsst.bias", 1, "phot.count"),
    "flat": ("lsst.flat", 1, "instr.calib"),
}


def publisher_did(dataset_id: str) -> str:
    return f"{DID_PREFIX}{dataset_id}"


def _region(corners: np.ndarray) -> str:
    """ADQL/STC-S polygon (ICRS) of the corners."""
    return "POLYGON ICRS " + " ".join(f"{ra:.7f} {dec:.7f}" for ra, dec in corners)


def file_kbytes(butler, ref) -> int | None:
    """``access_estsize``: the size in kB (rounded up) of the file the Butler holds for *ref*."""
    try:
        size = butler.getURI(ref).size()
    except (FileNotFoundError, LookupError):
        return None
    return -(-size // 1024)


def obscore_rows(survey: Survey, refs: list, butler=None) -> dict[str, list]:
    """Column -> values for *refs* (Butler DatasetRefs of raw, visit_image, bias, flat).

    *butler* gives the file sizes (``access_estsize``); without it they are NULL.
    """
    rows: dict[str, list] = {}
    for ref in refs:
        kind = ref.datasetType.name
        subtype, calib_level, o_ucd = _SUBTYPE[kind]
        data_id = ref.dataId.required
        did = publisher_did(str(ref.id))
        det = survey.detector(int(data_id["detector"]))
        row = {
            "dataproduct_type": "image",
            "dataproduct_subtype": subtype,
            "facility_name": "sciplat simulated telescope",
            "calib_level": calib_level,
            "obs_title": f"{kind} detector {det.id}",
            "target_name": None,
            "obs_id": f"{kind}_{'_'.join(str(v) for v in data_id.values())}",
            "obs_collection": ref.run,
            "obs_publisher_did": did,
            "access_url": ACCESS_URL_TEMPLATE.format(did=quote(did, safe="")),
            "access_format": "application/x-votable+xml;content=datalink",
            "access_estsize": file_kbytes(butler, ref) if butler is not None else None,
            "s_ra": None,
            "s_dec": None,
            "s_fov": None,
            "s_region": None,
            "s_resolution": None,
            "s_xel1": det.npix,
            "s_xel2": det.npix,
            "t_xel": 1,
            "t_min": None,
            "t_max": None,
            "t_exptime": None,
            "t_resolution": None,
            "em_xel": 1,
            "em_min": None,
            "em_max": None,
            "em_res_power": None,
            "o_ucd": o_ucd,
            "pol_states": None,  # not polarimetric
            "pol_xel": None,
            "instrument_name": INSTRUMENT,
            "lsst_visit": None,
            "lsst_detector": det.id,
            "lsst_tract": None,
            "lsst_patch": None,
            "lsst_band": None,
            "lsst_filter": None,
            "lsst_dataset_id": str(ref.id),
            "lsst_dataset_type": kind,
            "lsst_run": ref.run,
        }
        if kind in ("raw", "visit_image"):
            visit_id = int(data_id["exposure" if kind == "raw" else "visit"])
            v = survey.visit(visit_id)
            corners = survey.corners(v, det)
            centre = survey.wcs(v, det).wcs_pix2world([[(det.npix - 1) / 2] * 2], 0)[0]
            half_diag = math.hypot(det.npix, det.npix) / 2 * PIXEL_SCALE / 3600
            lo, hi = BAND_EDGES_M[v.band]
            row.update(
                obs_title=f"{kind} {v.obs_id} {v.band} detector {det.id}",
                target_name="sciplat-dp",
                obs_id=v.obs_id,
                s_ra=float(centre[0]),
                s_dec=float(centre[1]),
                s_fov=2 * half_diag,
                s_region=_region(corners),
                s_resolution=v.seeing,
                t_min=v.mjd_start,
                t_max=v.mjd_end,
                t_exptime=EXPTIME,
                t_resolution=EXPTIME,
                em_min=lo,
                em_max=hi,
                em_res_power=(lo + hi) / 2 / (hi - lo),
                lsst_visit=v.id,
                lsst_band=v.band,
                lsst_filter=v.physical_filter,
            )
        elif kind == "flat":
            band = str(data_id["physical_filter"]).split("_")[0]
            lo, hi = BAND_EDGES_M[band]
            row.update(em_min=lo, em_max=hi, lsst_band=band, lsst_filter=data_id["physical_filter"])
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return rows
