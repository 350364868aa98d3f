"""Coadds, multi-band detection and measurement, forced photometry (numpy + ``sep``).

Plain functions on :class:`~sciplat.pipelines.butler_io.SimExposure` images, so they can be
tested on synthetic images with known answers; :mod:`.tasks` wraps them as PipelineTasks.

- :func:`coadd_with_coverage`: weighted mean (one inverse-variance weight per image) of images
  warped onto one grid, and where each input contributes; :class:`CoaddPsf`, the coadd PSF at
  each position, is the same weighted mean of the PSFs of the inputs covering it, as Rubin's
  CoaddPsf.
- :func:`detect_multiband`: one detection image (inverse-variance weighted mean of the band
  coadds, so an object faint in every band but significant in their sum is found), ``sep``
  detection and deblending, windowed centroids.
- :func:`measure_bands`: at those positions, in every band, with the PSF at the position:
  PSF-fit flux (aperture-corrected), Kron flux, extendedness from their ratio, and the
  composite-model flux (:mod:`.cmodel`).
- :func:`forced_photometry`: PSF-fit fluxes at fixed sky positions on one calibrated image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sep
from astropy.table import Table
from astropy.wcs import WCS

from sciplat.pipelines.butler_io import MASK_PLANES, SimExposure
from sciplat.pipelines.drp import cmodel
from sciplat.pipelines.tasks import imaging

__all__ = [
    "EXTENDED_RATIO",
    "CoaddPsf",
    "coadd",
    "coadd_psf",
    "coadd_with_coverage",
    "detect_multiband",
    "detection_image",
    "detection_psf_at",
    "forced_photometry",
    "measure_bands",
    "psf_at",
]

#: A source is extended when its PSF flux is below this fraction of its Kron flux.
EXTENDED_RATIO = 0.90
_NO_DATA = 1 << MASK_PLANES["NO_DATA"]


def coadd(
    images: Iterable[SimExposure], wcs: WCS, shape: tuple[int, int]
) -> tuple[SimExposure, list[float]]:
    """Weighted mean of *images* warped onto (*wcs*, *shape*).

    Each image has one weight, the inverse of its median variance (sky + read noise), as
    Rubin's coadds do: per-pixel inverse-variance weights would include the sources' own
    Poisson noise and bias bright sources low. The variance plane is propagated
    (sum of w^2 var / (sum of w)^2). *images* may be a generator: one input is held in memory
    at a time. Returns the coadd (NO_DATA where nothing contributed) and each input's weight
    times the number of its good pixels on the grid (0 for an input that does not overlap).
    """
    result, weights, _ = coadd_with_coverage(images, wcs, shape, coverage_bin=0)
    return result, weights


def coadd_with_coverage(
    images: Iterable[SimExposure], wcs: WCS, shape: tuple[int, int], *, coverage_bin: int = 16
) -> tuple[SimExposure, list[float], np.ndarray]:
    """:func:`coadd`, plus each input's weight map on a grid of *coverage_bin*-pixel cells:
    ``maps[i, by, bx]`` = input *i*'s weight times the fraction of the cell's pixels it
    contributes to (shape ``(n_inputs, ny_cells, nx_cells)``; empty with *coverage_bin* 0).
    The coadd PSF at a position is the same weighted mean of the inputs' PSFs
    (:class:`CoaddPsf`)."""
    cells = (-(-shape[0] // coverage_bin), -(-shape[1] // coverage_bin)) if coverage_bin else ()
    maps: list[np.ndarray] = []
    num = np.zeros(shape)
    den = np.zeros(shape)
    var = np.zeros(shape)
    weights = []
    for im in images:
        # Warp only the bounding box the image covers.
        ny, nx = im.shape
        cx = np.array([0, nx - 1, nx - 1, 0], dtype=float)
        cy = np.array([0, 0, ny - 1, ny - 1], dtype=float)
        gx, gy = wcs.wcs_world2pix(*im.wcs.wcs_pix2world(cx, cy, 0), 0)
        x0, x1 = max(int(gx.min()) - 2, 0), min(int(np.ceil(gx.max())) + 3, shape[1])
        y0, y1 = max(int(gy.min()) - 2, 0), min(int(np.ceil(gy.max())) + 3, shape[0])
        if x1 <= x0 or y1 <= y0:
            weights.append(0.0)
            maps.append(np.zeros(cells))
            continue
        sub = wcs.deepcopy()
        sub.wcs.crpix = sub.wcs.crpix - np.array([x0, y0])
        sub.wcs.set()
        warped = imaging.warp(im, sub, (y1 - y0, x1 - x0))
        good = ~warped.mask_of("NO_DATA", "BAD", "SAT") & (warped.variance > 0)
        if not good.any():
            weights.append(0.0)
            maps.append(np.zeros(cells))
            continue
        w = 1.0 / float(np.median(warped.variance[good]))
        num[y0:y1, x0:x1] += np.where(good, w * warped.image, 0.0)
        den[y0:y1, x0:x1] += np.where(good, w, 0.0)
        var[y0:y1, x0:x1] += np.where(good, w * w * warped.variance, 0.0)
        weights.append(w * float(good.sum()))
        if coverage_bin:
            full = np.zeros(shape, dtype=np.float32)
            full[y0:y1, x0:x1] = good
            maps.append(w * _cell_mean(full, coverage_bin, cells))
    covered = den > 0
    safe = np.where(covered, den, 1.0)
    image = np.where(covered, num / safe, 0.0)
    variance = np.where(covered, var / safe**2, 0.0)
    mask = np.where(covered, 0, _NO_DATA).astype(np.int32)
    out = SimExposure(
        image=image.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=mask,
        wcs=wcs.deepcopy(),
        metadata={"BUNIT": "nJy"},
    )
    return out, weights, np.array(maps) if coverage_bin else np.zeros((len(weights), 0, 0))


def _cell_mean(image: np.ndarray, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Mean of *image* over *size* x *size* cells (partial cells at the far edges)."""
    ny, nx = cells
    padded = np.zeros((ny * size, nx * size), dtype=np.float64)
    padded[: image.shape[0], : image.shape[1]] = image
    return padded.reshape(ny, size, nx, size).mean(axis=(1, 3))


