"""Images in the portal: FITS files (from SIA/SODA, uploads, URLs) kept per user, rendered to
PNG with a stretch and a colour map, with their WCS for coordinate read-out and overlays."""

from __future__ import annotations

import io
import json
import re
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sciplat.services.common.errors import NotFoundError, UsageError

__all__ = ["STRETCHES", "ImageInfo", "ImageStore"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STRETCHES = ("linear", "sqrt", "log", "asinh", "zscale")
COLORMAPS = ("gray", "viridis", "magma", "inferno", "cividis", "gist_heat")
MAX_SIDE = 4096


@dataclass
class ImageInfo:
    id: str
    title: str
    width: int
    height: int
    hdu: int
    has_wcs: bool
    center: list[float] | None = None  # ra, dec (deg)


def _load(path: Path, hdu: int | None = None) -> tuple[np.ndarray, Any, int]:
    """The 2-D data, its WCS (or None) and the HDU index of the first image in *path*."""
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        with fits.open(path, memmap=False) as hdul:
            indices = [hdu] if hdu is not None else range(len(hdul))
            for index in indices:
                if index >= len(hdul):
                    raise UsageError(f"The file has no HDU {index}")
                data = hdul[index].data
                if data is None or not isinstance(data, np.ndarray) or data.ndim < 2:
                    continue
                header = hdul[index].header
                data = np.asarray(data, dtype="f4")
                while data.ndim > 2:
                    data = data[0]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wcs = WCS(header, naxis=2)
                return data, (wcs if wcs.has_celestial else None), index
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"The image cannot be read as FITS: {exc}") from exc
    raise UsageError("The FITS file has no 2-D image")


class ImageStore:
    """FITS images of each user under *root* (``<user>/<id>.fits`` + ``.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, user: str) -> Path:
        path = self.root / user
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, user: str, fits_path: Path, title: str, hdu: int | None = None) -> ImageInfo:
        """Check that *fits_path* holds an image and keep it (the file is moved)."""
        data, wcs, index = _load(fits_path, hdu)
        image_id = uuid.uuid4().hex[:16]
        target = self._dir(user) / f"{image_id}.fits"
        fits_path.replace(target)
        center = None
        if wcs is not None:
            sky = wcs.pixel_to_world(data.shape[1] / 2 - 0.5, data.shape[0] / 2 - 0.5)
            center = [float(sky.icrs.ra.deg), float(sky.icrs.dec.deg)]
        info = ImageInfo(
            id=image_id,
            title=title,
            width=int(data.shape[1]),
            height=int(data.shape[0]),
            hdu=index,
            has_wcs=wcs is not None,
            center=center,
        )
        (self._dir(user) / f"{image_id}.json").write_text(json.dumps(asdict(info)))
        return info

    def info(self, user: str, image_id: str) -> ImageInfo:
        if not _ID.match(image_id) or not (self._dir(user) / f"{image_id}.json").exists():
            raise NotFoundError(f"No image {image_id!r}")
        return ImageInfo(**json.loads((self._dir(user) / f"{image_id}.json").read_text()))

    def fits_path(self, user: str, image_id: str) -> Path:
        self.info(user, image_id)
        return self._dir(user) / f"{image_id}.fits"

    def _open(self, user: str, image_id: str) -> tuple[np.ndarray, Any]:
        info = self.info(user, image_id)
        data, wcs, _ = _load(self.fits_path(user, image_id), info.hdu)
        return data, wcs

    def render(self, user: str, image_id: str, *, stretch: str, cmap: str) -> bytes:
        """PNG of the image (row 0 at the bottom, like FITS viewers)."""
        from astropy import visualization as vis
        from matplotlib import colormaps
        from PIL import Image

        if stretch not in STRETCHES:
            raise UsageError(f"Unknown stretch {stretch!r}; use one of {', '.join(STRETCHES)}")
        if cmap not in COLORMAPS:
            raise UsageError(f"Unknown colour map {cmap!r}; use one of {', '.join(COLORMAPS)}")
        data, _ = self._open(user, image_id)
        step = max(1, int(np.ceil(max(data.shape) / MAX_SIDE)))
        data = data[::step, ::step]
        finite = np.isfinite(data)
        if not finite.any():
            raise UsageError("The image has no finite pixels")
        if stretch == "zscale":
            interval, st = vis.ZScaleInterval(), vis.LinearStretch()
        else:
            interval = vis.PercentileInterval(99.5)
            st = {
                "linear": vis.LinearStretch(),
                "sqrt": vis.SqrtStretch(),
                "log": vis.LogStretch(),
                "asinh": vis.AsinhStretch(0.05),
            }[stretch]
        norm = vis.ImageNormalize(data[finite], interval=interval, stretch=st, clip=True)
        scaled = np.nan_to_num(np.asarray(norm(np.where(finite, data, np.nanmin(data)))))
        rgba = colormaps[cmap](scaled, bytes=True)[::-1]
        out = io.BytesIO()
        Image.fromarray(rgba).save(out, format="PNG", optimize=False, compress_level=1)
        return out.getvalue()

    def pixel_to_world(self, user: str, image_id: str, x: float, y: float) -> dict[str, Any]:
        _, wcs = self._open(user, image_id)
        if wcs is None:
            raise UsageError("This image has no celestial WCS")
        sky = wcs.pixel_to_world(x, y).icrs
        return {"x": x, "y": y, "ra": float(sky.ra.deg), "dec": float(sky.dec.deg)}

    def world_to_pixel(
        self, user: str, image_id: str, ra: np.ndarray, dec: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel positions of sky positions, and which fall on the image."""
        from astropy.coordinates import SkyCoord

        data, wcs = self._open(user, image_id)
        if wcs is None:
            raise UsageError("This image has no celestial WCS")
        x, y = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
        h, w = data.shape
        inside = np.isfinite(x) & np.isfinite(y) & (x > -0.5) & (y > -0.5)
        inside &= (x < w - 0.5) & (y < h - 0.5)
        return np.asarray(x), np.asarray(y), inside
