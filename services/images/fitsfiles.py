"""Storage: the FITS files of the Butler datastore - what planes they hold, streamed downloads.

Files are multi-extension FITS (``IMAGE``, ``MASK``, ``VARIANCE``, possibly tile-compressed).
Downloads never load a file into memory: whole files go out in chunks, and a single plane goes
out as a minimal primary header followed by that extension's bytes copied from the file. Files
are local or objects in an S3 datastore (:mod:`.locations`: ranged reads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sciplat.services.images.locations import FileLocation

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["FileLayout", "Plane", "layout_of", "open_planes", "stream_file", "stream_plane"]

_PLANE_NAMES = ("IMAGE", "MASK", "VARIANCE")


@dataclass(frozen=True)
class Plane:
    """One image extension: its name, HDU index and where its bytes lie in the file."""

    name: str
    index: int
    start: int
    end: int
    header: Any  # astropy.io.fits.Header

    @property
    def download_size(self) -> int:
        """Bytes of the file :func:`stream_plane` makes of it (a primary header block first)."""
        return (0 if self.index == 0 else 2880) + self.end - self.start


@dataclass(frozen=True)
class FileLayout:
    """The planes of one file and the celestial WCS of its image."""

    location: FileLocation
    planes: dict[str, Plane]
    shape: tuple[int, int]
    wcs: WCS | None

    @property
    def image(self) -> Plane:
        return self.planes["IMAGE"]


_cache: OrderedDict[tuple[str, float, int], FileLayout] = OrderedDict()
_cache_lock = threading.Lock()


def _open_fits(location: FileLocation) -> Any:
    """An HDUList of *location*: memory-mapped when local, over ranged reads when remote."""
    from astropy.io import fits

    path = location.local_path
    if path is not None:
        return fits.open(path, memmap=True)
    return fits.open(location.open(), memmap=False)


def layout_of(location: FileLocation) -> FileLayout:
    """The (cached) layout of *location*; a plain single-HDU image counts as plane IMAGE."""
    from astropy.wcs import WCS

    key = location.key
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    planes: dict[str, Plane] = {}
    with _opened(location) as hdul:  # kept open: the cutouts that follow need it again
        for index, hdu in enumerate(hdul):
            name = hdu.name.upper() if index else "PRIMARY"
            primary_image = name == "PRIMARY" and hdu.data is not None and "IMAGE" not in planes
            if primary_image or name == "COMPRESSED_IMAGE":
                name = "IMAGE"
            if name not in _PLANE_NAMES or name in planes:
                continue
            info = hdul.fileinfo(index)
            planes[name] = Plane(
                name=name,
                index=index,
                start=info["hdrLoc"],
                end=info["datLoc"] + info["datSpan"],
                header=hdu.header.copy(),
            )
    if "IMAGE" not in planes:
        raise ValueError(f"{location.name} has no image extension")
    header = planes["IMAGE"].header
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    try:
        wcs = WCS(header).celestial
        if not wcs.has_celestial:
            wcs = None
    except Exception:
        wcs = None
    layout = FileLayout(location=location, planes=planes, shape=shape, wcs=wcs)
    with _cache_lock:
        _cache[key] = layout
        if len(_cache) > 512:
            _cache.popitem(last=False)
    return layout


_open: OrderedDict[tuple[str, float, int], tuple[Any, threading.Lock]] = OrderedDict()
_MAX_OPEN = 128  # memory-mapped; the small data preview has ~120 visit images


@contextmanager
def _opened(location: FileLocation) -> Iterator[Any]:
    """The HDUList of *location* from a small cache of open files, for one thread at a time.

    Parsing a tile-compressed extension's header costs tens of milliseconds (and range
    requests when the file is in an object store), so open files are kept (memory-mapped, or
    with their ranged reader).
    """
    key = location.key
    with _cache_lock:
        entry = _open.get(key)
        if entry is None:
            entry = (_open_fits(location), threading.Lock())
            _open[key] = entry
            while len(_open) > _MAX_OPEN:
                _, (old, _lock) = _open.popitem(last=False)
                old.close()
        else:
            _open.move_to_end(key)
    hdul, lock = entry
    with lock:
        yield hdul


@contextmanager
def open_planes(layout: FileLayout) -> Iterator[dict[str, Any]]:
    """The file's plane HDUs (name -> HDU), from the cache of open files."""
    with _opened(layout.location) as hdul:
        yield {name: hdul[plane.index] for name, plane in layout.planes.items()}


def stream_file(location: FileLocation) -> Iterator[bytes]:
    """The whole file, in chunks."""
    return location.chunks(0, location.current_size())


def stream_plane(
    location: FileLocation, plane: Plane, *, cards: dict[str, str] | None = None
) -> Iterator[bytes]:
    """A valid FITS file holding just *plane*: a data-less primary header, then its extension.

    A plane stored in the primary HDU is streamed as is (it is a complete FITS file already).
    """
    from astropy.io import fits

    if plane.index == 0:
        yield from location.chunks(plane.start, plane.end)
        return
    primary = fits.PrimaryHDU()
    for key, value in (cards or {}).items():
        primary.header[key] = value
    primary.header["EXTEND"] = True
    yield primary.header.tostring().encode("ascii")
    yield from location.chunks(plane.start, plane.end)
