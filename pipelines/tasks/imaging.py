"""Single-image processing: ISR, background, PSF, detection and measurement, calibration, warps.

Images are :class:`~sciplat.pipelines.butler_io.SimExposure` objects (numpy planes + astropy
WCS). Pixel coordinates are 0-based (astropy's convention). Detection and the background use
``sep`` (Source Extractor as a library); the PSF is an empirical stack of bright stars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from sciplat.pipelines.butler_io import MASK_PLANES, SimExposure

__all__ = [
    "ProcessingError",
    "PsfModel",
    "apply_photometric_calibration",
    "detect_and_measure",
    "fit_astrometry",
    "fit_zero_point",
    "isr",
    "match_sky",
    "measure_psf",
    "psf_flux",
    "subtract_background",
    "warp",
]

BAD_PLANES = ("BAD", "SAT", "NO_DATA", "EDGE")
EDGE_PIXELS = 8


class ProcessingError(RuntimeError):
    """A science step cannot go on with this input (the message says why)."""


def _bits(*planes: str) -> int:
    bits = 0
    for plane in planes:
        bits |= 1 << MASK_PLANES[plane]
    return bits


def isr(
    raw: SimExposure,
    bias: SimExposure,
    flat: SimExposure,
    *,
    saturation_electrons: float = 100_000.0,
    min_flat: float = 0.05,
) -> SimExposure:
    """Instrument signature removal: bias, gain, flat; variance and mask planes (electrons)."""
    if raw.image.shape != bias.image.shape or raw.image.shape != flat.image.shape:
        raise ProcessingError(
            f"raw {raw.image.shape}, bias {bias.image.shape} and flat {flat.image.shape} "
            "differ in shape"
        )
    gain = float(raw.metadata.get("GAIN", 1.0))
    read_noise = float(raw.metadata.get("RDNOISE", 5.0))
    adu = raw.image.astype(np.float64)
    flat_px = flat.image.astype(np.float64)
    bad = flat_px <= min_flat
    good_flat = np.where(bad, 1.0, flat_px)
    electrons = (adu - bias.image) * gain
    saturated = (electrons >= saturation_electrons * 0.999) | (raw.image >= 65535)
    image = electrons / good_flat
    variance = np.clip(image, 0, None) / good_flat + read_noise**2 / good_flat**2
    mask = np.zeros(adu.shape, dtype=np.int32)
    mask[saturated] |= _bits("SAT")
    mask[bad] |= _bits("BAD", "NO_DATA")
    image[bad] = 0.0
    edge = np.zeros(adu.shape, dtype=bool)
    edge[:EDGE_PIXELS, :] = edge[-EDGE_PIXELS:, :] = True
    edge[:, :EDGE_PIXELS] = edge[:, -EDGE_PIXELS:] = True
    mask[edge] |= _bits("EDGE")
    meta = {**raw.metadata, "BUNIT": "electron"}
    return SimExposure(
        image=image.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        wcs=raw.wcs.deepcopy() if raw.wcs is not None else None,
        metadata=meta,
    )


def subtract_background(exposure: SimExposure, *, box: int = 128) -> float:
    """Subtract a smooth background (sep mesh, masked pixels ignored) in place; returns its mean."""
    data = np.ascontiguousarray(exposure.image, dtype=np.float32)
    bkg = sep.Background(data, mask=exposure.mask_of(*BAD_PLANES), bw=box, bh=box, fw=3, fh=3)
    level = bkg.back()
    exposure.image = (data - level).astype(np.float32)
    exposure.image[exposure.mask_of("NO_DATA")] = 0.0
    return float(bkg.globalback)


@dataclass
class PsfModel:
    """An empirical PSF: a normalised stamp (odd size, centre at the middle pixel)."""

    stamp: np.ndarray
    #: Aperture correction: PSF-fit fluxes are multiplied by it (large aperture / PSF flux).
    apcorr: float = 1.0

    @property
    def size(self) -> int:
        return self.stamp.shape[0]

    @property
    def sigma(self) -> float:
        """Gaussian-equivalent width (pixels): adaptive (Gaussian-weighted) second moments."""
        n = self.size
        y, x = np.mgrid[0:n, 0:n] - n // 2
        r2 = (x**2 + y**2).astype(np.float64)
        sigma = 2.0
        for _ in range(20):
            w = np.exp(-0.5 * r2 / sigma**2) * self.stamp
            # For a Gaussian of width s weighted by one of width s: <r^2>_w = s^2 (2 axes / 2).
            new = float(np.sqrt(max((w * r2).sum() / w.sum(), 1e-6)))
            if abs(new - sigma) < 1e-4:
                break
            sigma = new
        return sigma

    @property
    def fwhm(self) -> float:
        return 2.3548 * self.sigma

    def at(self, dx: float, dy: float) -> np.ndarray:
        """The stamp shifted by a sub-pixel offset (renormalised)."""
        shifted = ndimage.shift(self.stamp, (dy, dx), order=3, mode="constant")
        return shifted / shifted.sum()

    @classmethod
    def gaussian(cls, sigma: float, size: int | None = None) -> PsfModel:
        size = size or (int(np.ceil(4 * sigma)) * 2 + 1)
        y, x = np.mgrid[0:size, 0:size] - size // 2
        stamp = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
        return cls(stamp / stamp.sum())


def _stamp(image: np.ndarray, x: float, y: float, half: int) -> np.ndarray | None:
    ix, iy = round(x), round(y)
    if ix - half < 0 or iy - half < 0 or ix + half >= image.shape[1] or iy + half >= image.shape[0]:
        return None
    return image[iy - half : iy + half + 1, ix - half : ix + half + 1]


def detect(exposure: SimExposure, *, threshold: float = 5.0, min_area: int = 5) -> np.ndarray:
    """sep detections (structured array) above *threshold* sigma, bad pixels masked."""
    data = np.ascontiguousarray(exposure.image, dtype=np.float32)
    err = np.sqrt(np.clip(np.ascontiguousarray(exposure.variance, dtype=np.float32), 1e-12, None))
    sep.set_extract_pixstack(2_000_000)
    return sep.extract(
        data,
        threshold,
        err=err,
        mask=exposure.mask_of("BAD", "NO_DATA"),
        minarea=min_area,
        deblend_cont=0.005,
        clean=True,
    )


def measure_psf(exposure: SimExposure, *, size: int = 25, max_stars: int = 60) -> PsfModel:
    """Stack bright, isolated, unsaturated, compact sources into an empirical PSF."""
    threshold = 10.0
    sources = detect(exposure, threshold=threshold)
    half = size // 2
    image = exposure.image
    sat = exposure.mask_of("SAT", "BAD", "NO_DATA")
    # Peak signal-to-noise: sep's threshold is `threshold` times the local noise.
    snr = sources["cpeak"] / (sources["thresh"] / threshold)
    size_ok = np.sqrt(sources["a"] * sources["b"])
    cand = np.flatnonzero((sources["flag"] == 0) & (snr > 20))
    if len(cand) < 3:
        raise ProcessingError(f"only {len(cand)} PSF star candidates (need 3)")
    # Stars are the most compact bright sources: keep those near the small-size mode.
    ref = np.percentile(size_ok[cand], 25)
    cand = cand[size_ok[cand] < 1.2 * ref]
    x0, y0 = sources["x"].astype(np.float64), sources["y"].astype(np.float64)
    rough = np.sqrt(np.clip(sources["x2"] + sources["y2"], 0.5, None) / 2)
    wx, wy, wflag = sep.winpos(np.ascontiguousarray(image, dtype=np.float32), x0, y0, rough)
    good = (wflag == 0) & (np.hypot(wx - x0, wy - y0) < 1.5)
    xy = np.column_stack([np.where(good, wx, x0), np.where(good, wy, y0)])
    cand = cand[good[cand]]
    stamps: list[np.ndarray] = []
    used: list[tuple[float, float]] = []
    for i in cand[np.argsort(-sources["flux"][cand])]:
        x, y = xy[i]
        others = np.hypot(*(xy - xy[i]).T)
        if np.sum(others < size) > 1:
            continue
        cut = _stamp(image, x, y, half)
        if cut is None or _stamp(sat, x, y, half).any():
            continue
        ix, iy = round(x), round(y)
        centred = ndimage.shift(cut.astype(np.float64), (iy - y, ix - x), order=3, mode="nearest")
        total = centred.sum()
        if total <= 0:
            continue
        stamps.append(centred / total)
        used.append((x, y))
        if len(stamps) >= max_stars:
            break
    if len(stamps) < 3:
        raise ProcessingError(f"only {len(stamps)} usable PSF stars (need 3)")
    stack = np.mean(stamps, axis=0)
    # Clip the noisy wings to zero beyond where the profile falls below 1e-4 of the peak.
    stack[stack < 1e-4 * stack.max()] = 0.0
    model = PsfModel(stack / stack.sum())
    # Aperture correction from the same stars: flux in a large aperture over the PSF-fit flux.
    variance = exposure.variance if exposure.variance is not None else np.ones_like(image)
    radius = 3.0 * model.fwhm
    ratios = []
    for x, y in used:
        ap, _, _ = sep.sum_circle(
            np.ascontiguousarray(image, dtype=np.float32), [x], [y], radius, subpix=5
        )
        fit, _ = psf_flux(image, variance, model, x, y)
        if fit > 0:
            ratios.append(float(ap[0]) / fit)
    model.apcorr = float(np.median(ratios)) if ratios else 1.0
    return model


def psf_flux(
    image: np.ndarray, variance: np.ndarray, psf: PsfModel, x: float, y: float
) -> tuple[float, float]:
    """Linear PSF-fit flux and its error at (x, y); NaN off the image."""
    half = psf.size // 2
    cut = _stamp(image, x, y, half)
    var = _stamp(variance, x, y, half)
    if cut is None or var is None:
        return float("nan"), float("nan")
    model = psf.at(x - round(x), y - round(y))
    w = 1.0 / np.clip(var, 1e-12, None)
    denom = float((model**2 * w).sum())
    flux = float((model * cut * w).sum() / denom)
    return flux * psf.apcorr, float(np.sqrt(1.0 / denom)) * psf.apcorr


def detect_and_measure(exposure: SimExposure, psf: PsfModel, *, threshold: float = 5.0) -> Table:
    """Detect sources and measure centroids, PSF and aperture fluxes, shapes and flags."""
    found = detect(exposure, threshold=threshold)
    return measure_at(exposure, psf, found)


def measure_at(exposure: SimExposure, psf: PsfModel, found: np.ndarray) -> Table:
    """Measure sources at sep detections *found* (windowed centroids, PSF/aperture fluxes)."""
    image = np.ascontiguousarray(exposure.image, dtype=np.float32)
    variance = np.ascontiguousarray(exposure.variance, dtype=np.float32)
    err = np.sqrt(np.clip(variance, 1e-12, None))
    n = len(found)
    x, y = found["x"].astype(np.float64), found["y"].astype(np.float64)
    if n:
        sig = np.full(n, psf.sigma)
        wx, wy, wflag = sep.winpos(image, x, y, sig)
        ok = (wflag == 0) & (np.hypot(wx - x, wy - y) < 2.0)
        x, y = np.where(ok, wx, x), np.where(ok, wy, y)
        r_ap = 3.0 * psf.fwhm
        ap, ap_err, _ = sep.sum_circle(image, x, y, r_ap, err=err, subpix=5)
    else:
        ap = ap_err = np.zeros(0)
    fluxes = np.array([psf_flux(image, variance, psf, xi, yi) for xi, yi in zip(x, y, strict=True)])
    fluxes = fluxes.reshape(n, 2)
    flags = exposure.mask
    ix = np.clip(np.round(x).astype(int), 0, image.shape[1] - 1)
    iy = np.clip(np.round(y).astype(int), 0, image.shape[0] - 1)
    center = flags[iy, ix] if flags is not None else np.zeros(n, dtype=np.int32)
    table = Table()
    table["id"] = np.arange(n, dtype=np.int64)
    table["x"] = x
    table["y"] = y
    table["psfFlux"] = fluxes[:, 0]
    table["psfFluxErr"] = fluxes[:, 1]
    table["apFlux"] = np.asarray(ap, dtype=np.float64)
    table["apFluxErr"] = np.asarray(ap_err, dtype=np.float64)
    table["ixx"] = found["x2"].astype(np.float64) if n else np.zeros(0)
    table["iyy"] = found["y2"].astype(np.float64) if n else np.zeros(0)
    table["ixy"] = found["xy"].astype(np.float64) if n else np.zeros(0)
    table["npix"] = found["npix"].astype(np.int32) if n else np.zeros(0, dtype=np.int32)
    table["flag_saturated"] = (center & _bits("SAT")) != 0
    table["flag_edge"] = ((center & _bits("EDGE", "NO_DATA")) != 0) | ~np.isfinite(fluxes[:, 0])
    table["flag_bad"] = (center & _bits("BAD")) != 0
    table["snr"] = table["psfFlux"] / table["psfFluxErr"]
    if exposure.wcs is not None and n:
        ra, dec = exposure.wcs.wcs_pix2world(x, y, 0)
        table["coord_ra"] = ra
        table["coord_dec"] = dec
    else:
        table["coord_ra"] = np.zeros(n)
        table["coord_dec"] = np.zeros(n)
    return table


def match_sky(
    ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-neighbour match of catalog 1 to 2 within a radius: (idx1, idx2, sep_arcsec)."""
    if len(ra1) == 0 or len(ra2) == 0:
        empty = np.zeros(0, dtype=int)
        return empty, empty, np.zeros(0)
    from scipy.spatial import cKDTree

    def xyz(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        r, d = np.radians(ra), np.radians(dec)
        return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])

    tree = cKDTree(xyz(ra2, dec2))
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    dist, idx = tree.query(xyz(ra1, dec1), distance_upper_bound=chord)
    ok = np.isfinite(dist)
    sep_arcsec = np.degrees(2 * np.arcsin(dist[ok] / 2)) * 3600
    return np.flatnonzero(ok), idx[ok], sep_arcsec


