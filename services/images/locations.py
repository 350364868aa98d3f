"""Storage: where a dataset's file lies - the local disk or an object store (S3) - and how its
bytes are read: buffered ranged reads, never the whole object at once.

A Butler datastore on S3 (the scale-out shape) hands out ``s3://`` URIs. The image services read
them through :class:`FileLocation`: ``open()`` gives a seekable, buffered reader whose misses are
HTTP range requests (astropy reads headers and the tiles a cutout needs through it), and
``chunks()`` streams a byte range with one ranged GET. Local files are opened directly
(memory-mapped by astropy).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["CHUNK", "FileLocation"]

#: Bytes per chunk of a streamed download.
CHUNK = 1 << 20
#: Read-ahead of an object-store reader: FITS headers come in 2880-byte blocks and compressed
#: tiles are a few kB, so one range request serves many reads.
_BUFFER = 64 << 10


@dataclass(frozen=True)
class FileLocation:
    """One file of the datastore, by URI (``file://`` or ``s3://``), with its size."""

    uri: str
    size: int

    @cached_property
    def _resource(self) -> Any:
        from lsst.resources import ResourcePath

        return ResourcePath(self.uri, forceDirectory=False)

    @property
    def local_path(self) -> Path | None:
        """The file on this machine's disk, or None for an object in a store."""
        resource = self._resource
        return Path(resource.ospath) if resource.isLocal else None

    @property
    def name(self) -> str:
        return self._resource.basename()

    @property
    def key(self) -> tuple[str, float, int]:
        """Identifies this version of the file (a rebuilt local file gets a new key; datastore
        objects are written once, so their URI and size identify them)."""
        path = self.local_path
        if path is None:
            return (self.uri, 0.0, self.size)
        stat = path.stat()
        return (self.uri, stat.st_mtime, stat.st_size)

    def current_size(self) -> int:
        """The size now (a local file may have been rebuilt since it was looked up)."""
        path = self.local_path
        return path.stat().st_size if path is not None else self.size

    @classmethod
    def of(cls, resource: Any) -> FileLocation:
        """The location of a ``ResourcePath`` (its size read from the store)."""
        if resource.isLocal:
            path = Path(resource.ospath)
            size = path.stat().st_size if path.exists() else 0
        else:
            size = resource.size()
        return cls(str(resource), size)

    def within(self, root: Any) -> bool:
        """Whether this file lies inside *root* (a ``ResourcePath`` directory)."""
        path = self.local_path
        if path is not None:
            return root.isLocal and path.resolve().is_relative_to(Path(root.ospath).resolve())
        return self._resource.relative_to(root) is not None

    def open(self) -> BinaryIO:
        """A seekable binary reader (local: the file; object store: buffered range requests)."""
        path = self.local_path
        if path is not None:
            return open(path, "rb")
        return io.BufferedReader(_RangedObject(self._resource, self.size), _BUFFER)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in chunks of at most :data:`CHUNK`."""
        if end <= start:
            return
        path = self.local_path
        if path is None:
            resource = self._resource
            response = resource.client.get_object(
                Bucket=resource.netloc,
                Key=resource.relativeToPathRoot,
                Range=f"bytes={start}-{end - 1}",
            )
            body = response["Body"]
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()
            return
        with open(path, "rb") as handle:
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk


class _RangedObject(io.RawIOBase):
    """An S3 object as a raw, seekable stream: each read is one HTTP range request."""

    def __init__(self, resource: Any, size: int) -> None:
        self._client = resource.client
        self._bucket = resource.netloc
        self._key = resource.relativeToPathRoot
        self._size = size
        self._position = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self._position = self._size + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._size, self._position + len(view))
        if end <= self._position:
            return 0
        response = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end - 1}"
        )
        body = response["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        self.requests += 1
        view[: len(data)] = data
        self._position += len(data)
        return len(data)
