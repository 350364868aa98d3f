"""Reading two uncompressed members of one zip archive at once (CPython gh-127847), as
lsst-pipe-base reads quantum graphs."""

from __future__ import annotations

import io
import zipfile

import pytest

from sciplat.pipelines.executor import zipfix


def _interleaved_read() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.addr", b"0123456789" * 1000)
        archive.writestr("b.mb", b"abcdefghij" * 1000)
    with (
        zipfile.ZipFile(buffer) as archive,
        archive.open("a.addr") as a,
        archive.open("b.mb") as b,
    ):
        a.read(5)
        b.read(3)
        a.seek(5000 + 7)  # forward, past the read buffer: the "fast seek" path
        return a.read(3)


def test_forward_seek_reads_its_own_member() -> None:
    zipfix.install()  # as the executor does on import
    assert _interleaved_read() == b"789"


@pytest.mark.skipif(not zipfix.AFFECTED, reason="this Python's zipfile has the fix")
def test_this_python_needs_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipfile._SharedFile, "seek", zipfix.ORIGINAL_SEEK)
    assert _interleaved_read() != b"789"
