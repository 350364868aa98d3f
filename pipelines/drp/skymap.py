"""The sky map of the mini data release: one tract of square patches on a TAN projection.

Tract 0 is centred on the simulated field (the data preview's centre) at the survey's pixel
scale, so the centre of the middle patch is the field's (the tiny data preview fits in it); it
is :data:`PATCHES` x :data:`PATCHES` patches of :data:`PATCH_PIXELS` pixels, each
with a :data:`BORDER`-pixel overlap on every side. A coadd covers its patch's *outer* box; an
object belongs to (is primary in) the patch whose *inner* box holds its centre, so each object
is measured once. ``patch = iy * PATCHES + ix`` (Rubin's sequential patch index).
The registry gets ``skymap``, ``tract`` and ``patch`` records with the outer boxes as regions,
so the middleware's graph builder relates visits and patches spatially.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from lsst.sphgeom import Angle as SphAngle
from lsst.sphgeom import Circle, ConvexPolygon, LonLat, Region, UnitVector3d

from sciplat.pipelines.sim.survey import FIELD_DEC, FIELD_RA, PIXEL_SCALE

__all__ = [
    "BORDER",
    "PATCHES",
    "PATCH_PIXELS",
    "SKYMAP",
    "PatchGeometry",
    "patch_geometry",
    "patches_overlapping",
    "register_skymap",
    "tract_wcs",
]

SKYMAP = "sciplat"
TRACT = 0
PATCHES = 3
PATCH_PIXELS = 3000
BORDER = 100
TRACT_PIXELS = PATCHES * PATCH_PIXELS


def tract_wcs() -> WCS:
    """TAN WCS of tract 0 (north up, east left), pixel (0, 0) at the tract's corner."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [FIELD_RA, FIELD_DEC]
    wcs.wcs.cd = np.array([[-PIXEL_SCALE / 3600, 0.0], [0.0, PIXEL_SCALE / 3600]])
    wcs.wcs.crpix = [TRACT_PIXELS / 2 + 0.5, TRACT_PIXELS / 2 + 0.5]
    wcs.wcs.set()
    return wcs


@dataclass(frozen=True)
class PatchGeometry:
    """Pixel boxes of one patch in tract pixels: inner [x0, x1) x [y0, y1), outer with border."""

    tract: int
    patch: int
    inner: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the outer box: the coadd's shape."""
        x0, x1, y0, y1 = self.outer
        return y1 - y0, x1 - x0

    def wcs(self) -> WCS:
        """The coadd's WCS: the tract's, shifted to the outer box's corner."""
        wcs = tract_wcs()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([self.outer[0], self.outer[2]])
        wcs.wcs.set()
        return wcs

    def corners(self, box: str = "outer") -> np.ndarray:
        """(4, 2) RA/Dec of the corners of the inner or outer box, counter-clockwise."""
        x0, x1, y0, y1 = self.inner if box == "inner" else self.outer
        xs = np.array([x0, x1, x1, x0], dtype=float) - 0.5
        ys = np.array([y0, y0, y1, y1], dtype=float) - 0.5
        return np.column_stack(tract_wcs().wcs_pix2world(xs, ys, 0))

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Whether positions fall in the inner box (the objects this patch owns)."""
        x, y = tract_wcs().wcs_world2pix(np.asarray(ra), np.asarray(dec), 0)
        x0, x1, y0, y1 = self.inner
        return (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)


def patch_geometry(patch: int, tract: int = TRACT) -> PatchGeometry:
    if tract != TRACT or not 0 <= patch < PATCHES * PATCHES:
        raise ValueError(f"no patch {patch} in tract {tract} of sky map {SKYMAP!r}")
    ix, iy = patch % PATCHES, patch // PATCHES
    x0, y0 = ix * PATCH_PIXELS, iy * PATCH_PIXELS
    inner = (x0, x0 + PATCH_PIXELS, y0, y0 + PATCH_PIXELS)
    outer = (
        max(x0 - BORDER, 0),
        min(x0 + PATCH_PIXELS + BORDER, TRACT_PIXELS),
        max(y0 - BORDER, 0),
        min(y0 + PATCH_PIXELS + BORDER, TRACT_PIXELS),
    )
    return PatchGeometry(tract, patch, inner, outer)


def _polygon(corners: np.ndarray) -> ConvexPolygon:
    return ConvexPolygon.convexHull(
        [UnitVector3d(LonLat.fromDegrees(float(r), float(d))) for r, d in corners]
    )


def _hash() -> bytes:
    spec = f"{SKYMAP}:{FIELD_RA}:{FIELD_DEC}:{PIXEL_SCALE}:{PATCHES}:{PATCH_PIXELS}:{BORDER}"
    return hashlib.sha1(spec.encode()).digest()


def register_skymap(butler: object) -> None:
    """Insert the sky map, its tract and patches into the registry (idempotent)."""
    reg = butler.registry  # type: ignore[attr-defined]
    reg.insertDimensionData(
        "skymap",
        {
            "name": SKYMAP,
            "hash": _hash(),
            "tract_max": 1,
            "patch_nx_max": PATCHES,
            "patch_ny_max": PATCHES,
        },
        skip_existing=True,
    )
    edge = np.array([0, TRACT_PIXELS, TRACT_PIXELS, 0], dtype=float) - 0.5
    tract_box = np.column_stack(tract_wcs().wcs_pix2world(edge, np.roll(edge, -1), 0))
    reg.insertDimensionData(
        "tract", {"skymap": SKYMAP, "id": TRACT, "region": _polygon(tract_box)}, skip_existing=True
    )
    reg.insertDimensionData(
        "patch",
        *[
            {
                "skymap": SKYMAP,
                "tract": TRACT,
                "id": p,
                "cell_x": p % PATCHES,
                "cell_y": p // PATCHES,
                "region": _polygon(patch_geometry(p).corners()),
            }
            for p in range(PATCHES * PATCHES)
        ],
        skip_existing=True,
    )


def parse_region(text: str) -> Region:
    """``"RA,DEC,RADIUS"`` (degrees) -> a sphgeom circle; ValueError with the reason."""
    try:
        ra, dec, radius = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"region {text!r}: expected RA,DEC,RADIUS in degrees") from None
    if not (-90 <= dec <= 90) or radius <= 0 or radius > 180:
        raise ValueError(f"region {text!r}: need -90 <= DEC <= 90 and 0 < RADIUS <= 180")
    return Circle(UnitVector3d(LonLat.fromDegrees(ra, dec)), SphAngle.fromDegrees(radius))


def patches_overlapping(region: Region, patches: Iterable[int] | None = None) -> list[int]:
    """Patches of tract 0 whose inner box overlaps *region*."""
    wanted = range(PATCHES * PATCHES) if patches is None else patches
    return [
        p for p in wanted if not _polygon(patch_geometry(p).corners("inner")).isDisjointFrom(region)
    ]
