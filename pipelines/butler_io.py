"""How images live in the Butler: the in-memory type, its FITS formatter and the repo seed config.

:class:`SimExposure` is what ``butler.get("visit_image", ...)`` (or ``raw``, ``bias``,
``flat``) returns: ``.image`` (numpy), ``.variance`` and ``.mask`` where the product has them,
``.wcs`` (astropy WCS, 0-based pixel convention as always in astropy) and ``.metadata`` (dict).
Components can be read alone: ``butler.get("visit_image.wcs", ...)``.

On disk a dataset is a multi-extension FITS file in the layout of Rubin's afw exposures:
a primary header with the metadata, then ``IMAGE``, ``MASK`` and ``VARIANCE`` extensions (those
present), each with the WCS in its header, tile-compressed (lossless RICE for integers, GZIP
for floats) so that ``astropy.io.fits``, ds9 and Firefly read them directly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from lsst.daf.butler import FormatterV2, StorageClassDelegate
from lsst.resources import ResourcePath

__all__ = [
    "MASK_PLANES",
    "STORAGE_CLASS",
    "SimExposure",
    "SimExposureDelegate",
    "SimExposureFormatter",
    "read_fits",
    "seed_config",
    "write_fits",
]

STORAGE_CLASS = "SimExposure"
#: Mask bit numbers, as in lsst.afw.image.Mask's default planes.
MASK_PLANES = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
}
_COMPONENTS = ("image", "mask", "variance")


@dataclass
class SimExposure:
    """Pixels with their WCS and metadata (a light stand-in for ``lsst.afw.image.Exposure``)."""

    image: np.ndarray
    wcs: WCS | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    variance: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def mask_planes(self) -> dict[str, int]:
        """Mask plane name -> bit number."""
        return dict(MASK_PLANES)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image.shape

    def mask_of(self, *planes: str) -> np.ndarray:
        """Boolean array: pixels with any of *planes* set."""
        if self.mask is None:
            return np.zeros(self.image.shape, dtype=bool)
        bits = 0
        for plane in planes:
            bits |= 1 << MASK_PLANES[plane]
        return (self.mask & bits) != 0


def _header_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return (_header_value(value[0]), *value[1:])
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_fits(exposure: SimExposure, path: str | os.PathLike[str]) -> None:
    """Write *exposure* atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    primary = fits.PrimaryHDU()
    for key, value in exposure.metadata.items():
        primary.header[key] = _header_value(value)
    primary.header["EXTTYPE"] = "SIMEXPOSURE"
    for name, bit in MASK_PLANES.items():
        primary.header[f"HIERARCH MP_{name}"] = bit
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [primary]
    wcs_header = exposure.wcs.to_header() if exposure.wcs is not None else fits.Header()
    for name in _COMPONENTS:
        data = getattr(exposure, name)
        if data is None:
            continue
        tile = (min(128, data.shape[0]), data.shape[1])
        if np.issubdtype(data.dtype, np.integer):
            hdu = fits.CompImageHDU(
                data=data, name=name.upper(), compression_type="RICE_1", tile_shape=tile
            )
        else:
            # Lossy like Rubin's: quantised to 1/16 of the noise, dithered with a fixed seed so
            # that a rebuild writes the same bytes.
            hdu = fits.CompImageHDU(
                data=data,
                name=name.upper(),
                compression_type="RICE_1",
                tile_shape=tile,
                quantize_level=16.0,
                quantize_method=2,
                dither_seed=1 + sum(map(ord, path.name)) % 9999,
            )
        hdu.header.update(wcs_header)
        if name == "image" and "BUNIT" in exposure.metadata:
            hdu.header["BUNIT"] = _header_value(exposure.metadata["BUNIT"])
        hdus.append(hdu)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_SKIP_KEYS = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "EXTTYPE"}


def read_fits(path: str | os.PathLike[str], component: str | None = None) -> Any:
    """Read a file written by :func:`write_fits`; *component* picks one attribute."""
    with fits.open(path, memmap=False) as hdul:
        names = {h.name.lower(): h for h in hdul[1:]}
        if component in _COMPONENTS:
            return _native(names[component].data) if component in names else None
        wcs = WCS(names["image"].header) if "image" in names else None
        if component == "wcs":
            return wcs
        metadata = {
            k: v
            for k, v in hdul[0].header.items()
            if k not in _SKIP_KEYS and not k.startswith("MP_")
        }
        if component == "metadata":
            return metadata
        if component is not None:
            raise ValueError(f"unknown component {component!r} of {STORAGE_CLASS}")
        return SimExposure(
            image=_native(names["image"].data),
            variance=_native(names["variance"].data) if "variance" in names else None,
            mask=_native(names["mask"].data) if "mask" in names else None,
            wcs=wcs,
            metadata=metadata,
        )


def _native(array: np.ndarray) -> np.ndarray:
    """FITS data are big-endian; hand out native-endian arrays."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


class SimExposureFormatter(FormatterV2):
    """Butler formatter for :class:`SimExposure` (multi-extension FITS)."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits", ".fits.fz"})
    can_read_from_local_file = True

    def read_from_local_file(
        self, path: str, component: str | None = None, expected_size: int = -1
    ) -> Any:
        return read_fits(path, component)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        write_fits(in_memory_dataset, uri.ospath)


class SimExposureDelegate(StorageClassDelegate):
    """Derived components of an in-memory :class:`SimExposure`."""

    def getComponent(self, composite: Any, componentName: str) -> Any:
        if componentName in ("image", "mask", "variance", "wcs", "metadata"):
            return getattr(composite, componentName)
        return super().getComponent(composite, componentName)


def seed_config() -> dict[str, Any]:
    """Seed configuration for ``Butler.makeRepo``: our storage class and formatter.

    Stored in the repo's ``butler.yaml``, so any process with sciplat importable reads the
    images without extra configuration.
    """
    return {
        "storageClasses": {
            STORAGE_CLASS: {
                "pytype": f"{__name__}.SimExposure",
                "delegate": f"{__name__}.SimExposureDelegate",
                "derivedComponents": {
                    "image": "NumpyArray",
                    "mask": "NumpyArray",
                    "variance": "NumpyArray",
                    "wcs": "SimWcs",
                    "metadata": "StructuredDataDict",
                },
            },
            "SimWcs": {"pytype": "astropy.wcs.WCS"},
        },
        "datastore": {"formatters": {STORAGE_CLASS: f"{__name__}.SimExposureFormatter"}},
    }
