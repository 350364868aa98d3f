"""Non-VOTable result formats: CSV, TSV (Arrow's writer), VOParquet and FITS.

VOParquet (IVOA note "VOParquet") is Parquet whose key-value metadata carries the VOTable
header (``IVOA.VOTable-Parquet.content``), so FIELD metadata survives. FITS needs the row count
and string widths in its header, so its rows are spooled to a temporary Arrow IPC file first
(on disk, not in memory) and then written batch by batch.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sciplat.services.tap.votable.document import _trailer, text_cells, votable_header
from sciplat.services.tap.votable.fields import conform
from sciplat.services.tap.votable.stream import ResultStream

__all__ = ["write_csv", "write_fits", "write_parquet"]


def _text_table(stream: ResultStream, batch: pa.RecordBatch) -> pa.Table:
    columns = {}
    for i, field in enumerate(stream.fields):
        column = batch.column(i)
        if field.is_array or field.datatype == "boolean" or pa.types.is_timestamp(column.type):
            column = text_cells(column, field, xml=False)
        else:
            column = conform(column, field)
        columns[f"c{i}"] = column
    table = pa.table(columns)
    return table.rename_columns([f.name for f in stream.fields])


def write_csv(stream: ResultStream, delimiter: str = ",") -> Iterator[bytes]:
    header = delimiter.join(f.name for f in stream.fields) + "\r\n"
    yield header.encode()
    options = pacsv.WriteOptions(
        include_header=False,
        delimiter=delimiter,
        quoting_style="needed",
    )
    for batch in stream.rows:
        sink = io.BytesIO()
        pacsv.write_csv(_text_table(stream, batch), sink, write_options=options)
        yield sink.getvalue()


class _Chunks(io.RawIOBase):
    """A write-only file whose written bytes are collected for a generator to hand out."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def write_parquet(stream: ResultStream) -> Iterator[bytes]:
    fields = [pa.field(f.name, f.arrow_type) for f in stream.fields]
    schema = pa.schema(fields)
    sink = _Chunks()
    with pq.ParquetWriter(sink, schema, compression="snappy") as writer:
        for batch in stream.rows:
            arrays = [conform(batch.column(i), f) for i, f in enumerate(stream.fields)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            if chunk := sink.take():
                yield chunk
        # The footer is written last, so the VOTable header can say whether MAXREC overflowed.
        votable = votable_header(stream) + "    </TABLE>\n" + _trailer(stream)
        writer.add_key_value_metadata(
            {"IVOA.VOTable-Parquet.version": "1.0", "IVOA.VOTable-Parquet.content": votable}
        )
    yield sink.take()


_FITS_FORMS = {
    "boolean": ("L", 1, None),
    "unsignedByte": ("B", 1, np.dtype("u1")),
    "short": ("I", 2, np.dtype(">i2")),
    "int": ("J", 4, np.dtype(">i4")),
    "long": ("K", 8, np.dtype(">i8")),
    "float": ("E", 4, np.dtype(">f4")),
    "double": ("D", 8, np.dtype(">f8")),
}


def _card(key: str, value: object, comment: str = "") -> bytes:
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int):
        text = f"{value:>20}"
    else:
        escaped = str(value).replace("'", "''")
        text = f"'{escaped:<8}'"
    card = f"{key:<8}= {text}"
    if comment:
        card += f" / {comment}"
    return card[:80].ljust(80).encode("ascii", "replace")


def write_fits(stream: ResultStream) -> Iterator[bytes]:
    """A FITS file with one BINTABLE extension; rows spooled to disk first."""
    fd, path = tempfile.mkstemp(suffix=".arrow", prefix="sciplat-fits-")
    os.close(fd)
    try:
        arrow_fields = [pa.field(f"c{i}", f.arrow_type) for i, f in enumerate(stream.fields)]
        schema = pa.schema(arrow_fields)
        widths = [1] * len(stream.fields)
        rows = 0
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in stream.rows:
                arrays = [conform(batch.column(i), f) for i, f in enumerate(stream.fields)]
                for i, (array, field) in enumerate(zip(arrays, stream.fields, strict=True)):
                    if field.datatype in ("char", "unicodeChar") or field.is_array:
                        lengths = (
                            pc.binary_length(array.cast(pa.binary()))
                            if not field.is_array
                            else pc.list_value_length(array)
                        )
                        widths[i] = max(widths[i], int(pc.max(lengths).as_py() or 0))
                writer.write_batch(pa.record_batch(arrays, schema=schema))
                rows += batch.num_rows
        yield _fits_primary()
        dtype, header = _fits_header(stream, widths, rows)
        yield header
        written = 0
        with pa.memory_map(path) as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                data = _fits_rows(batch, stream, dtype, widths)
                written += len(data)
                yield data
        if written % 2880:
            yield b"\0" * (2880 - written % 2880)
    finally:
        os.unlink(path)


