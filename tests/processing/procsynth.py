"""Synthetic images with known answers for the processing tests."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from sciplat.pipelines.butler_io import SimExposure


def tan_wcs(n: int, ra: float = 62.0, dec: float = -37.0, scale_arcsec: float = 0.2) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    wcs.wcs.cd = np.array([[-scale_arcsec / 3600, 0], [0, scale_arcsec / 3600]])
    wcs.wcs.set()
    return wcs


def add_gaussian(image: np.ndarray, x: float, y: float, flux: float, sigma: float) -> None:
    half = int(np.ceil(6 * sigma))
    ix, iy = round(x), round(y)
    y0, y1 = max(iy - half, 0), min(iy + half + 1, image.shape[0])
    x0, x1 = max(ix - half, 0), min(ix + half + 1, image.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    # Integrate over the pixel with a 3x3 sub-sampling.
    acc = np.zeros(yy.shape)
    for dy in (-1 / 3, 0, 1 / 3):
        for dx in (-1 / 3, 0, 1 / 3):
            acc += np.exp(-0.5 * ((xx + dx - x) ** 2 + (yy + dy - y) ** 2) / sigma**2)
    acc /= 9 * 2 * np.pi * sigma**2
    image[y0:y1, x0:x1] += flux * acc


def star_field(
    rng: np.random.Generator,
    n: int = 400,
    nstars: int = 60,
    margin: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Random star positions (n, 2) and fluxes (electrons) on an n x n image."""
    xy = rng.uniform(margin, n - margin, (nstars, 2))
    flux = 10 ** rng.uniform(3.5, 5.0, nstars)
    return xy, flux


def render(
    rng: np.random.Generator,
    xy: np.ndarray,
    flux: np.ndarray,
    sigma: float,
    n: int = 400,
    sky_sigma: float = 10.0,
    scale: float = 1.0,
) -> SimExposure:
    """Stars (Gaussian PSF) with Gaussian noise: sky noise plus source Poisson noise."""
    truth = np.zeros((n, n))
    for (x, y), f in zip(xy, flux, strict=True):
        add_gaussian(truth, x, y, f, sigma)
    variance = sky_sigma**2 + truth
    image = truth + rng.normal(0, 1, truth.shape) * np.sqrt(variance)
    return SimExposure(
        image=(image * scale).astype(np.float32),
        variance=(variance * scale**2).astype(np.float32),
        mask=np.zeros((n, n), dtype=np.int32),
        wcs=tan_wcs(n),
        metadata={},
    )
