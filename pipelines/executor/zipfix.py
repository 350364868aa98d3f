"""Work around CPython gh-127847 in ``zipfile`` (Python 3.12.0-3.12.8, 3.13.0-3.13.1).

A quantum graph (``.qg``) is a zip archive of uncompressed members that ``lsst-pipe-base``
reads with several members open at once (address files and multi-block files). In the
affected Pythons, seeking forward in an uncompressed member moves the archive's *shared*
file handle relative to wherever another open member last left it, so the next read returns
bytes from the wrong place (garbage, or ``EOFError`` at the end of the archive). The upstream
fix (in 3.12.9 and 3.13.2) seeks relative to the member's own position; :func:`install`
applies the same fix to ``zipfile._SharedFile.seek`` on the affected versions and does
nothing on fixed ones."""

from __future__ import annotations

import os
import sys
import zipfile

__all__ = ["AFFECTED", "ORIGINAL_SEEK", "install"]

#: Whether this Python has the bug.
AFFECTED = (3, 12) <= sys.version_info[:3] < (3, 12, 9) or (
    (3, 13) <= sys.version_info[:3] < (3, 13, 2)
)


#: ``zipfile._SharedFile.seek`` as this Python ships it.
ORIGINAL_SEEK = zipfile._SharedFile.seek


def _seek(self: zipfile._SharedFile, offset: int, whence: int = os.SEEK_SET) -> int:
    with self._lock:
        if self._writing():
            raise ValueError(
                "Can't reposition in the ZIP file while there is an open writing handle on it. "
                "Close the writing handle before trying to read."
            )
        if whence == os.SEEK_CUR:  # relative to this member's position, not the shared file's
            self._file.seek(self._pos + offset)
        else:
            self._file.seek(offset, whence)
        self._pos = self._file.tell()
        return self._pos


def install() -> bool:
    """Patch ``zipfile`` if this Python needs it; returns whether it did."""
    if not AFFECTED or zipfile._SharedFile.seek is _seek:
        return False
    zipfile._SharedFile.seek = _seek
    return True
