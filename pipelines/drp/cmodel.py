"""Composite-model (CModel-like) fluxes: PSF-convolved exponential + de Vaucouleurs profiles.

After Rubin's CModel (Bosch et al. 2018, §4.9.10), cut down to what is cheap: each object's
ellipticity and orientation come from its PSF-deconvolved second moments on the detection
image, and the two profiles' half-light radii are chosen together on a grid around the
deconvolved moment size by the best two-component fit to the detection image
(:func:`fit_shapes`). In every band the two PSF-convolved profiles, with those shapes fixed,
are then fitted linearly to the pixels (:func:`cmodel_fluxes`): the flux is the sum of their
non-negative amplitudes. Profiles are normalised to their analytic (truncated) total, so flux
outside the fitting stamp is counted, as a model flux should. The PSF is the coadd's PSF at
the object's position."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammainc

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.tasks import imaging

__all__ = ["ModelShape", "cmodel_fluxes", "fit_shapes", "profile"]

#: Sersic indices and their b_n (half-light radius normalisation).
_SERSIC = {"exp": (1.0, 1.678347), "dev": (4.0, 7.669250)}
#: Half-light radius factors (times the moment size) tried for each profile (0: a point).
SIZE_GRID = (0.0, 0.5, 0.7, 1.0, 1.4, 2.0)
_MIN_RE = 0.05  # pixels (a point source, for the sub-sampled centre)
#: Profiles end at this many half-light radii (SDSS and Rubin truncate de Vaucouleurs at 8).
TRUNCATION = 8.0
_MAX_HALF = 40  # largest fitting stamp half-width (pixels)
PsfAt = Callable[[float, float], imaging.PsfModel]


@dataclass
class ModelShape:
    """An object's model shapes: axis ratio, position angle (radians from +x), and the
    half-light radii (pixels, semi-major axis) of its exponential and de Vaucouleurs fits."""

    q: float
    theta: float
    re_exp: float
    re_dev: float


def profile(kind: str, re: float, q: float, theta: float, half: int, dx: float, dy: float):
    """A Sersic profile (``exp`` or ``dev``) on a (2 half + 1)^2 stamp centred at (dx, dy)
    from the middle pixel (the steep centre 5x sub-sampled), truncated at :data:`TRUNCATION`
    half-light radii as Rubin's and SDSS's model profiles are, and normalised so that the
    whole truncated profile has flux 1: the stamp holds the part inside the largest ellipse
    that fits in it."""
    n, b = _SERSIC[kind]
    c, s = np.cos(theta), np.sin(theta)

    def radius(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.sqrt((x * c + y * s) ** 2 + ((-x * s + y * c) / q) ** 2)

    edge = min(half - 0.5, TRUNCATION * re)

    def value(r: np.ndarray) -> np.ndarray:
        return np.where(r <= edge, np.exp(-b * (r / re) ** (1.0 / n)), 0.0)

    grid = np.arange(-half, half + 1, dtype=np.float64)
    image = value(radius(grid[None, :] - dx, grid[:, None] - dy))
    core = min(3, half)
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    cg = np.arange(-core, core + 1, dtype=np.float64)
    yy = (cg[:, None, None, None] + sub[None, None, :, None]) - dy
    xx = (cg[None, :, None, None] + sub[None, None, None, :]) - dx
    centre = slice(half - core, half + core + 1)
    image[centre, centre] = value(radius(xx, yy)).mean(axis=(2, 3))
    total = image.sum()
    if total <= 0:
        return image
    inside = gammainc(2 * n, b * (edge / re) ** (1.0 / n))
    return image / total * inside / gammainc(2 * n, b * TRUNCATION ** (1.0 / n))


def _convolved(kind: str, re: float, shape: ModelShape, psf: np.ndarray, half: int) -> np.ndarray:
    # Centred on the middle pixel and convolved with the PSF shifted by the sub-pixel offset
    # (PsfModel.at, as PSF fits use): a point-like profile is then exactly the PSF fit.
    return fftconvolve(profile(kind, re, shape.q, shape.theta, half, 0.0, 0.0), psf, "same")


def _amplitudes(e: np.ndarray, d: np.ndarray, w: np.ndarray, data: np.ndarray):
    """Weighted least-squares amplitudes of models *e* and *d*, both >= 0 (else the better
    single one); with the normal matrix and right-hand side (chi^2 = const - amp . rhs)."""
    we, wd = w * e, w * d
    normal = np.array([[e @ we, e @ wd], [d @ we, d @ wd]])
    rhs = np.array([we @ data, wd @ data])
    amp = np.linalg.lstsq(normal, rhs, rcond=1e-6)[0]
    if amp.min() < 0:
        single = np.array([rhs[0] / normal[0, 0], rhs[1] / normal[1, 1]])
        k = int(np.argmax(single * rhs))
        amp = np.zeros(2)
        amp[k] = single[k]
    return amp, normal, rhs


def _half_width(re: float, psf: imaging.PsfModel) -> int:
    return int(np.clip(np.ceil(3 * psf.sigma + 4 * re), 8, _MAX_HALF))


def _cut(exposure: SimExposure, x: float, y: float, half: int):
    """Pixels, inverse variance (0 where masked) and sub-pixel offset of a stamp at (x, y);
    None where the stamp is not all on the image."""
    ix, iy = round(x), round(y)
    ny, nx = exposure.shape
    if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
        return None
    sl = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
    data = np.asarray(exposure.image[sl], dtype=np.float64)
    var = np.asarray(exposure.variance[sl], dtype=np.float64)
    bad = exposure.mask_of("NO_DATA", "BAD", "SAT")[sl] | ~(var > 0)
    w = np.where(bad, 0.0, 1.0 / np.where(var > 0, var, 1.0))
    return data, w, x - ix, y - iy


def _moment_shape(ixx: float, iyy: float, ixy: float, psf_sigma: float) -> tuple[float, ...]:
    """Axis ratio, angle and semi-major 'half-light' size of the PSF-deconvolved moments."""
    a = ixx - psf_sigma**2
    c = iyy - psf_sigma**2
    if not np.isfinite(a + c + ixy) or a + c <= 0.02:
        return 1.0, 0.0, _MIN_RE
    tr, det = a + c, a * c - ixy**2
    disc = np.sqrt(max(tr**2 / 4 - det, 0.0))
    major, minor = tr / 2 + disc, max(tr / 2 - disc, 0.01 * (tr / 2 + disc))
    theta = 0.5 * np.arctan2(2 * ixy, a - c)
    # A Gaussian of variance s^2 per axis has a half-light radius 1.1774 s.
    return float(np.sqrt(minor / major)), float(theta), max(1.1774 * np.sqrt(major), _MIN_RE)


def fit_shapes(detection: SimExposure, found, psf_at: PsfAt) -> list[ModelShape | None]:
    """Each object's :class:`ModelShape` from the detection image (None off the image).

    *found* has ``x``, ``y`` and the moments ``ixx``, ``iyy``, ``ixy`` (pixels^2).
    """
    shapes: list[ModelShape | None] = []
    for row in found:
        x, y = float(row["x"]), float(row["y"])
        psf = psf_at(x, y)
        q, theta, size = _moment_shape(
            float(row["ixx"]), float(row["iyy"]), float(row["ixy"]), psf.sigma
        )
        half = _half_width(size * max(SIZE_GRID), psf)
        cut = _cut(detection, x, y, half)
        if cut is None:
            shapes.append(None)
            continue
        data, w, dx, dy = cut
        shifted = psf.at(dx, dy)
        radii = [max(size * f, _MIN_RE) for f in SIZE_GRID]
        models = {
            kind: [_convolved(kind, re, ModelShape(q, theta, re, re), shifted, half).ravel()
                   for re in radii]
            for kind in ("exp", "dev")
        }  # fmt: skip
        wv, dv = w.ravel(), data.ravel()
        chi2 = np.full((len(radii), len(radii)), np.inf)
        for i, e in enumerate(models["exp"]):
            for j, d in enumerate(models["dev"]):
                amp, _, rhs = _amplitudes(e, d, wv, dv)
                chi2[i, j] = -float(amp @ rhs)
        i, j = np.unravel_index(int(np.argmin(chi2)), chi2.shape)
        best = {"exp": radii[i], "dev": radii[j]}
        shapes.append(ModelShape(q, theta, best["exp"], best["dev"]))
    return shapes


def cmodel_fluxes(
    exposure: SimExposure, found, shapes: list[ModelShape | None], psf_at: PsfAt
) -> dict[str, np.ndarray]:
    """CModel flux, its error and ``fracDev`` (the de Vaucouleurs part) of every object on
    one band's coadd; NaN where the object has no shape or its stamp is off the image.
    Fluxes carry the PSF's aperture correction, as PSF fluxes do."""
    n = len(shapes)
    flux, err, frac = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i, (row, shape) in enumerate(zip(found, shapes, strict=True)):
        if shape is None:
            continue
        x, y = float(row["x"]), float(row["y"])
        psf = psf_at(x, y)
        half = _half_width(max(shape.re_exp, shape.re_dev), psf)
        cut = _cut(exposure, x, y, half)
        if cut is None:
            continue
        data, w, dx, dy = cut
        shifted = psf.at(dx, dy)
        e = _convolved("exp", shape.re_exp, shape, shifted, half).ravel()
        d = _convolved("dev", shape.re_dev, shape, shifted, half).ravel()
        amp, _, _ = _amplitudes(e, d, w.ravel(), data.ravel())
        wv = w.ravel()
        total = float(amp.sum())
        shape_model = (amp[0] * e + amp[1] * d) / total if total != 0 else (e + d) / 2
        norm = float(shape_model @ (wv * shape_model))
        flux[i] = total * psf.apcorr
        err[i] = np.sqrt(1.0 / norm) * psf.apcorr if norm > 0 else np.nan
        frac[i] = amp[1] / total if total > 0 else np.nan
    return {"cModelFlux": flux, "cModelFluxErr": err, "fracDev": frac}
