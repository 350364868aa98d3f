"""Services: SODA cutouts of Butler images.

A cutout is the pixel bounding box of a sky region (sampled along its edge, projected through
the image's WCS and clipped to the image), read with ``section`` so only the needed rows are
decompressed. Each cutout becomes ``IMAGE``/``MASK``/``VARIANCE`` extensions (those the file
has) whose headers keep the original WCS with ``CRPIX`` shifted, plus ``LTV1/2`` recording the
offset in the parent image. Several cutouts go into one multi-extension file, numbered by
``EXTVER``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import lsst.sphgeom as sg
import numpy as np
from astropy.io import fits

from sciplat.services.common.errors import UsageError
from sciplat.services.images.backend import CutoutLimits
from sciplat.services.images.butler import DatasetInfo
from sciplat.services.images.fitsfiles import FileLayout, layout_of
from sciplat.services.images.regions import SkyRegion

__all__ = ["CutoutLimits", "CutoutRequest", "footprint_of", "make_cutouts", "pixel_box"]

_DROP = ("CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "XTENSION", "PCOUNT", "GCOUNT")


@dataclass(frozen=True)
class CutoutRequest:
    """One dataset and one sky region to cut from it."""

    dataset: DatasetInfo
    region: SkyRegion
    label: str  # the parameter as given, e.g. "CIRCLE 62.1 -37.0 0.01"


def footprint_of(layout: FileLayout) -> sg.ConvexPolygon:
    """The image's outline on the sky (its four pixel-edge corners)."""
    ny, nx = layout.shape
    xs = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = layout.wcs.all_pix2world(xs, ys, 0)
    return sg.ConvexPolygon.convexHull(
        [
            sg.UnitVector3d(sg.LonLat.fromDegrees(float(a), float(d)))
            for a, d in zip(ra, dec, strict=True)
        ]
    )


def pixel_box(layout: FileLayout, region: SkyRegion) -> tuple[int, int, int, int] | None:
    """(x0, x1, y0, y1), half-open, of *region* within the image; None if they do not meet."""
    if not region.overlaps(footprint_of(layout)):
        return None
    ny, nx = layout.shape
    points = region.boundary(128)
    x, y = layout.wcs.all_world2pix(points[:, 0], points[:, 1], 0)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    x, y = x[ok], y[ok]
    if region.kind == "circle":  # the centre matters when the circle is larger than the image
        cx, cy = layout.wcs.all_world2pix([region.values[0]], [region.values[1]], 0)
        x, y = np.append(x, cx), np.append(y, cy)
    # A region containing the whole image has its boundary outside it on every side.
    x0 = max(0, math.floor(x.min() + 0.5))
    x1 = min(nx, math.floor(x.max() + 0.5) + 1)
    y0 = max(0, math.floor(y.min() + 0.5))
    y1 = min(ny, math.floor(y.max() + 0.5) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, x1, y0, y1


def _cutout_header(source: fits.Header, x0: int, y0: int) -> fits.Header:
    header = source.copy()
    for key in _DROP:
        header.remove(key, ignore_missing=True, remove_all=True)
    for axis, offset in (("1", x0), ("2", y0)):
        if f"CRPIX{axis}" in header:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - offset
        header[f"LTV{axis}"] = (-offset, "offset of the cutout in the parent image")
    return header


def make_cutouts(requests: list[CutoutRequest], limits: CutoutLimits) -> bytes:
    """A FITS file with one set of plane extensions per request (in order)."""
    if len(requests) > limits.max_cutouts:
        raise UsageError(
            f"{len(requests)} cutouts requested; at most {limits.max_cutouts} per request"
        )
    planned = []
    total = 0
    for request in requests:
        layout = layout_of(request.dataset.path)
        if layout.wcs is None:
            raise UsageError(f"Dataset {request.dataset.did} has no celestial WCS to cut with")
        box = pixel_box(layout, request.region)
        if box is None:
            raise UsageError(
                f"The region {request.label!r} does not overlap the footprint of dataset "
                f"{request.dataset.did}"
            )
        x0, x1, y0, y1 = box
        total += (x1 - x0) * (y1 - y0) * len(layout.planes)
        if total > limits.max_pixels:
            raise UsageError(
                f"The cutouts requested add up to more than {limits.max_pixels} pixels; "
                "ask for smaller regions or fewer cutouts"
            )
        planned.append((request, layout, box))

    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "sciplat SODA"
    primary.header["NCUTOUT"] = (len(planned), "number of cutouts (EXTVER 1..n)")
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [primary]
    for number, (request, layout, (x0, x1, y0, y1)) in enumerate(planned, start=1):
        primary.header[f"CUTID{number}"] = request.dataset.did
        primary.header[f"CUTRG{number}"] = request.label[:68]
        with fits.open(layout.path, memmap=True) as hdul:
            for name in ("IMAGE", "MASK", "VARIANCE"):
                plane = layout.planes.get(name)
                if plane is None:
                    continue
                data = hdul[plane.index].section[y0:y1, x0:x1]
                data = np.asarray(data)
                data = data.astype(data.dtype.newbyteorder("="), copy=False)
                header = _cutout_header(plane.header, x0, y0)
                hdu = fits.ImageHDU(data=data, header=header, name=name, ver=number)
                hdu.header["DATASET"] = request.dataset.did
                hdus.append(hdu)
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()
