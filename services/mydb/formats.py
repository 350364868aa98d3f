"""Table files a user sends: format sniffed from the content, read into Arrow, types checked.

Accepted: Parquet (``PAR1`` magic; astropy's column units are kept), VOTable (any
serialization, through the TAP upload reader, so at most its size and row limits) and CSV
(UTF-8, header line, types inferred). Anything else - FITS, compressed files, binary blobs - is
refused with a message naming what was recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sciplat.services.common.errors import UsageError
from sciplat.services.mydb.names import column_name

__all__ = [
    "ColumnInfo",
    "LoadedTable",
    "conform",
    "conform_batch",
    "read_table_file",
    "sniff",
    "storable_schema",
    "storable_type",
]


@dataclass(frozen=True)
class ColumnInfo:
    """What a table file says about a column besides its values."""

    unit: str | None = None
    ucd: str | None = None
    description: str | None = None


@dataclass
class LoadedTable:
    table: pa.Table
    #: Per column (by stored name): unit, UCD, description.
    info: dict[str, ColumnInfo] = field(default_factory=dict)
    format: str = ""


_REFUSED = {
    b"SIMPLE  =": "FITS",
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed",
    b"\x89HDF": "HDF5",
    b"ARROW1": "Arrow IPC",
}


def sniff(head: bytes) -> str:
    """``parquet``, ``votable`` or ``csv`` from a file's first bytes; UsageError otherwise."""
    if head.startswith(b"PAR1"):
        return "parquet"
    for magic, kind in _REFUSED.items():
        if head.startswith(magic):
            raise UsageError(
                f"This looks like a {kind} file; MyDB accepts Parquet, VOTable or CSV tables"
            )
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        if b"<VOTABLE" in head[:4096].upper():
            return "votable"
        raise UsageError("This XML document is not a VOTable; MyDB accepts Parquet, VOTable or CSV")
    if b"\x00" in text[:65536]:
        raise UsageError("Unknown file format (binary data): MyDB accepts Parquet, VOTable or CSV")
    try:
        sample = text[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(text[:65536]) - 4:  # not merely a character cut at the sample's end
            raise UsageError(
                "Unknown file format (binary data): MyDB accepts Parquet, VOTable or CSV"
            ) from exc
        sample = text[: exc.start].decode("utf-8")
    first = sample.split("\n", 1)[0]
    if "," not in first:
        raise UsageError(
            "Unknown file format: not Parquet or VOTable, and not CSV with a header line of "
            "comma-separated column names"
        )
    return "csv"


def _parquet(path: Path) -> LoadedTable:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"The Parquet file could not be read: {exc}"[:300]) from exc
    info: dict[str, ColumnInfo] = {}
    meta = table.schema.metadata or {}
    if b"table_meta_yaml" in meta:  # written by astropy: units and descriptions
        from astropy.table.meta import get_header_from_yaml

        try:
            header = get_header_from_yaml(meta[b"table_meta_yaml"].decode().splitlines())
            for column in header.get("datatype", []):
                info[column["name"]] = ColumnInfo(
                    unit=column.get("unit"), description=column.get("description")
                )
        except Exception:  # metadata is a nicety; the values still load
            info = {}
        table = _astropy_masks(table)
    return LoadedTable(table=table.replace_schema_metadata(None), info=info, format="parquet")


def _astropy_masks(table: pa.Table) -> pa.Table:
    """astropy writes a masked column ``x`` as ``x`` plus a boolean ``x.mask``: make NULLs."""
    import pyarrow.compute as pc

    for name in list(table.column_names):
        base = name[: -len(".mask")]
        if not name.endswith(".mask") or base not in table.column_names:
            continue
        mask = table.column(name)
        if not pa.types.is_boolean(mask.type):
            continue
        values = table.column(base)
        index = table.column_names.index(base)
        masked = pc.if_else(pc.fill_null(mask, False), pa.scalar(None, values.type), values)
        table = table.set_column(index, base, masked).drop_columns([name])
    return table


def _csv(path: Path) -> LoadedTable:
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"The CSV file could not be read: {exc}"[:300]) from exc
    return LoadedTable(table=table, format="csv")


def _votable(path: Path) -> LoadedTable:
    from sciplat.services.tap.upload import MAX_UPLOAD_BYTES, read_upload

    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise UsageError(
            f"This VOTable has {size / 2**20:.0f} MiB; VOTables are parsed whole in memory and "
            f"limited to {MAX_UPLOAD_BYTES // 2**20} MiB. Send bigger tables as Parquet or CSV."
        )
    meta, table = read_upload("table", path.read_bytes())
    info = {
        c.name: ColumnInfo(unit=c.unit, ucd=c.ucd, description=c.description) for c in meta.columns
    }
    return LoadedTable(table=table, info=info, format="votable")


def read_table_file(path: Path) -> LoadedTable:
    """Read a table file of a sniffed format, with its columns conformed (see :func:`conform`)."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head:
        raise UsageError("The file is empty")
    kind = sniff(head)
    loaded = {"parquet": _parquet, "csv": _csv, "votable": _votable}[kind](path)
    try:
        return conform(loaded)
    except pa.ArrowException as exc:
        raise UsageError(f"The {kind} table's values could not be stored: {exc}"[:300]) from exc


def storable_type(name: str, kind: pa.DataType) -> pa.DataType:
    """The Arrow type a column of type *kind* is stored as; UsageError if it cannot be."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind):
        return kind
    if pa.types.is_float16(kind):
        return pa.float32()
    if pa.types.is_decimal(kind):
        return pa.float64()
    if pa.types.is_integer(kind):
        width = kind.bit_width * (2 if pa.types.is_unsigned_integer(kind) else 1)
        if width > 64:
            raise UsageError(f"Column {name!r} holds unsigned 64-bit integers, which SQL lacks")
        return {8: pa.int16(), 16: pa.int16(), 32: pa.int32(), 64: pa.int64()}[width]
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
    ):
        return pa.string()
    raise UsageError(
        f"Column {name!r} has type {kind}, which MyDB cannot store (numbers, booleans, text "
        "and times only)"
    )


def storable_schema(schema: pa.Schema) -> pa.Schema:
    """Stored names (lower case, unique) and types for a table of *schema*."""
    if len(schema) == 0:
        raise UsageError("The table has no columns")
    fields: list[pa.Field] = []
    for index, original in enumerate(schema):
        name = column_name(original.name, index)
        if any(f.name == name for f in fields):
            raise UsageError(f"Two columns would both be named {name!r}; rename one")
        fields.append(pa.field(name, storable_type(original.name, original.type)))
    return pa.schema(fields)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """*batch* with the stored names and types of *schema* (from :func:`storable_schema`)."""
    arrays = [
        column if column.type == field.type else column.cast(field.type)
        for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def conform(loaded: LoadedTable) -> LoadedTable:
    """Stored column names and SQL-storable Arrow types (see :func:`storable_schema`)."""
    schema = storable_schema(loaded.table.schema)
    info = {
        new.name: loaded.info[old]
        for old, new in zip(loaded.table.column_names, schema, strict=True)
        if old in loaded.info
    }
    batches = [conform_batch(b, schema) for b in loaded.table.to_batches()]
    return LoadedTable(
        table=pa.Table.from_batches(batches, schema=schema), info=info, format=loaded.format
    )
