"""Catalogs in the Rubin schema, derived from truth with realistic noise, completeness, blending.

Until the batch pipeline measures them from the images, the catalogs are what a pipeline would
report for this sky and this survey:

- **Blending**: truth objects closer than :data:`MERGE_ARCSEC` are one (unresolved) Object;
  Objects closer than :data:`BLEND_ARCSEC` form a blend family with a parent row
  (``detect_isPrimary`` false) and deblended children (``detect_fromBlend``).
- **Noise**: per visit and detector from the visit's seeing, sky, zero point and the
  detector's read noise (the same numbers the images were rendered with); coadd noise is the
  inverse-variance sum over the visits that covered each object in each band.
- **Completeness**: an Object exists if its measured coadd PSF S/N over all bands reaches 5;
  a Source if its single-visit S/N reaches 5; a DiaSource if its difference-image S/N does.
- **Morphology**: PSF fluxes of galaxies lose the light outside the PSF, so ``extendedness``
  (``psfFlux < 0.985 cModelFlux``) separates stars and galaxies, imperfectly at the faint end.

Every column is a numpy array; :mod:`sciplat.pipelines.database` casts them to the felis types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from astropy.time import Time
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from sciplat.pipelines.sim.render import detector_properties
from sciplat.pipelines.sim.rng import rng_for
from sciplat.pipelines.sim.skymodel import (
    DECLINE_MAG_PER_DAY,
    RISE_DAYS,
    SkyModel,
    draw_static,
    mag_to_njy,
    njy_to_mag,
)
from sciplat.pipelines.sim.survey import (
    BANDS,
    EXPTIME,
    FIELD_DEC,
    FIELD_RA,
    PIXEL_SCALE,
    SKY_MAG,
    ZP30,
    Survey,
    Visit,
)

__all__ = [
    "BLEND_ARCSEC",
    "MERGE_ARCSEC",
    "Columns",
    "build_catalogs",
    "ccd_visit_id",
    "large_object_chunks",
    "truth_tables",
]

Columns = dict[str, np.ndarray]
MERGE_ARCSEC = 0.5
BLEND_ARCSEC = 2.0
DETECT_SNR = 5.0
OBJECT_ID_BASE = 10**15
DIA_OBJECT_ID_BASE = 2 * 10**15
EDGE = 8
REF_BAND_ORDER = ("i", "r", "z", "g", "y", "u")
PATCHES = 10  # patches per side of our one-tract skymap
CORR = 0.95  # correlation of PSF and CModel flux errors


def ccd_visit_id(visit: int, detector: int) -> int:
    return visit * 100 + detector


def _ab_err(flux: np.ndarray, err: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 2.5 / math.log(10) * err / np.abs(flux), np.nan)


def _gauss_sigma(seeing: float | np.ndarray) -> np.ndarray:
    return np.asarray(seeing) / 2.3548


def _psf_fraction(seeing: float | np.ndarray, hlr: np.ndarray) -> np.ndarray:
    """Fraction of the total flux a PSF-weighted fit recovers (1 for point sources)."""
    sp2 = _gauss_sigma(seeing) ** 2
    sg2 = (hlr / 1.1774) ** 2
    return 2 * sp2 / (2 * sp2 + sg2)


@dataclass
class Entities:
    """What the pipeline would see as distinct static objects (merged unresolved truth)."""

    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray  # (n, 6) mean AB flux, nJy
    hlr: np.ndarray  # arcsec, 0 for point sources
    e1: np.ndarray
    e2: np.ndarray
    truth_id: np.ndarray  # brightest member
    family: np.ndarray  # blend family index, -1 when isolated
    member_of: np.ndarray  # for every truth static object: entity index
    members_id: np.ndarray  # truth ids, aligned with member_of
    members_flux: np.ndarray  # (m, 6) member fluxes


def _tangent(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Small-field tangent-plane coordinates in arcsec."""
    x = (ra - ra0) * np.cos(np.radians(dec0)) * 3600
    y = (dec - dec0) * 3600
    return np.column_stack([x, y])


def _groups(points: np.ndarray, radius: float) -> tuple[int, np.ndarray]:
    tree = cKDTree(points)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)


def make_entities(sky: SkyModel, ra0: float, dec0: float) -> Entities:
    g, s = sky.galaxies, sky.stars
    ra = np.concatenate([g["ra"], s["ra"]])
    dec = np.concatenate([g["dec"], s["dec"]])
    ids = np.concatenate([g["id"], s["id"]])
    flux = np.column_stack([np.concatenate([g[f"mag_{b}"], s[f"mag_{b}"]]) for b in BANDS])
    flux = mag_to_njy(flux)
    ng = len(g["id"])
    hlr = np.concatenate(
        [
            g["bulge_frac"] * g["bulge_hlr"] + (1 - g["bulge_frac"]) * g["disk_hlr"],
            np.zeros(len(s["id"])),
        ]
    )
    e1 = np.concatenate([g["e1"], np.zeros(len(s["id"]))])
    e2 = np.concatenate([g["e2"], np.zeros(len(s["id"]))])
    xy = _tangent(ra, dec, ra0, dec0)
    n_ent, label = _groups(xy, MERGE_ARCSEC)
    # Brightest member (in r) of each merged group represents it.
    order = np.lexsort((-flux[:, 2], label))
    first = order[np.r_[True, label[order][1:] != label[order][:-1]]]
    rep = np.empty(n_ent, dtype=np.int64)
    rep[label[first]] = first
    tot = np.zeros((n_ent, len(BANDS)))
    for k in range(len(BANDS)):
        tot[:, k] = np.bincount(label, weights=flux[:, k], minlength=n_ent)
    w = flux[:, 2] / tot[label, 2]
    ent_xy = np.column_stack(
        [np.bincount(label, weights=xy[:, i] * w, minlength=n_ent) for i in range(2)]
    )
    ent_ra = ra0 + ent_xy[:, 0] / 3600 / np.cos(np.radians(dec0))
    ent_dec = dec0 + ent_xy[:, 1] / 3600
    n_fam, fam_label = _groups(ent_xy, BLEND_ARCSEC)
    fam_size = np.bincount(fam_label, minlength=n_fam)
    family = np.where(fam_size[fam_label] > 1, fam_label, -1)
    del ng
    return Entities(
        ra=ent_ra,
        dec=ent_dec,
        flux=tot,
        hlr=hlr[rep],
        e1=e1[rep],
        e2=e2[rep],
        truth_id=ids[rep],
        family=family,
        member_of=label,
        members_id=ids,
        members_flux=flux,
    )