def _fits_primary() -> bytes:
    cards = [
        _card("SIMPLE", True),
        _card("BITPIX", 8),
        _card("NAXIS", 0),
        _card("EXTEND", True),
        b"END".ljust(80),
    ]
    return _pad_header(cards)


def _pad_header(cards: list[bytes]) -> bytes:
    data = b"".join(cards)
    return data + b" " * ((2880 - len(data) % 2880) % 2880)


def _fits_header(stream: ResultStream, widths: list[int], rows: int) -> tuple[np.dtype, bytes]:
    columns = []
    cards = []
    for i, field in enumerate(stream.fields, start=1):
        if field.datatype in ("char", "unicodeChar"):
            width = widths[i - 1]
            form, dtype = f"{width}A", np.dtype(f"S{width}")
        elif field.is_array:
            code, _size, element = _FITS_FORMS[field.datatype]
            count = widths[i - 1]
            form = f"{count}{code}"
            dtype = np.dtype((element or np.dtype("S1"), (count,)))
        else:
            code, _size, element = _FITS_FORMS[field.datatype]
            form, dtype = code, element or np.dtype("S1")
        columns.append((f"f{i}", dtype))
        cards.append(_card(f"TTYPE{i}", field.name))
        cards.append(_card(f"TFORM{i}", form))
        if field.unit:
            cards.append(_card(f"TUNIT{i}", field.unit))
        if field.datatype in ("float", "double") and not field.is_array:
            pass
        elif field.datatype in ("short", "int", "long") and not field.is_array:
            null = {"short": -32768, "int": -(2**31), "long": -(2**63)}[field.datatype]
            cards.append(_card(f"TNULL{i}", null))
    dtype = np.dtype(columns)
    head = [
        _card("XTENSION", "BINTABLE", "binary table extension"),
        _card("BITPIX", 8),
        _card("NAXIS", 2),
        _card("NAXIS1", dtype.itemsize, "width of table in bytes"),
        _card("NAXIS2", rows, "number of rows"),
        _card("PCOUNT", 0),
        _card("GCOUNT", 1),
        _card("TFIELDS", len(stream.fields)),
    ]
    return dtype, _pad_header([*head, *cards, b"END".ljust(80)])


def _fits_rows(
    batch: pa.RecordBatch, stream: ResultStream, dtype: np.dtype, widths: list[int]
) -> bytes:
    out = np.zeros(batch.num_rows, dtype=dtype)
    for i, field in enumerate(stream.fields):
        column = batch.column(i)
        name = f"f{i + 1}"
        if field.datatype in ("char", "unicodeChar"):
            out[name] = np.array(pc.fill_null(column, "").cast(pa.binary()).to_pylist())
        elif field.is_array:
            count = widths[i]
            _, _, element = _FITS_FORMS[field.datatype]
            for row, value in enumerate(column.to_pylist()):
                if value:
                    out[name][row, : len(value)] = value[:count]
        elif field.datatype == "boolean":
            values = np.full(batch.num_rows, ord("\0"), np.uint8)
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            truth = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
            values[valid & truth] = ord("T")
            values[valid & ~truth] = ord("F")
            out[name] = values.view("S1")
        else:
            _, _, element = _FITS_FORMS[field.datatype]
            if column.null_count and element.kind in "iu":
                null = {"short": -32768, "int": -(2**31), "long": -(2**63)}.get(field.datatype, 0)
                column = pc.fill_null(column, pa.scalar(null, type=column.type))
            elif column.null_count:
                column = pc.fill_null(column, pa.scalar(float("nan"), type=column.type))
            out[name] = column.to_numpy(zero_copy_only=False)
    return out.tobytes()
