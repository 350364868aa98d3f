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
from typing import BinaryIO

import lsst.sphgeom as sg
import numpy as np
from astropy.io import fits

from sciplat.services.common.errors import UsageError
from sciplat.services.images.backend import CutoutLimits
from sciplat.services.images.butler import DatasetInfo
from sciplat.services.images.fitsfiles import FileLayout, layout_of, open_planes
from sciplat.services.images.regions import SkyRegion

__all__ = [
    "CutoutLimits",
    "CutoutRequest",
    "footprint_of",
    "make_cutouts",
    "pixel_box",
    "write_cutouts",
]


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


_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"}
_STRUCTURAL |= {"PCOUNT", "GCOUNT", "CHECKSUM", "DATASUM", "EXTNAME", "EXTVER", "BSCALE", "BZERO"}
_BITPIX = {"u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}
_templates: dict[tuple[object, ...], tuple[list[str], dict[str, float]]] = {}


def _card(key: str, value: object, comment: str = "") -> str:
    """An 80-character header card (plain values formatted here; astropy does the rest)."""
    if isinstance(value, bool):
        text = ("T" if value else "F").rjust(20)
    elif isinstance(value, int):
        text = str(value).rjust(20)
    elif isinstance(value, str) and len(value) <= 60 and value.isprintable() and "'" not in value:
        text = f"'{value:<8}'".ljust(20)
    else:
        return fits.Card(key, value, comment).image
    card = f"{key:<8}= {text}" + (f" / {comment}" if comment else "")
    return card[:80].ljust(80)


def _template(layout: FileLayout, name: str) -> tuple[list[str], dict[str, float]]:
    """The plane's non-structural cards as 80-character images (CRPIX kept apart), cached."""
    plane = layout.planes[name]
    plane_header = plane.header
    key = (layout.location.key, name, plane.start, plane.end)
    cached = _templates.get(key)
    if cached is None:
        cards, crpix = [], {}
        for card in plane_header.cards:
            if card.keyword in _STRUCTURAL or card.keyword in ("", "END"):
                continue
            if card.keyword in ("CRPIX1", "CRPIX2"):
                crpix[card.keyword] = float(card.value)
                continue
            cards.append(card.image)
        cached = (cards, crpix)
        if len(_templates) > 1024:
            _templates.clear()
        _templates[key] = cached
    return cached


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 2880)


def _extension(
    layout: FileLayout, name: str, version: int, data: np.ndarray, x0: int, y0: int, did: str
) -> bytes:
    """One IMAGE extension: the parent's header with CRPIX shifted and LTV1/2 set, then data."""
    cards, crpix = _template(layout, name)
    ny, nx = data.shape
    head = [
        _card("XTENSION", "IMAGE"),
        _card("BITPIX", _BITPIX[data.dtype.str[1:]]),
        _card("NAXIS", 2),
        _card("NAXIS1", nx),
        _card("NAXIS2", ny),
        _card("PCOUNT", 0),
        _card("GCOUNT", 1),
        _card("EXTNAME", name),
        _card("EXTVER", version),
        *cards,
        *(fits.Card(k, v - (x0 if k == "CRPIX1" else y0)).image for k, v in crpix.items()),
        _card("LTV1", -x0, "offset of the cutout in the parent image"),
        _card("LTV2", -y0, "offset of the cutout in the parent image"),
        _card("DATASET", did),
        "END".ljust(80),
    ]
    big_endian = data.astype(data.dtype.newbyteorder(">"), copy=False)
    return _pad("".join(head).encode("ascii"), b" ") + _pad(big_endian.tobytes(), b"\0")


def write_cutouts(requests: list[CutoutRequest], limits: CutoutLimits, out: BinaryIO) -> int:
    """Write a FITS file with one set of plane extensions per request (in order) to *out*,
    one extension at a time; every request is checked before anything is written."""
    if len(requests) > limits.max_cutouts:
        raise UsageError(
            f"{len(requests)} cutouts requested; at most {limits.max_cutouts} per request"
        )
    planned = []
    total = 0
    for request in requests:
        layout = layout_of(request.dataset.location)
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

    primary = [
        _card("SIMPLE", True),
        _card("BITPIX", 8),
        _card("NAXIS", 0),
        _card("EXTEND", True),
        _card("ORIGIN", "sciplat SODA"),
        _card("NCUTOUT", len(planned), "number of cutouts (EXTVER 1..n)"),
    ]
    for number, (request, _, _) in enumerate(planned, start=1):
        primary.append(_card(f"CUTID{number}", request.dataset.did))
        primary.append(fits.Card(f"CUTRG{number}", request.label).image)
    primary.append("END".ljust(80))
    size = out.write(_pad("".join(primary).encode("ascii"), b" "))
    for number, (request, layout, (x0, x1, y0, y1)) in enumerate(planned, start=1):
        with open_planes(layout) as planes:
            for name in ("IMAGE", "MASK", "VARIANCE"):
                if name in planes:
                    data = np.asarray(planes[name].section[y0:y1, x0:x1])
                    did = request.dataset.did
                    size += out.write(_extension(layout, name, number, data, x0, y0, did))
    return size


def make_cutouts(requests: list[CutoutRequest], limits: CutoutLimits) -> bytes:
    """The cutout file in memory (small requests and tests; see :func:`write_cutouts`)."""
    buffer = io.BytesIO()
    write_cutouts(requests, limits, buffer)
    return buffer.getvalue()