def refcat_at_epoch(refcat: Table, mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference star positions moved by their proper motion to *mjd*."""
    dt_yr = (mjd - np.asarray(refcat["epoch"], dtype=np.float64)) / 365.25
    dec = np.asarray(refcat["coord_dec"], dtype=np.float64)
    ra = np.asarray(refcat["coord_ra"], dtype=np.float64)
    pm_ra = np.asarray(refcat["pm_ra"], dtype=np.float64)
    pm_dec = np.asarray(refcat["pm_dec"], dtype=np.float64)
    return (
        ra + pm_ra * dt_yr / 3.6e6 / np.cos(np.radians(dec)),
        dec + pm_dec * dt_yr / 3.6e6,
    )


def fit_astrometry(
    wcs: WCS,
    sources: Table,
    ref_ra: np.ndarray,
    ref_dec: np.ndarray,
    *,
    radius_arcsec: float = 1.5,
    min_matches: int = 5,
) -> tuple[WCS, dict[str, float]]:
    """Correct *wcs* with an affine pixel transform fitted to reference-star matches.

    Returns the new WCS and statistics (number of matches, RMS residual in arcsec).
    """
    good = ~sources["flag_saturated"] & ~sources["flag_edge"] & (sources["snr"] > 10)
    src = sources[good]
    i1, i2, _ = match_sky(src["coord_ra"], src["coord_dec"], ref_ra, ref_dec, radius_arcsec)
    if len(i1) < min_matches:
        raise ProcessingError(
            f"astrometric fit: {len(i1)} reference matches within {radius_arcsec} arcsec "
            f"(need {min_matches})"
        )
    px_ref = np.column_stack(wcs.wcs_world2pix(ref_ra[i2], ref_dec[i2], 0))
    px_meas = np.column_stack([src["x"][i1], src["y"][i1]])
    keep = np.ones(len(i1), dtype=bool)
    for _ in range(3):
        design = np.column_stack([px_ref[keep], np.ones(keep.sum())])
        coef, *_ = np.linalg.lstsq(design, px_meas[keep], rcond=None)
        resid = np.hypot(*(np.column_stack([px_ref, np.ones(len(px_ref))]) @ coef - px_meas).T)
        scatter = 1.4826 * np.median(resid[keep]) + 1e-6
        keep = resid < max(3 * scatter, 0.05)
    a = coef[:2].T  # meas = A @ ref + t
    t = coef[2]
    new = wcs.deepcopy()
    crpix0 = new.wcs.crpix - 1.0
    new.wcs.crpix = a @ crpix0 + t + 1.0
    matrix = new.pixel_scale_matrix @ np.linalg.inv(a)
    if new.wcs.has_cd():
        new.wcs.cd = matrix
    else:
        new.wcs.pc = matrix
        new.wcs.cdelt = [1.0, 1.0]
    new.wcs.set()
    ra, dec = new.wcs_pix2world(px_meas[:, 0], px_meas[:, 1], 0)
    dra = (ra - ref_ra[i2]) * np.cos(np.radians(dec)) * 3600
    ddec = (dec - ref_dec[i2]) * 3600
    rms = float(np.sqrt(np.mean(dra[keep] ** 2 + ddec[keep] ** 2)))
    return new, {"astrom_matches": int(keep.sum()), "astrom_rms_arcsec": rms}


def fit_zero_point(
    sources: Table, ref_ra: np.ndarray, ref_dec: np.ndarray, ref_flux: np.ndarray
) -> tuple[float, dict[str, float]]:
    """nJy per image unit from reference stars (sigma-clipped median of flux ratios)."""
    good = ~sources["flag_saturated"] & ~sources["flag_edge"] & (sources["snr"] > 20)
    src = sources[good]
    i1, i2, _ = match_sky(src["coord_ra"], src["coord_dec"], ref_ra, ref_dec, 1.0)
    if len(i1) < 3:
        raise ProcessingError(f"photometric calibration: {len(i1)} reference matches (need 3)")
    ratio = ref_flux[i2] / np.asarray(src["psfFlux"][i1])
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    med = np.median(ratio)
    for _ in range(3):
        mad = 1.4826 * np.median(np.abs(ratio - med))
        sel = np.abs(ratio - med) < 3 * max(mad, 1e-3 * med)
        med = np.median(ratio[sel])
    scatter_mag = float(1.0857 * 1.4826 * np.median(np.abs(ratio[sel] / med - 1)))
    return float(med), {"photo_matches": int(sel.sum()), "photo_scatter_mag": scatter_mag}


def apply_photometric_calibration(exposure: SimExposure, scale: float) -> None:
    """Scale image and variance to nJy in place and record the calibration."""
    exposure.image = (exposure.image * scale).astype(np.float32)
    exposure.variance = (exposure.variance * scale**2).astype(np.float32)
    exposure.metadata["BUNIT"] = "nJy"
    exposure.metadata["NJYPERE"] = scale


def warp(source: SimExposure, target_wcs: WCS, shape: tuple[int, int]) -> SimExposure:
    """Resample *source* onto *target_wcs* (cubic spline; pixels outside flagged NO_DATA)."""
    ny, nx = shape
    # The mapping is smooth: evaluate it on a coarse grid and interpolate bilinearly.
    step = 32
    gy = np.arange(0, ny + step, step, dtype=np.float64)
    gx = np.arange(0, nx + step, step, dtype=np.float64)
    mx, my = np.meshgrid(gx, gy)
    ra, dec = target_wcs.wcs_pix2world(mx.ravel(), my.ravel(), 0)
    sx, sy = source.wcs.wcs_world2pix(ra, dec, 0)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    coarse = [yy / step, xx / step]
    src_x = ndimage.map_coordinates(sx.reshape(mx.shape), coarse, order=1)
    src_y = ndimage.map_coordinates(sy.reshape(mx.shape), coarse, order=1)
    coords = [src_y, src_x]
    image = ndimage.map_coordinates(
        source.image.astype(np.float64), coords, order=3, mode="constant", cval=0.0
    )
    variance = ndimage.map_coordinates(
        source.variance.astype(np.float64), coords, order=1, mode="constant", cval=0.0
    )
    outside = (
        (src_x < 0.5)
        | (src_y < 0.5)
        | (src_x > source.shape[1] - 1.5)
        | (src_y > source.shape[0] - 1.5)
    )
    mask = np.zeros(shape, dtype=np.int32)
    if source.mask is not None:
        src_mask = ndimage.map_coordinates(source.mask, coords, order=0, mode="constant", cval=0)
        mask |= src_mask.astype(np.int32) & _bits("BAD", "SAT", "NO_DATA")
    mask[outside] |= _bits("NO_DATA")
    image[outside] = 0.0
    variance[outside] = 0.0
    return SimExposure(
        image=image.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        wcs=target_wcs.deepcopy(),
        metadata=dict(source.metadata),
    )
