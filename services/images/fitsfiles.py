"""Storage: the FITS files of the Butler datastore - what planes they hold, streamed downloads.

Files are multi-extension FITS (``IMAGE``, ``MASK``, ``VARIANCE``, possibly tile-compressed).
Downloads never load a file into memory: whole files go out in chunks, and a single plane goes
out as a minimal primary header followed by that extension's bytes copied from the file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["FileLayout", "Plane", "layout_of", "open_planes", "stream_file", "stream_plane"]

CHUNK = 1 << 20
_PLANE_NAMES = ("IMAGE", "MASK", "VARIANCE")


@dataclass(frozen=True)
class Plane:
    """One image extension: its name, HDU index and where its bytes lie in the file."""

    name: str
    index: int
    start: int
    end: int
    header: Any  # astropy.io.fits.Header


@dataclass(frozen=True)
class FileLayout:
    """The planes of one file and the celestial WCS of its image."""

    path: Path
    planes: dict[str, Plane]
    shape: tuple[int, int]
    wcs: WCS | None

    @property
    def image(self) -> Plane:
        return self.planes["IMAGE"]


_cache: OrderedDict[tuple[Path, float, int], FileLayout] = OrderedDict()
_cache_lock = threading.Lock()


def layout_of(path: Path) -> FileLayout:
    """The (cached) layout of *path*; a plain single-HDU image counts as plane IMAGE."""
    from astropy.io import fits
    from astropy.wcs import WCS

    stat = path.stat()
    key = (path, stat.st_mtime, stat.st_size)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    planes: dict[str, Plane] = {}
    with fits.open(path, memmap=True, lazy_load_hdus=False) as hdul:
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
        raise ValueError(f"{path.name} has no image extension")
    header = planes["IMAGE"].header
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    try:
        wcs = WCS(header).celestial
        if not wcs.has_celestial:
            wcs = None
    except Exception:
        wcs = None
    layout = FileLayout(path=path, planes=planes, shape=shape, wcs=wcs)
    with _cache_lock:
        _cache[key] = layout
        if len(_cache) > 512:
            _cache.popitem(last=False)
    return layout


_open: OrderedDict[tuple[Path, float, int], tuple[Any, threading.Lock]] = OrderedDict()
_MAX_OPEN = 128  # memory-mapped; the small data preview has ~120 visit images


@contextmanager
def open_planes(layout: FileLayout) -> Iterator[dict[str, Any]]:
    """The file's plane HDUs (name -> HDU), from a small cache of open files.

    Parsing a tile-compressed extension's header costs tens of milliseconds, so open files
    are kept (memory-mapped) and handed to one thread at a time.
    """
    from astropy.io import fits

    stat = layout.path.stat()
    key = (layout.path, stat.st_mtime, stat.st_size)
    with _cache_lock:
        entry = _open.get(key)
        if entry is None:
            hdul = fits.open(layout.path, memmap=True)
            entry = (hdul, threading.Lock())
            _open[key] = entry
            while len(_open) > _MAX_OPEN:
                _, (old, _lock) = _open.popitem(last=False)
                old.close()
        else:
            _open.move_to_end(key)
    hdul, lock = entry
    with lock:
        yield {name: hdul[plane.index] for name, plane in layout.planes.items()}


def _copy(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def stream_file(path: Path) -> Iterator[bytes]:
    """The whole file, in chunks."""
    return _copy(path, 0, path.stat().st_size)


def stream_plane(
    path: Path, plane: Plane, *, cards: dict[str, str] | None = None
) -> Iterator[bytes]:
    """A valid FITS file holding just *plane*: a data-less primary header, then its extension.

    A plane stored in the primary HDU is streamed as is (it is a complete FITS file already).
    """
    from astropy.io import fits

    if plane.index == 0:
        yield from _copy(path, plane.start, plane.end)
        return
    primary = fits.PrimaryHDU()
    for key, value in (cards or {}).items():
        primary.header[key] = value
    primary.header["EXTEND"] = True
    yield primary.header.tostring().encode("ascii")
    yield from _copy(path, plane.start, plane.end)