@dataclass
class CcdGeometry:
    """Per (visit, detector) quantities the measurements need."""

    visit: Visit
    detector_id: int
    ccd_visit_id: int
    sigma_bg_njy: float  # PSF-flux noise from background + read noise, nJy
    njy_per_e: float
    read_noise: float
    gain: float


def _ccd_geometries(survey: Survey) -> list[CcdGeometry]:
    out = []
    for v in survey.visits:
        for d in survey.detectors:
            props = detector_properties(survey.seed, d)
            sp = _gauss_sigma(v.seeing) / PIXEL_SCALE
            nea = 4 * math.pi * sp**2
            bg = v.sky_e_per_pixel + props.read_noise**2
            out.append(
                CcdGeometry(
                    visit=v,
                    detector_id=d.id,
                    ccd_visit_id=ccd_visit_id(v.id, d.id),
                    sigma_bg_njy=math.sqrt(nea * bg) * v.njy_per_electron,
                    njy_per_e=v.njy_per_electron,
                    read_noise=props.read_noise,
                    gain=props.gain,
                )
            )
    return out


def _on_ccd(survey: Survey, geo: CcdGeometry, ra: np.ndarray, dec: np.ndarray):
    """(inside, x, y, near_edge) of positions on one detector."""
    det = survey.detector(geo.detector_id)
    x, y = survey.wcs(geo.visit, det).wcs_world2pix(ra, dec, 0)
    n = det.npix
    inside = (x >= -0.5) & (y >= -0.5) & (x < n - 0.5) & (y < n - 0.5)
    edge = (x < EDGE) | (y < EDGE) | (x >= n - EDGE) | (y >= n - EDGE)
    return inside, x, y, edge


def _tract_patch(ra: np.ndarray, dec: np.ndarray, survey_radius: float):
    """Our one-tract skymap: tract 0 around the field centre, PATCHES x PATCHES patches."""
    xy = _tangent(ra, dec, FIELD_RA, FIELD_DEC) / 3600
    side = 2 * survey_radius / PATCHES
    px = np.clip(((xy[:, 0] + survey_radius) / side).astype(int), 0, PATCHES - 1)
    py = np.clip(((xy[:, 1] + survey_radius) / side).astype(int), 0, PATCHES - 1)
    return np.zeros(len(ra), dtype=np.int64), (py * PATCHES + px).astype(np.int64)