def coadd_psf(psfs: Sequence[imaging.PsfModel], weights: Sequence[float]) -> imaging.PsfModel:
    """Weighted mean of the inputs' PSF stamps and aperture corrections."""
    pairs = [(p, w) for p, w in zip(psfs, weights, strict=True) if w > 0]
    if not pairs:
        raise imaging.ProcessingError("no input image contributes to this coadd")
    size = max(p.size for p, _ in pairs)
    stack = np.zeros((size, size))
    apcorr = 0.0
    total = sum(w for _, w in pairs)
    for psf, w in pairs:
        pad = (size - psf.size) // 2
        stack[pad : pad + psf.size, pad : pad + psf.size] += w * psf.stamp
        apcorr += w * psf.apcorr
    return imaging.PsfModel(stack / stack.sum(), apcorr / total)


_COADD_PSF_MAGIC = -20_260_501.0


@dataclass
class CoaddPsf:
    """A position-dependent coadd PSF, after Rubin's ``CoaddPsf``: at each position, the mean
    of the PSFs of the inputs that cover it, weighted as the coadd weighted their pixels.

    *psfs* are the inputs' PSF models, *maps* their weight maps on cells of *cell* pixels
    (from :func:`coadd_with_coverage`). Stored as one float array (:meth:`to_array`).
    """

    psfs: list[imaging.PsfModel]
    maps: np.ndarray
    cell: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        keep = [i for i in range(len(self.psfs)) if self.maps[i].sum() > 0]
        if not keep:
            raise imaging.ProcessingError("no input image contributes to this coadd")
        self.psfs = [self.psfs[i] for i in keep]
        self.maps = np.asarray(self.maps[keep], dtype=np.float64)

    @property
    def mean(self) -> imaging.PsfModel:
        """The PSF averaged over the whole coadd (what a single-PSF model would use)."""
        return coadd_psf(self.psfs, list(self.maps.sum(axis=(1, 2))))

    @property
    def sigma(self) -> float:
        return self.mean.sigma

    def at(self, x: float, y: float) -> imaging.PsfModel:
        """The coadd PSF at pixel (*x*, *y*) of the coadd."""
        ny, nx = self.maps.shape[1:]
        bx = min(max(int(x // self.cell), 0), nx - 1)
        by = min(max(int(y // self.cell), 0), ny - 1)
        if (by, bx) not in self._cache:
            w = self.maps[:, by, bx]
            self._cache[(by, bx)] = coadd_psf(self.psfs, list(w)) if w.sum() > 0 else self.mean
        return self._cache[(by, bx)]

    def to_array(self) -> np.ndarray:
        """[magic, n, stamp size, ny cells, nx cells, cell, apcorrs, stamps, maps]."""
        size = max(p.size for p in self.psfs)
        stamps = np.zeros((len(self.psfs), size, size))
        for i, p in enumerate(self.psfs):
            pad = (size - p.size) // 2
            stamps[i, pad : pad + p.size, pad : pad + p.size] = p.stamp
        head = [_COADD_PSF_MAGIC, len(self.psfs), size, *self.maps.shape[1:], self.cell]
        apcorr = [p.apcorr for p in self.psfs]
        return np.concatenate([head, apcorr, stamps.ravel(), self.maps.ravel()])

    @classmethod
    def from_array(cls, array: np.ndarray) -> CoaddPsf:
        array = np.asarray(array, dtype=np.float64)
        if array[0] != _COADD_PSF_MAGIC:
            raise imaging.ProcessingError("not a coadd PSF (deep_coadd_psf) array")
        n, size, ny, nx, cell = (int(v) for v in array[1:6])
        apcorr = array[6 : 6 + n]
        o = 6 + n
        stamps = array[o : o + n * size * size].reshape(n, size, size)
        maps = array[o + n * size * size :].reshape(n, ny, nx)
        psfs = [imaging.PsfModel(stamps[i].copy(), float(apcorr[i])) for i in range(n)]
        return cls(psfs, maps, cell)


def detection_image(coadds: Sequence[SimExposure]) -> SimExposure:
    """Inverse-variance weighted mean of band coadds on one grid (image and variance)."""
    if not coadds:
        raise imaging.ProcessingError("no coadds to detect on")
    num = np.zeros(coadds[0].shape)
    den = np.zeros(coadds[0].shape)
    for c in coadds:
        good = (c.variance > 0) & ~c.mask_of("NO_DATA")
        w = np.where(good, 1.0 / np.where(good, c.variance, 1.0), 0.0)
        num += w * c.image
        den += w
    covered = den > 0
    return SimExposure(
        image=np.where(covered, num / np.where(covered, den, 1.0), 0.0).astype(np.float32),
        variance=np.where(covered, 1.0 / np.where(covered, den, 1.0), 0.0).astype(np.float32),
        mask=np.where(covered, 0, _NO_DATA).astype(np.int32),
        wcs=coadds[0].wcs,
    )


def detect_multiband(detection: SimExposure, psf_sigma: float, *, threshold: float = 5.0) -> Table:
    """Detect on the detection image: positions (windowed), moments, S/N, deblend flags."""
    found = imaging.detect(detection, threshold=threshold)
    image = np.ascontiguousarray(detection.image, dtype=np.float32)
    n = len(found)
    x, y = found["x"].astype(np.float64), found["y"].astype(np.float64)
    if n:
        wx, wy, wflag = sep.winpos(image, x, y, np.full(n, psf_sigma))
        ok = (wflag == 0) & (np.hypot(wx - x, wy - y) < 2.0)
        x, y = np.where(ok, wx, x), np.where(ok, wy, y)
    table = Table()
    table["x"] = x
    table["y"] = y
    table["a"] = found["a"].astype(np.float64)
    table["b"] = found["b"].astype(np.float64)
    table["theta"] = found["theta"].astype(np.float64)
    table["ixx"] = found["x2"].astype(np.float64)
    table["iyy"] = found["y2"].astype(np.float64)
    table["ixy"] = found["xy"].astype(np.float64)
    table["from_blend"] = (found["flag"] & sep.OBJ_MERGED) != 0
    err = np.sqrt(np.clip(detection.variance, 1e-30, None))
    flux, ferr, _ = (
        sep.sum_circle(image, x, y, 3.0 * psf_sigma, err=err, subpix=5)
        if n
        else (np.zeros(0), np.zeros(0), None)
    )
    table["snr"] = np.asarray(flux) / np.clip(np.asarray(ferr), 1e-30, None)
    if detection.wcs is not None and n:
        ra, dec = detection.wcs.wcs_pix2world(x, y, 0)
    else:
        ra, dec = np.zeros(n), np.zeros(n)
    table["coord_ra"] = ra
    table["coord_dec"] = dec
    return table


def _kron_flux(
    exposure: SimExposure, found: Table, psf_sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Kron (2.5 R_K) fluxes at *found*'s positions and shapes, with errors."""
    n = len(found)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    image = np.ascontiguousarray(exposure.image, dtype=np.float32)
    err = np.sqrt(np.clip(np.ascontiguousarray(exposure.variance, dtype=np.float32), 0, None))
    x, y = np.asarray(found["x"]), np.asarray(found["y"])
    a = np.clip(np.asarray(found["a"]), 0.5, None)
    b = np.clip(np.asarray(found["b"]), 0.5, None)
    theta = np.clip(np.asarray(found["theta"]), -np.pi / 2, np.pi / 2)
    mask = exposure.mask_of("NO_DATA", "BAD")
    kron, _ = sep.kron_radius(image, x, y, a, b, theta, 6.0, mask=mask)
    kron = np.where(np.isfinite(kron) & (kron > 0), kron, 0.0)
    # Small or unmeasurable: a circle of 2.5 PSF sigma (SExtractor's minimum), as Kron does.
    r_min = 2.5 * psf_sigma
    small = 2.5 * kron * np.sqrt(a * b) < r_min
    flux = np.zeros(n)
    ferr = np.zeros(n)
    big = ~small
    if big.any():
        f, e, _ = sep.sum_ellipse(
            image, x[big], y[big], a[big], b[big], theta[big], 2.5 * kron[big],
            err=err, mask=mask, subpix=1,
        )  # fmt: skip
        flux[big], ferr[big] = f, e
    if small.any():
        f, e, _ = sep.sum_circle(image, x[small], y[small], r_min, err=err, mask=mask, subpix=5)
        flux[small], ferr[small] = f, e
    return flux, ferr


def psf_at(psf: imaging.PsfModel | CoaddPsf) -> Callable[[float, float], imaging.PsfModel]:
    """The PSF at a pixel position: a :class:`CoaddPsf`'s local mean, or one model everywhere."""
    if isinstance(psf, CoaddPsf):
        return psf.at
    return lambda x, y: psf


def detection_psf_at(
    psfs: Sequence[imaging.PsfModel | CoaddPsf],
) -> Callable[[float, float], imaging.PsfModel]:
    """The PSF of the detection image (:func:`detection_image`) at a position: the bands'
    PSFs there, averaged."""
    each = [psf_at(p) for p in psfs]
    return lambda x, y: coadd_psf([f(x, y) for f in each], [1.0] * len(each))


def measure_bands(
    found: Table,
    coadds: Mapping[str, SimExposure],
    psfs: Mapping[str, imaging.PsfModel | CoaddPsf],
    shapes: Sequence[cmodel.ModelShape | None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per band: psfFlux(+Err), kronFlux(+Err), extendedness and flags at *found*'s positions,
    with the PSF at each position; with model *shapes* (:func:`cmodel.fit_shapes`) also
    cModelFlux(+Err) and fracDev.

    A band without data at a position (NO_DATA, or off the coadd) gets NaN and its flag set.
    """
    x, y = np.asarray(found["x"]), np.asarray(found["y"])
    n = len(found)
    out: dict[str, dict[str, np.ndarray]] = {}
    for band, exposure in coadds.items():
        local = psf_at(psfs[band])
        ny, nx = exposure.shape
        ix = np.clip(np.round(x).astype(int), 0, nx - 1)
        iy = np.clip(np.round(y).astype(int), 0, ny - 1)
        have = ~exposure.mask_of("NO_DATA")[iy, ix] if n else np.zeros(0, dtype=bool)
        fit = np.array(
            [
                imaging.psf_flux(exposure.image, exposure.variance, local(xi, yi), xi, yi)
                for xi, yi in zip(x, y, strict=True)
            ]
        ).reshape(n, 2)
        kron, kron_err = _kron_flux(exposure, found, psfs[band].sigma)
        psf_flux = np.where(have, fit[:, 0], np.nan)
        psf_err = np.where(have, fit[:, 1], np.nan)
        kron = np.where(have, kron, np.nan)
        kron_err = np.where(have, kron_err, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            ext = np.where(
                np.isfinite(psf_flux) & np.isfinite(kron) & (kron > 0),
                (psf_flux < EXTENDED_RATIO * kron).astype(np.float64),
                np.nan,
            )
        out[band] = {
            "psfFlux": psf_flux,
            "psfFluxErr": psf_err,
            "psfFlux_flag": ~np.isfinite(psf_flux),
            "kronFlux": kron,
            "kronFluxErr": kron_err,
            "kron_flag": ~np.isfinite(kron),
            "extendedness": ext,
        }
        if shapes is not None:
            models = cmodel.cmodel_fluxes(exposure, found, list(shapes), local)
            out[band].update({k: np.where(have, v, np.nan) for k, v in models.items()})
    return out


def forced_photometry(
    exposure: SimExposure, psf: imaging.PsfModel, ra: np.ndarray, dec: np.ndarray
) -> dict[str, np.ndarray]:
    """PSF-fit fluxes (aperture-corrected) at fixed sky positions on a calibrated image.

    Returns x, y, inside (the position is on the image), psfFlux, psfFluxErr (NaN where the PSF
    stamp does not fit on the image), and the saturated/edge pixel flags at the position.
    """
    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    n = len(ra)
    if n == 0:
        empty = np.zeros(0)
        return {k: empty for k in ("x", "y", "psfFlux", "psfFluxErr")} | {
            k: np.zeros(0, dtype=bool) for k in ("inside", "saturated", "edge")
        }
    x, y = exposure.wcs.wcs_world2pix(ra, dec, 0)
    ny, nx = exposure.shape
    inside = (x >= -0.5) & (y >= -0.5) & (x < nx - 0.5) & (y < ny - 0.5)
    flux = np.full(n, np.nan)
    err = np.full(n, np.nan)
    for i in np.flatnonzero(inside):
        flux[i], err[i] = imaging.psf_flux(exposure.image, exposure.variance, psf, x[i], y[i])
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    sat = exposure.mask_of("SAT")[iy, ix] & inside
    edge = (exposure.mask_of("EDGE", "NO_DATA", "BAD")[iy, ix] | ~np.isfinite(flux)) & inside
    return {
        "x": x,
        "y": y,
        "inside": inside,
        "psfFlux": flux,
        "psfFluxErr": err,
        "saturated": sat,
        "edge": edge,
    }
