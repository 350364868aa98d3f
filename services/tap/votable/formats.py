"""RESPONSEFORMAT values (TAP 1.1 §2.7.1) -> writer and media type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.votable.document import write_votable
from sciplat.services.tap.votable.stream import ResultStream
from sciplat.services.tap.votable.tables import write_csv, write_fits, write_parquet

__all__ = ["FORMATS", "OutputFormat", "output_format"]


@dataclass(frozen=True)
class OutputFormat:
    name: str
    media_type: str
    extension: str
    write: Callable[[ResultStream], Iterator[bytes]]
    #: Names and media types clients may ask for (matched case-insensitively, spaces ignored).
    aliases: tuple[str, ...]


_VOTABLE = "application/x-votable+xml"

FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat(
        "votable",
        _VOTABLE,
        "xml",
        partial(write_votable, serialization="binary2"),
        (
            "votable",
            "votable/b2",
            "votable/binary2",
            _VOTABLE,
            "text/xml",
            "application/xml",
            f"{_VOTABLE};serialization=binary2",
            "binary2",
        ),
    ),
    OutputFormat(
        "votable/td",
        f"{_VOTABLE};serialization=TABLEDATA",
        "xml",
        partial(write_votable, serialization="tabledata"),
        ("votable/td", "votable/tabledata", "tabledata", f"{_VOTABLE};serialization=tabledata"),
    ),
    OutputFormat(
        "csv",
        "text/csv;header=present",
        "csv",
        write_csv,
        ("csv", "text/csv", "text/csv;header=present"),
    ),
    OutputFormat(
        "tsv",
        "text/tab-separated-values",
        "tsv",
        partial(write_csv, delimiter="\t"),
        ("tsv", "text/tab-separated-values", "text/tsv"),
    ),
    OutputFormat("fits", "application/fits", "fits", write_fits, ("fits", "application/fits")),
    OutputFormat(
        "parquet",
        "application/vnd.apache.parquet",
        "parquet",
        write_parquet,
        (
            "parquet",
            "vnd.apache.parquet",
            "application/vnd.apache.parquet",
            "application/x-parquet",
            "voparquet",
        ),
    ),
)

_BY_ALIAS = {alias.lower(): fmt for fmt in FORMATS for alias in fmt.aliases}


def output_format(value: str | None) -> OutputFormat:
    """The format for a RESPONSEFORMAT value (default: VOTable BINARY2)."""
    if value is None or not value.strip():
        return FORMATS[0]
    key = value.replace(" ", "").lower()
    found = _BY_ALIAS.get(key)
    if found is None:
        known = ", ".join(f.name for f in FORMATS)
        raise UsageError(f"Unsupported RESPONSEFORMAT {value!r}; supported: {known}")
    return found