def _ebv(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth, low-extinction dust map (the DC2 field has E(B-V) ~ 0.01-0.03)."""
    return (0.018 + 0.006 * np.sin(np.radians(ra) * 20) * np.cos(np.radians(dec) * 15)).astype(
        np.float32
    )


# -- Object -------------------------------------------------------------------------------


def measure_objects(
    rng: np.random.Generator,
    ra: np.ndarray,
    dec: np.ndarray,
    flux: np.ndarray,
    hlr: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    sigma: np.ndarray,
    seeing: np.ndarray,
    input_count: np.ndarray,
) -> tuple[np.ndarray, Columns]:
    """Coadd measurements of objects; returns (detected mask, Object columns for all rows).

    *sigma* (n, 6) is each object's coadd PSF-flux noise (nJy; NaN where a band has no data),
    *seeing* (n, 6) the mean FWHM of the contributing visits.
    """
    n = len(ra)
    psi = _psf_fraction(seeing, hlr[:, None])
    have = np.isfinite(sigma)
    sig = np.where(have, sigma, 1.0)
    # Source Poisson noise is small on a coadd next to sky; include it at the coadd depth.
    psf_true = flux * psi
    psf_err = np.sqrt(sig**2 + np.abs(psf_true) * 0.02)
    z = rng.normal(size=(n, 6))
    psf = psf_true + z * psf_err
    size_ratio = np.sqrt(1 + (hlr[:, None] / 1.1774) ** 2 / _gauss_sigma(seeing) ** 2)
    cm_err = psf_err * size_ratio
    # PSF and CModel fluxes come from the same pixels: their errors are strongly correlated.
    cm = flux + (CORR * z + math.sqrt(1 - CORR**2) * rng.normal(size=(n, 6))) * cm_err
    snr = np.where(have, psf / psf_err, 0.0)
    detected = np.sqrt(np.sum(np.clip(snr, 0, None) ** 2, axis=1)) >= DETECT_SNR
    nan = np.nan
    cols: Columns = {}
    for k, b in enumerate(BANDS):
        h = have[:, k]
        cols[f"{b}_psfFlux"] = np.where(h, psf[:, k], nan)
        cols[f"{b}_psfFluxErr"] = np.where(h, psf_err[:, k], nan)
        cols[f"{b}_psfMag"] = np.where(h, njy_to_mag(psf[:, k]), nan)
        cols[f"{b}_psfMagErr"] = np.where(h, _ab_err(psf[:, k], psf_err[:, k]), nan)
        cols[f"{b}_psfFlux_flag"] = ~h
        cols[f"{b}_cModelFlux"] = np.where(h, cm[:, k], nan)
        cols[f"{b}_cModelFluxErr"] = np.where(h, cm_err[:, k], nan)
        cols[f"{b}_cModelMag"] = np.where(h, njy_to_mag(cm[:, k]), nan)
        cols[f"{b}_cModelMagErr"] = np.where(h, _ab_err(cm[:, k], cm_err[:, k]), nan)
        cols[f"{b}_cModel_flag"] = ~h
        ext = (psf[:, k] < 0.985 * cm[:, k]).astype(np.float64)
        cols[f"{b}_extendedness"] = np.where(h, ext, nan)
        cols[f"{b}_blendedness"] = np.where(h, 0.0, nan)
        cols[f"{b}_inputCount"] = input_count[:, k].astype(np.int32)
    # Reference band: the first of i, r, z, g, y, u with data.
    ref = np.full(n, "", dtype=object)
    ref_ext = np.full(n, nan)
    for b in reversed(REF_BAND_ORDER):
        k = BANDS.index(b)
        ref = np.where(have[:, k], b, ref)
        ref_ext = np.where(have[:, k], cols[f"{b}_extendedness"], ref_ext)
    total_snr = np.clip(np.sqrt(np.sum(np.clip(snr, 0, None) ** 2, axis=1)), 1.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_have = have.sum(axis=1)
        mean_seeing = np.where(have, seeing, 0.0).sum(axis=1) / np.maximum(n_have, 1)
    mean_seeing = np.where(n_have > 0, mean_seeing, np.nan)
    mean_seeing = np.where(np.isfinite(mean_seeing), mean_seeing, 0.8)
    pos_err = np.clip(mean_seeing / (2.3548 * total_snr), 0.003, None) / 3600  # deg
    cos_dec = np.cos(np.radians(dec))
    cols["coord_ra"] = ra + rng.normal(size=n) * pos_err / cos_dec
    cols["coord_dec"] = dec + rng.normal(size=n) * pos_err
    cols["coord_raErr"] = pos_err.astype(np.float32)
    cols["coord_decErr"] = pos_err.astype(np.float32)
    cols["refBand"] = ref.astype(str)
    cols["refExtendedness"] = ref_ext
    sg2 = (hlr / 1.1774) ** 2
    tot2 = (sg2 + _gauss_sigma(mean_seeing) ** 2) / PIXEL_SCALE**2
    g2 = sg2 / PIXEL_SCALE**2
    cols["shape_xx"] = (tot2 + g2 * e1).astype(np.float32)
    cols["shape_yy"] = (tot2 - g2 * e1).astype(np.float32)
    cols["shape_xy"] = (g2 * e2).astype(np.float32)
    cols["ebv"] = _ebv(ra, dec)
    return detected, cols


def _object_table(survey: Survey, ent: Entities, coverage) -> tuple[Columns, np.ndarray]:
    """Object rows (children/isolated, then blend parents) and the entity index of each row."""
    rng = rng_for(survey.seed, "objects")
    n = len(ent.ra)
    inv_var, seeing_sum, count = coverage
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(count > 0, 1 / np.sqrt(inv_var), np.nan)
        seeing = np.where(count > 0, seeing_sum / np.maximum(count, 1), 0.8)
    detected, cols = measure_objects(
        rng, ent.ra, ent.dec, ent.flux, ent.hlr, ent.e1, ent.e2, sigma, seeing, count
    )
    keep = np.flatnonzero(detected)
    out = {k: v[keep] for k, v in cols.items()}
    m = len(keep)
    ids = OBJECT_ID_BASE + keep.astype(np.int64)
    fam = ent.family[keep]
    # Families that still have >= 2 detected members get a parent row.
    fam_ids, fam_counts = np.unique(fam[fam >= 0], return_counts=True)
    blended = fam_ids[fam_counts > 1]
    in_blend = np.isin(fam, blended)
    parent_of_fam = {f: OBJECT_ID_BASE + n + int(f) for f in blended}
    out["objectId"] = ids
    out["parentObjectId"] = np.array(
        [parent_of_fam.get(int(f), 0) if b else 0 for f, b in zip(fam, in_blend, strict=True)],
        dtype=np.int64,
    )
    out["detect_isPrimary"] = np.ones(m, dtype=bool)
    out["detect_isIsolated"] = ~in_blend
    out["detect_fromBlend"] = in_blend
    out["deblend_nChild"] = np.zeros(m, dtype=np.int32)
    # Blendedness: share of light within a PSF from family neighbours.
    for k, b in enumerate(BANDS):
        bl = out[f"{b}_blendedness"]
        for f in blended:
            rows = np.flatnonzero(fam == f)
            fl = ent.flux[keep[rows], k]
            xy = _tangent(ent.ra[keep[rows]], ent.dec[keep[rows]], survey.ra, survey.dec)
            d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
            overlap = np.exp(-d2 / (4 * 0.45**2)) * fl[None, :]
            np.fill_diagonal(overlap, 0)
            neigh = overlap.sum(1)
            bl[rows] = np.where(np.isfinite(bl[rows]), neigh / (neigh + fl), np.nan)
    # Parent rows: sums of their children, not primary.
    parents: dict[str, list] = {k: [] for k in out}
    for f in blended:
        rows = np.flatnonzero(fam == f)
        for key, values in out.items():
            parents[key].append(_parent_value(key, values[rows], out, rows))
        parents["objectId"][-1] = parent_of_fam[f]
        parents["parentObjectId"][-1] = 0
        parents["detect_isPrimary"][-1] = False
        parents["detect_isIsolated"][-1] = False
        parents["detect_fromBlend"][-1] = False
        parents["deblend_nChild"][-1] = len(rows)
    if len(blended):
        out = {k: np.concatenate([v, np.array(parents[k], dtype=v.dtype)]) for k, v in out.items()}
    entity_of_row = np.concatenate([keep, np.full(len(blended), -1)])
    tract, patch = _tract_patch(out["coord_ra"], out["coord_dec"], survey.field_radius)
    out["tract"], out["patch"] = tract, patch
    return out, entity_of_row


def _parent_value(key: str, values: np.ndarray, out: Columns, rows: np.ndarray):
    """Value of a blend parent's column from its children's."""
    if key.endswith(("_psfFlux", "_cModelFlux")):
        return np.nansum(values) if np.isfinite(values).any() else np.nan
    if key.endswith(("_psfFluxErr", "_cModelFluxErr")):
        return np.sqrt(np.nansum(values**2)) if np.isfinite(values).any() else np.nan
    if key in ("coord_ra", "coord_dec"):
        w = np.nan_to_num(out["r_cModelFlux"][rows], nan=1.0).clip(1e-3)
        return float(np.average(values, weights=w))
    if values.dtype == bool:
        return bool(values.any())
    if values.dtype.kind in "iu":
        return values.max()
    if values.dtype.kind == "f":
        return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
    return values[0]


def _fix_parent_mags(obj: Columns) -> None:
    for b in BANDS:
        for kind in ("psf", "cModel"):
            f, e = obj[f"{b}_{kind}Flux"], obj[f"{b}_{kind}FluxErr"]
            obj[f"{b}_{kind}Mag"] = njy_to_mag(f)
            obj[f"{b}_{kind}MagErr"] = _ab_err(f, e)


# -- the image sizes: everything -----------------------------------------------------------


def truth_tables(sky: SkyModel) -> dict[str, Columns]:
    """truth.TruthSummary, Galaxy, Star, Transient, Mover (MatchesTruth comes with Objects)."""
    g, s, t, m = sky.galaxies, sky.stars, sky.transients, sky.movers

    def summary(kind, ids, ra, dec, var, point, z, mags):
        n = len(ids)
        out = {
            "id": ids,
            "truth_type": np.full(n, kind),
            "ra": ra,
            "dec": dec,
            "is_variable": np.broadcast_to(var, n).copy(),
            "is_pointsource": np.full(n, point),
            "redshift": np.broadcast_to(z, n).astype(float),
        }
        for b in BANDS:
            out[f"flux_{b}"] = mag_to_njy(mags[b])
        out["mag_r"] = np.asarray(mags["r"], dtype=float)
        return out

    peak = {
        b: t["peak_mag_r"] + c
        for b, c in zip(BANDS, (0.6, 0.1, 0.0, 0.25, 0.35, 0.45), strict=True)
    }
    host_z = dict(zip(g["id"].tolist(), g["redshift"].tolist(), strict=True))
    parts = [
        summary("galaxy", g["id"], g["ra"], g["dec"], False, False, g["redshift"],
                {b: g[f"mag_{b}"] for b in BANDS}),
        summary("star", s["id"], s["ra"], s["dec"], s["is_variable"], True, 0.0,
                {b: s[f"mag_{b}"] for b in BANDS}),
        summary("transient", t["id"], t["ra"], t["dec"], True, True,
                np.array([host_z[h] for h in t["host_id"].tolist()]), peak),
        summary("mover", m["id"], m["ra_ref"], m["dec_ref"], True, True, 0.0,
                {b: m[f"mag_{b}"] for b in BANDS}),
    ]  # fmt: skip
    ts = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {
        "TruthSummary": ts,
        "Galaxy": {k: g[k] for k in ("id", "bulge_frac", "disk_hlr", "bulge_hlr", "e1", "e2")},
        "Star": {
            k: s[k]
            for k in ("id", "pm_ra", "pm_dec", "is_variable", "period", "amplitude", "phase")
        },
        "Transient": {
            "id": t["id"],
            "host_id": t["host_id"],
            "ra": t["ra"],
            "dec": t["dec"],
            "mjd_explosion": t["mjd_explosion"],
            "peak_mag_r": t["peak_mag_r"],
            "rise_time": np.full(len(t["id"]), RISE_DAYS),
            "decline_rate": np.full(len(t["id"]), DECLINE_MAG_PER_DAY),
        },
        "Mover": {
            k: m[k] for k in ("id", "mjd_ref", "ra_ref", "dec_ref", "v_ra", "v_dec", "mag_r")
        },
    }


def _timestamps(mjd: np.ndarray) -> np.ndarray:
    """TAI MJD -> numpy datetime64[us] (naive, TAI)."""
    return np.array(
        Time(np.asarray(mjd), format="mjd", scale="tai").datetime64, dtype="datetime64[us]"
    )


def build_catalogs(survey: Survey, sky: SkyModel) -> dict[str, Columns]:
    """All dp1 tables and the truth tables for an image-size survey."""
    ent = make_entities(sky, survey.ra, survey.dec)
    geos = _ccd_geometries(survey)
    nb = len(BANDS)
    n = len(ent.ra)
    inv_var = np.zeros((n, nb))
    seeing_sum = np.zeros((n, nb))
    count = np.zeros((n, nb), dtype=np.int32)
    on = {}
    for geo in geos:
        inside, x, y, edge = _on_ccd(survey, geo, ent.ra, ent.dec)
        idx = np.flatnonzero(inside)
        on[geo.ccd_visit_id] = (idx, x[idx], y[idx], edge[idx])
        k = BANDS.index(geo.visit.band)
        inv_var[idx, k] += 1 / geo.sigma_bg_njy**2
        seeing_sum[idx, k] += geo.visit.seeing
        count[idx, k] += 1
    obj, entity_of_row = _object_table(survey, ent, (inv_var, seeing_sum, count))
    _fix_parent_mags(obj)

    tables = truth_tables(sky)
    tables["MatchesTruth"] = _matches(ent, obj, entity_of_row)
    tables["Object"] = obj
    tables["Visit"] = _visit_table(survey)
    tables["CcdVisit"] = _ccd_visit_table(survey, geos)
    tables["Source"] = _sources(survey, sky, ent, geos)
    tables["ForcedSource"] = _forced(survey, sky, ent, obj, entity_of_row, geos, on)
    dia_src = _dia_sources(survey, sky, geos)
    tables["DiaSource"] = dia_src
    tables["DiaObject"] = _dia_objects(dia_src)
    return tables


def _matches(ent: Entities, obj: Columns, entity_of_row: np.ndarray) -> Columns:
    """Each truth static member of a detected, primary Object."""
    row_of_entity = np.full(len(ent.ra), -1)
    primary = np.flatnonzero(entity_of_row >= 0)
    row_of_entity[entity_of_row[primary]] = primary
    rows = row_of_entity[ent.member_of]
    sel = np.flatnonzero(rows >= 0)
    r = rows[sel]
    ra_t = ent.ra[ent.member_of[sel]]
    dec_t = ent.dec[ent.member_of[sel]]
    sep = (
        np.hypot(
            (obj["coord_ra"][r] - ra_t) * np.cos(np.radians(dec_t)), obj["coord_dec"][r] - dec_t
        )
        * 3600
    )
    share = ent.members_flux[sel, 2] / ent.flux[ent.member_of[sel], 2]
    return {
        "id": ent.members_id[sel],
        "match_objectId": obj["objectId"][r],
        "match_sep": sep,
        "is_good_match": share >= 0.5,
    }


def _visit_table(survey: Survey) -> Columns:
    vs = survey.visits
    zd = np.array([math.degrees(math.acos(1 / v.airmass)) for v in vs])
    mid = np.array([v.mjd_mid for v in vs])
    start = np.array([v.mjd_start for v in vs])
    return {
        "visit": np.array([v.id for v in vs], dtype=np.int64),
        "physical_filter": np.array([v.physical_filter for v in vs]),
        "band": np.array([v.band for v in vs]),
        "ra": np.array([v.ra for v in vs]),
        "dec": np.array([v.dec for v in vs]),
        "skyRotation": np.array([v.rotation for v in vs]),
        "azimuth": np.zeros(len(vs)),
        "altitude": 90 - zd,
        "zenithDistance": zd,
        "airmass": np.array([v.airmass for v in vs]),
        "expTime": np.full(len(vs), EXPTIME),
        "expMidpt": _timestamps(mid),
        "expMidptMJD": mid,
        "obsStart": _timestamps(start),
        "obsStartMJD": start,
    }


def _ccd_visit_table(survey: Survey, geos: list[CcdGeometry]) -> Columns:
    rows: dict[str, list] = {}
    for geo in geos:
        v, det = geo.visit, survey.detector(geo.detector_id)
        corners = survey.corners(v, det)
        centre = survey.wcs(v, det).wcs_pix2world([[(det.npix - 1) / 2] * 2], 0)[0]
        sky_adu = v.sky_e_per_pixel / geo.gain
        mag_lim = float(njy_to_mag(DETECT_SNR * geo.sigma_bg_njy))
        row = {
            "ccdVisitId": geo.ccd_visit_id,
            "visitId": v.id,
            "detector": det.id,
            "physical_filter": v.physical_filter,
            "band": v.band,
            "ra": centre[0],
            "dec": centre[1],
            "pixelScale": PIXEL_SCALE,
            "zenithDistance": math.degrees(math.acos(1 / v.airmass)),
            "expTime": EXPTIME,
            "zeroPoint": v.zero_point,
            "psfSigma": _gauss_sigma(v.seeing) / PIXEL_SCALE,
            "seeing": v.seeing,
            "skyBg": sky_adu,
            "skyNoise": math.sqrt(v.sky_e_per_pixel + geo.read_noise**2) / geo.gain,
            "skyRotation": v.rotation,
            "expMidpt": v.mjd_mid,
            "expMidptMJD": v.mjd_mid,
            "obsStart": v.mjd_start,
            "obsStartMJD": v.mjd_start,
            "darkTime": EXPTIME,
            "xSize": det.npix,
            "ySize": det.npix,
            "llcra": corners[0, 0],
            "llcdec": corners[0, 1],
            "ulcra": corners[1, 0],
            "ulcdec": corners[1, 1],
            "urcra": corners[2, 0],
            "urcdec": corners[2, 1],
            "lrcra": corners[3, 0],
            "lrcdec": corners[3, 1],
            "magLim": mag_lim,
        }
        for k, val in row.items():
            rows.setdefault(k, []).append(val)
    out = {k: np.array(v) for k, v in rows.items()}
    out["expMidpt"] = _timestamps(out["expMidpt"])
    out["obsStart"] = _timestamps(out["obsStart"])
    return out


def _epoch_entity_flux(sky: SkyModel, ent: Entities, band: str, mjd: float) -> np.ndarray:
    """Flux of every entity at *mjd*: member stars vary, galaxies do not."""
    k = BANDS.index(band)
    member = ent.members_flux[:, k].copy()
    ns = len(sky.stars["id"])
    member[len(member) - ns :] = sky.star_flux(band, mjd)
    return np.bincount(ent.member_of, weights=member, minlength=len(ent.ra))


def _point_noise(geo: CcdGeometry, flux: np.ndarray) -> np.ndarray:
    return np.sqrt(geo.sigma_bg_njy**2 + np.clip(flux, 0, None) * geo.njy_per_e)


def _epoch(survey: Survey, sky: SkyModel, geo: CcdGeometry, stream: str) -> tuple:
    """One detector-visit's visit, detector, WCS, random stream, mid-exposure MJD and the
    movers' positions then."""
    v = geo.visit
    det = survey.detector(geo.detector_id)
    rng = rng_for(survey.seed, stream, geo.ccd_visit_id)
    return v, det, survey.wcs(v, det), rng, v.mjd_mid, sky.mover_positions(v.mjd_mid)


def _sources(survey: Survey, sky: SkyModel, ent: Entities, geos: list[CcdGeometry]) -> Columns:
    """Single-visit detections: entities, transients, movers with S/N >= 5."""
    cols: dict[str, list[np.ndarray]] = {}
    for geo in geos:
        v, det, wcs, rng, mjd, (m_ra, m_dec) = _epoch(survey, sky, geo, "sources")
        t_flux = sky.transient_flux(v.band, mjd)
        ra = np.concatenate([ent.ra, sky.transients["ra"], m_ra])
        dec = np.concatenate([ent.dec, sky.transients["dec"], m_dec])
        flux = np.concatenate(
            [_epoch_entity_flux(sky, ent, v.band, mjd), t_flux, sky.mover_flux(v.band)]
        )
        hlr = np.concatenate([ent.hlr, np.zeros(len(t_flux) + len(m_ra))])
        inside, x, y, edge = _on_ccd(survey, geo, ra, dec)
        idx = np.flatnonzero(inside & (flux > 0))
        f = flux[idx]
        psi = _psf_fraction(v.seeing, hlr[idx])
        err = _point_noise(geo, f * psi)
        z = rng.normal(size=len(idx))
        psf = f * psi + z * err
        snr = psf / err
        ok = snr >= DETECT_SNR
        idx, f, psi, err, psf, snr, z = idx[ok], f[ok], psi[ok], err[ok], psf[ok], snr[ok], z[ok]
        n = len(idx)
        sp = _gauss_sigma(v.seeing) / PIXEL_SCALE
        pos_err = np.clip(sp / snr, 0.01, None)
        xm = x[idx] + rng.normal(size=n) * pos_err
        ym = y[idx] + rng.normal(size=n) * pos_err
        ra_m, dec_m = wcs.wcs_pix2world(xm, ym, 0)
        st2 = _gauss_sigma(v.seeing) ** 2 + (hlr[idx] / 1.1774) ** 2
        r_ap = 12 * PIXEL_SCALE
        ap_frac = 1 - np.exp(-(r_ap**2) / (2 * st2))
        ap_err = (
            np.sqrt(
                math.pi * 12**2 * (v.sky_e_per_pixel + geo.read_noise**2)
                + np.clip(f * ap_frac, 0, None) / geo.njy_per_e
            )
            * geo.njy_per_e
        )
        ap = f * ap_frac + rng.normal(size=n) * ap_err
        zc = CORR * z + math.sqrt(1 - CORR**2) * rng.normal(size=n)
        cm = f + zc * err * np.sqrt(st2) / _gauss_sigma(v.seeing)
        peak_e = f / geo.njy_per_e / (2 * math.pi * st2 / PIXEL_SCALE**2) + v.sky_e_per_pixel
        mom = st2 / PIXEL_SCALE**2
        pos_err_deg = pos_err * PIXEL_SCALE / 3600
        part = {
            "sourceId": ccd_visit_id(v.id, det.id) * 10_000 + np.arange(n, dtype=np.int64),
            "visit": np.full(n, v.id, dtype=np.int64),
            "detector": np.full(n, det.id),
            "band": np.full(n, v.band),
            "physical_filter": np.full(n, v.physical_filter),
            "parentSourceId": np.zeros(n, dtype=np.int64),
            "coord_ra": ra_m,
            "coord_dec": dec_m,
            "ra": ra_m,
            "dec": dec_m,
            "raErr": pos_err_deg,
            "decErr": pos_err_deg,
            "x": xm,
            "y": ym,
            "xErr": pos_err,
            "yErr": pos_err,
            "psfFlux": psf,
            "psfFluxErr": err,
            "psfFlux_flag": np.zeros(n, dtype=bool),
            "calibFlux": ap,
            "calibFluxErr": ap_err,
            "ap12Flux": ap,
            "ap12FluxErr": ap_err,
            "sky": np.full(n, v.sky_e_per_pixel * geo.njy_per_e),
            "extendedness": (psf < 0.985 * cm).astype(float),
            "ixx": mom,
            "iyy": mom,
            "ixy": np.zeros(n),
            "pixelFlags_saturated": peak_e >= 100_000,
            "pixelFlags_edge": edge[idx],
            "detect_isPrimary": np.ones(n, dtype=bool),
        }
        for k, val in part.items():
            cols.setdefault(k, []).append(val)
    return {k: np.concatenate(v) for k, v in cols.items()}


def _forced(survey, sky, ent, obj, entity_of_row, geos, on) -> Columns:
    """Forced PSF photometry of every primary Object on every visit image that covers it."""
    primary_rows = np.flatnonzero(obj["detect_isPrimary"])
    row_of_entity = np.full(len(ent.ra), -1)
    row_of_entity[entity_of_row[primary_rows]] = primary_rows
    # Transients add their light to their host's forced photometry.
    host_ent = {}
    t = sky.transients
    id_to_member = {int(i): j for j, i in enumerate(ent.members_id.tolist())}
    for j, h in enumerate(t["host_id"].tolist()):
        host_ent[j] = ent.member_of[id_to_member[h]]
    cols: dict[str, list[np.ndarray]] = {}
    for geo in geos:
        v = geo.visit
        rng = rng_for(survey.seed, "forced", geo.ccd_visit_id)
        idx, _x, _y, edge = on[geo.ccd_visit_id]
        rows = row_of_entity[idx]
        sel = rows >= 0
        idx, rows, edge = idx[sel], rows[sel], edge[sel]
        k = BANDS.index(v.band)
        now = _epoch_entity_flux(sky, ent, v.band, v.mjd_mid)
        tflux = sky.transient_flux(v.band, v.mjd_mid)
        for j, e in host_ent.items():
            now[e] += tflux[j]
        psi = _psf_fraction(v.seeing, ent.hlr[idx])
        true_now = now[idx] * psi
        template = ent.flux[idx, k] * psi
        err = _point_noise(geo, true_now)
        n = len(idx)
        meas = true_now + rng.normal(size=n) * err
        diff_err = np.sqrt(err**2 + (0.3 * geo.sigma_bg_njy) ** 2)
        diff = (true_now - template) + rng.normal(size=n) * diff_err
        part = {
            "objectId": obj["objectId"][rows],
            "parentObjectId": obj["parentObjectId"][rows],
            "coord_ra": obj["coord_ra"][rows],
            "coord_dec": obj["coord_dec"][rows],
            "visit": np.full(n, v.id, dtype=np.int64),
            "detector": np.full(n, geo.detector_id, dtype=np.int64),
            "band": np.full(n, v.band),
            "psfFlux": meas,
            "psfFluxErr": err,
            "psfFlux_flag": np.zeros(n, dtype=bool),
            "psfDiffFlux": diff,
            "psfDiffFluxErr": diff_err,
            "psfDiffFlux_flag": np.zeros(n, dtype=bool),
            "pixelFlags_saturated": now[idx]
            / geo.njy_per_e
            / (2 * math.pi * (_gauss_sigma(v.seeing) / PIXEL_SCALE) ** 2)
            >= 100_000,
            "pixelFlags_edge": edge,
            "tract": obj["tract"][rows],
            "patch": obj["patch"][rows],
        }
        for key, val in part.items():
            cols.setdefault(key, []).append(val)
    return {k: np.concatenate(v) for k, v in cols.items()}


def _dia_sources(survey: Survey, sky: SkyModel, geos: list[CcdGeometry]) -> Columns:
    """Difference-image detections of variables, transients and movers."""
    s, t = sky.stars, sky.transients
    var = np.flatnonzero(s["is_variable"])
    n_var, n_tr = len(var), len(t["id"])
    # diaObjectIds: one per variable star and per transient (movers get ssObjectId instead).
    dia_ids = DIA_OBJECT_ID_BASE + np.arange(n_var + n_tr, dtype=np.int64) + 1
    cols: dict[str, list[np.ndarray]] = {}
    for geo in geos:
        v, det, wcs, rng, mjd, (m_ra, m_dec) = _epoch(survey, sky, geo, "dia")
        sra, sdec = sky.star_positions(mjd)
        star_now = sky.star_flux(v.band, mjd)[var]
        star_mean = mag_to_njy(s[f"mag_{v.band}"][var])
        t_now = sky.transient_flux(v.band, mjd)
        m_now = sky.mover_flux(v.band)
        ra = np.concatenate([sra[var], t["ra"], m_ra])
        dec = np.concatenate([sdec[var], t["dec"], m_dec])
        science = np.concatenate([star_now, t_now, m_now])
        dflux = np.concatenate([star_now - star_mean, t_now, m_now])
        dia = np.concatenate([dia_ids, np.zeros(len(m_now), dtype=np.int64)])
        sso = np.concatenate([np.zeros(n_var + n_tr, dtype=np.int64), sky.movers["id"]])
        inside, x, y, edge = _on_ccd(survey, geo, ra, dec)
        idx = np.flatnonzero(inside)
        err = np.sqrt(_point_noise(geo, science[idx]) ** 2 + (0.3 * geo.sigma_bg_njy) ** 2)
        meas = dflux[idx] + rng.normal(size=len(idx)) * err
        snr = meas / err
        ok = np.abs(snr) >= DETECT_SNR
        idx, err, meas, snr = idx[ok], err[ok], meas[ok], snr[ok]
        n = len(idx)
        sp = _gauss_sigma(v.seeing) / PIXEL_SCALE
        pos_err = np.clip(sp / np.abs(snr), 0.01, None)
        xm = x[idx] + rng.normal(size=n) * pos_err
        ym = y[idx] + rng.normal(size=n) * pos_err
        ra_m, dec_m = wcs.wcs_pix2world(xm, ym, 0)
        sci_err = _point_noise(geo, science[idx])
        pos_err_deg = pos_err * PIXEL_SCALE / 3600
        part = {
            "diaSourceId": ccd_visit_id(v.id, det.id) * 10_000
            + 5_000
            + np.arange(n, dtype=np.int64),
            "visit": np.full(n, v.id, dtype=np.int64),
            "detector": np.full(n, det.id, dtype=np.int64),
            "band": np.full(n, v.band),
            "diaObjectId": dia[idx],
            "ssObjectId": sso[idx],
            "parentDiaSourceId": np.zeros(n, dtype=np.int64),
            "midpointMjdTai": np.full(n, mjd),
            "time_processed": np.full(n, mjd + 60 / 86400),
            "ra": ra_m,
            "dec": dec_m,
            "raErr": pos_err_deg,
            "decErr": pos_err_deg,
            "coord_ra": ra_m,
            "coord_dec": dec_m,
            "x": xm,
            "y": ym,
            "xErr": pos_err,
            "yErr": pos_err,
            "psfFlux": meas,
            "psfFluxErr": err,
            "snr": snr,
            "scienceFlux": science[idx] + rng.normal(size=n) * sci_err,
            "scienceFluxErr": sci_err,
            "extendedness": np.zeros(n),
            "reliability": rng.uniform(0.85, 1.0, n),
            "isDipole": np.zeros(n, dtype=bool),
            "psfFlux_flag": np.zeros(n, dtype=bool),
            "pixelFlags_edge": edge[idx],
            "pixelFlags_saturated": np.zeros(n, dtype=bool),
        }
        for key, val in part.items():
            cols.setdefault(key, []).append(val)
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["time_processed"] = _timestamps(out["time_processed"])
    return out


def _dia_objects(src: Columns) -> Columns:
    """DiaObject summaries of the DiaSources with a diaObjectId."""
    ids = src["diaObjectId"]
    uniq = np.unique(ids[ids > 0])
    rows: dict[str, list] = {}
    for oid in uniq:
        sel = ids == oid
        row: dict[str, object] = {
            "diaObjectId": oid,
            "ra": float(np.mean(src["ra"][sel])),
            "dec": float(np.mean(src["dec"][sel])),
            "nDiaSources": int(sel.sum()),
            "radecMjdTai": float(np.mean(src["midpointMjdTai"][sel])),
        }
        for b in BANDS:
            bs = sel & (src["band"] == b)
            f, e, t = src["psfFlux"][bs], src["psfFluxErr"][bs], src["midpointMjdTai"][bs]
            sf, se = src["scienceFlux"][bs], src["scienceFluxErr"][bs]
            nd = len(f)
            if nd:
                w = 1 / e**2
                mean = float(np.sum(w * f) / np.sum(w))
                sw = 1 / se**2
                smean = float(np.sum(sw * sf) / np.sum(sw))
                slope, icpt = (
                    np.polyfit(t - t.min(), f, 1) if nd > 1 and np.ptp(t) > 0 else (np.nan, np.nan)
                )
                stats = {
                    "psfFluxMean": mean,
                    "psfFluxMeanErr": float(np.sqrt(1 / np.sum(w))),
                    "psfFluxSigma": float(np.std(f, ddof=1)) if nd > 1 else np.nan,
                    "psfFluxNdata": float(nd),
                    "psfFluxMin": float(f.min()),
                    "psfFluxMax": float(f.max()),
                    "psfFluxChi2": float(np.sum(((f - mean) / e) ** 2)),
                    "psfFluxErrMean": float(e.mean()),
                    "psfFluxMAD": float(np.median(np.abs(f - np.median(f)))),
                    "psfFluxPercentile50": float(np.median(f)),
                    "scienceFluxMean": smean,
                    "scienceFluxMeanErr": float(np.sqrt(1 / np.sum(sw))),
                    "psfFluxLinearSlope": float(slope),
                    "psfFluxLinearIntercept": float(icpt),
                }
            else:
                stats = dict.fromkeys(
                    ("psfFluxMean", "psfFluxMeanErr", "psfFluxSigma", "psfFluxMin", "psfFluxMax",
                     "psfFluxChi2", "psfFluxErrMean", "psfFluxMAD", "psfFluxPercentile50",
                     "scienceFluxMean", "scienceFluxMeanErr", "psfFluxLinearSlope",
                     "psfFluxLinearIntercept"),
                    np.nan,
                )  # fmt: skip
                stats["psfFluxNdata"] = 0.0
            for k, val in stats.items():
                row[f"{b}_{k}"] = val
        for k, val in row.items():
            rows.setdefault(k, []).append(val)
    if not rows:
        return {}
    return {k: np.array(v) for k, v in rows.items()}


# -- the large size: Object only, in chunks -------------------------------------------------


def large_object_chunks(
    seed: int, rows: int, density: float, visits_per_band: dict[str, int], chunk: int = 1_000_000
) -> Iterator[tuple[Columns, Columns]]:
    """(Object columns, TruthSummary columns) chunks until *rows* Objects are made.

    Chunks tile a 6-degree-tall strip of sky eastwards from RA 50 deg at *density*; the coadd
    depth is the nominal depth of *visits_per_band* 30 s visits at median conditions; no blends.
    """
    dec_range = (-40.0, -34.0)
    cos_dec = math.cos(math.radians(-37.0))
    width = chunk / density / (6.0 * cos_dec)  # deg of RA per chunk
    made = 0
    k = 0
    sigma_band = np.full(len(BANDS), np.nan)
    seeing_band = np.full(len(BANDS), 0.8)
    counts = np.zeros(len(BANDS), dtype=np.int32)
    for b, nv in visits_per_band.items():
        i = BANDS.index(b)
        sky_e = 10 ** (-0.4 * (SKY_MAG[b] - ZP30[b])) * PIXEL_SCALE**2
        sp = 0.7 / 2.3548 / PIXEL_SCALE
        njy = 10 ** (0.4 * (31.4 - ZP30[b]))
        sigma_band[i] = math.sqrt(4 * math.pi * sp**2 * (sky_e + 30)) * njy / math.sqrt(nv)
        seeing_band[i] = 0.7
        counts[i] = nv
    while made < rows:
        rng = rng_for(seed, "large", k)
        ra_range = (50.0 + k * width, 50.0 + (k + 1) * width)
        from sciplat.pipelines.sim.skymodel import _uniform_in_box

        ra, dec = _uniform_in_box(rng, chunk, ra_range, dec_range)
        galaxies, stars = draw_static(rng, chunk, ra, dec, id_offset=k * chunk * 4)
        g, s = galaxies, stars
        ra = np.concatenate([g["ra"], s["ra"]])
        dec = np.concatenate([g["dec"], s["dec"]])
        n = len(ra)
        flux = mag_to_njy(
            np.column_stack([np.concatenate([g[f"mag_{b}"], s[f"mag_{b}"]]) for b in BANDS])
        )
        hlr = np.concatenate(
            [
                g["bulge_frac"] * g["bulge_hlr"] + (1 - g["bulge_frac"]) * g["disk_hlr"],
                np.zeros(len(s["ra"])),
            ]
        )
        e1 = np.concatenate([g["e1"], np.zeros(len(s["ra"]))])
        e2 = np.concatenate([g["e2"], np.zeros(len(s["ra"]))])
        sigma = np.broadcast_to(sigma_band, (n, len(BANDS)))
        seeing = np.broadcast_to(seeing_band, (n, len(BANDS)))
        count = np.broadcast_to(counts, (n, len(BANDS)))
        detected, cols = measure_objects(rng, ra, dec, flux, hlr, e1, e2, sigma, seeing, count)
        keep = np.flatnonzero(detected)
        if made + len(keep) > rows:
            keep = keep[: rows - made]
        obj = {key: val[keep] for key, val in cols.items()}
        m = len(keep)
        truth_ids = np.concatenate([g["id"], s["id"]])
        obj["objectId"] = OBJECT_ID_BASE + made + np.arange(m, dtype=np.int64)
        obj["parentObjectId"] = np.zeros(m, dtype=np.int64)
        obj["detect_isPrimary"] = np.ones(m, dtype=bool)
        obj["detect_isIsolated"] = np.ones(m, dtype=bool)
        obj["detect_fromBlend"] = np.zeros(m, dtype=bool)
        obj["deblend_nChild"] = np.zeros(m, dtype=np.int32)
        obj["tract"] = np.full(m, k, dtype=np.int64)
        obj["patch"] = np.zeros(m, dtype=np.int64)
        truth = {
            "id": truth_ids,
            "truth_type": np.where(np.arange(n) < len(g["ra"]), "galaxy", "star"),
            "ra": ra,
            "dec": dec,
            "is_variable": np.zeros(n, dtype=bool),
            "is_pointsource": np.arange(n) >= len(g["ra"]),
            "redshift": np.concatenate([g["redshift"], np.zeros(len(s["ra"]))]),
            **{f"flux_{b}": flux[:, i] for i, b in enumerate(BANDS)},
            "mag_r": njy_to_mag(flux[:, 2]),
        }
        made += m
        k += 1
        yield obj, truth
