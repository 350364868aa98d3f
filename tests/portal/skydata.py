"""A small synthetic sky for the portal tests: a star-field FITS image with a TAN WCS and the
stars as a table (what a notebook pushes to the portal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

CENTER = (150.0, 2.0)
SIZE = 400
SCALE = 0.001  # deg per pixel


def star_field(path: Path, *, stars: int = 25, seed: int = 3) -> Table:
    """Write a star-field image to *path*; returns the stars (ra, dec, mag) on it."""
    rng = np.random.default_rng(seed)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(CENTER)
    wcs.wcs.crpix = [SIZE / 2 + 0.5, SIZE / 2 + 0.5]
    wcs.wcs.cdelt = [-SCALE, SCALE]
    x, y = rng.uniform(20, SIZE - 20, stars), rng.uniform(20, SIZE - 20, stars)
    mag = rng.uniform(18, 23, stars)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    data = rng.normal(100, 3, (SIZE, SIZE))
    for xi, yi, m in zip(x, y, mag, strict=True):
        data += 10 ** (-0.4 * (m - 27)) / 2 * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / 4.5)
    fits.PrimaryHDU(data.astype("f4"), header=wcs.to_header()).writeto(path, overwrite=True)
    sky = wcs.pixel_to_world(x, y)
    return Table({"ra": sky.ra.deg, "dec": sky.dec.deg, "mag": mag})
