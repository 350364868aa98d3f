"""Vectorised VOTable BINARY2 encoding (VOTable 1.4 §5.5), one Arrow record batch at a time.

A BINARY2 row is a null bit-mask (one bit per column, most significant bit first) followed by
each cell: fixed-size values big-endian, variable-size ones as a 4-byte element count and the
elements. The encoder works per batch and per column, never per row in Python:

- the null mask is built from the Arrow validity bitmaps (unpacked, shifted, OR-ed per byte);
- fixed-width cells are numpy byte views of the Arrow buffers, byte-swapped while they are
  copied into one structured array per run of fixed-width columns (the 4-byte count of a
  variable-size cell belongs to the run before it);
- variable-size cells (strings, ``*`` arrays) stay Arrow binary arrays over their own buffers.

When every column is fixed-width the structured array *is* the encoded batch. Otherwise the
runs and the variable cells are joined row by row by Arrow's ``binary_join_element_wise`` (C++),
whose data buffer is then the encoded batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sciplat.services.tap.votable.fields import VOField, conform

__all__ = ["encode_batch", "encode_batch_array"]

_NUMPY = {
    "unsignedByte": np.dtype("u1"),
    "short": np.dtype(">i2"),
    "int": np.dtype(">i4"),
    "long": np.dtype(">i8"),
    "float": np.dtype(">f4"),
    "double": np.dtype(">f8"),
}
_COUNT = np.dtype(">i4")


class _Fixed:
    """Cells of one width: *values* (one numpy row per cell) stored as *dtype* (big-endian;
    numpy converts on assignment; ``V`` dtypes take (n, width) uint8 arrays)."""

    def __init__(self, values: np.ndarray, dtype: np.dtype | str) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.kind == "V":
            values = np.ascontiguousarray(values).view(self.dtype).reshape(len(values))
        self.values = values


class _Variable:
    """Cells of varying width: the element counts and the cells' bytes as an Arrow binary
    array."""

    def __init__(self, counts: np.ndarray, cells: pa.Array) -> None:
        self.counts = counts
        self.cells = cells

    def fixed_parts(self) -> list[tuple[np.dtype, np.ndarray]] | None:
        """Count and bytes as fixed-width parts when every cell of the batch has the same byte
        length (band names, fixed-format ids): the batch then stays on the structured path."""
        lengths = np.diff(_offsets(self.cells))
        if len(lengths) == 0 or np.any(lengths != lengths[0]):
            return None
        parts = [(_COUNT, self.counts)]
        width = int(lengths[0])
        if width:
            data = _flat_bytes(self.cells).reshape(len(lengths), width)
            parts.append((np.dtype(f"V{width}"), data.view(f"V{width}").reshape(len(lengths))))
        return parts


def _values(array: pa.Array, dtype: np.dtype) -> np.ndarray:
    """Numpy values with nulls filled (NaN or 0), native byte order (zero-copy when possible)."""
    if array.null_count:
        fill = float("nan") if dtype.kind == "f" else 0
        array = pc.fill_null(array, pa.scalar(fill, type=array.type))
    return array.to_numpy(zero_copy_only=False)


def _offsets(array: pa.Array) -> np.ndarray:
    """The int32 value offsets of a binary/string/list array (relative to its own slice)."""
    return np.frombuffer(array.buffers()[1], dtype=np.int32)[
        array.offset : array.offset + len(array) + 1
    ]


def _flat_bytes(array: pa.Array) -> np.ndarray:
    offsets = _offsets(array)
    data = array.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(0, np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _binary(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """An Arrow binary array over *data* cut at *offsets* (rebased to start at 0)."""
    offsets = np.ascontiguousarray(offsets - offsets[0], dtype=np.int32)
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _utf16(array: pa.Array) -> pa.Array:
    """UTF-16BE bytes of a string array without nulls (numpy for ASCII, Python otherwise)."""
    if pc.all(pc.string_is_ascii(array)).as_py() is not False:
        flat = _flat_bytes(array)
        wide = np.zeros(2 * len(flat), np.uint8)
        wide[1::2] = flat
        return _binary(_offsets(array) * 2, wide)
    return pa.array([s.encode("utf-16-be") for s in array.to_pylist()], type=pa.binary())


def _padded(array: pa.Array, width: int) -> np.ndarray:
    """(n, width) uint8: each cell's bytes, cut or zero-padded to *width*."""
    lengths = np.diff(_offsets(array))
    if len(lengths) and lengths.max() > width:
        array = pc.binary_slice(array, 0, width)
        lengths = np.diff(_offsets(array))
    out = np.zeros((len(array), width), np.uint8)
    if width:
        out[np.arange(width) < lengths[:, None]] = _flat_bytes(array)
    return out


def _string_cells(array: pa.Array, field: VOField) -> _Fixed | _Variable:
    if array.null_count:
        array = pc.fill_null(array, "")
    wide = field.datatype == "unicodeChar"
    binary = _utf16(array) if wide else array.cast(pa.binary())
    size = field.fixed_count
    if size is not None:
        width = size * (2 if wide else 1)
        return _Fixed(_padded(binary, width), f"V{width}")
    lengths = np.diff(_offsets(binary))
    return _Variable(lengths // 2 if wide else lengths, binary)


def _array_cells(array: pa.Array, field: VOField) -> _Fixed | _Variable:
    if array.null_count:
        array = pc.fill_null(array, pa.scalar([], type=array.type))
    element = _NUMPY.get(field.datatype)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    flat_values = pc.list_flatten(array)
    if field.datatype == "boolean":
        values = np.where(flat_values.to_numpy(zero_copy_only=False), b"T", b"F").view(np.uint8)
        size = 1
    else:
        values = np.ascontiguousarray(_values(flat_values, element), dtype=element)
        values = values.view(np.uint8)
        size = element.itemsize
    count = field.fixed_count
    if count is not None:
        if len(array) and not np.all(lengths == count):
            padded = np.zeros((len(array), count * size), np.uint8)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * size
            for row in np.nonzero(lengths)[0]:  # only for ragged arrays declared fixed
                n = min(lengths[row], count) * size
                padded[row, :n] = values[starts[row] : starts[row] + n]
            return _Fixed(padded, f"V{count * size}")
        return _Fixed(values.reshape(len(array), count * size), f"V{count * size}")
    offsets = np.concatenate([[0], np.cumsum(lengths)]) * size
    return _Variable(lengths, _binary(offsets, values))


def _boolean_cells(array: pa.Array) -> _Fixed:
    """'T', 'F' or '?' (null) per cell."""
    values = _bits(array.buffers()[1], array.offset, len(array))
    chars = np.where(values, np.uint8(ord("T")), np.uint8(ord("F")))
    if array.null_count:
        chars[~_validity(array)] = ord("?")
    return _Fixed(chars, "u1")


def _cells(array: pa.Array, field: VOField) -> _Fixed | _Variable:
    if field.datatype in ("char", "unicodeChar"):
        return _string_cells(array, field)
    if field.is_array:
        return _array_cells(array, field)
    if field.datatype == "boolean":
        return _boolean_cells(array)
    dtype = _NUMPY[field.datatype]
    return _Fixed(_values(array, dtype), dtype)


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """*n* bits of an Arrow bitmap from *offset*, as bools."""
    bits = np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little", count=offset + n)
    return bits[offset:].astype(bool)


def _validity(array: pa.Array) -> np.ndarray:
    """True where the cell is not null (from the validity bitmap)."""
    bitmap = array.buffers()[0]
    if bitmap is None:
        return np.ones(len(array), bool)
    return _bits(bitmap, array.offset, len(array))


def _null_mask(columns: list[pa.Array], n: int) -> np.ndarray:
    """The (n, ceil(columns/8)) null bit-mask, most significant bit = first column."""
    mask = np.zeros((n, (len(columns) + 7) // 8), dtype=np.uint8)
    for j, column in enumerate(columns):
        if column.null_count:
            nulls = (~_validity(column)).view(np.uint8)
            mask[:, j >> 3] |= nulls << np.uint8(7 - (j & 7))
    return mask


def _structured(parts: list[tuple[np.dtype, np.ndarray]], n: int) -> np.ndarray:
    """One structured array of *parts* (dtype, values) side by side: the packed rows."""
    layout = np.dtype([(f"c{i}", dtype) for i, (dtype, _) in enumerate(parts)])
    out = np.empty(n, dtype=layout)
    for i, (_, values) in enumerate(parts):
        out[f"c{i}"] = values
    return out


def encode_batch_array(batch: pa.RecordBatch, fields: list[VOField]) -> np.ndarray:
    """The BINARY2 bytes of every row of *batch*, as a flat uint8 array."""
    n = batch.num_rows
    if n == 0:
        return np.zeros(0, np.uint8)
    columns = [conform(batch.column(i), f) for i, f in enumerate(fields)]
    mask = _null_mask(columns, n)
    run: list[tuple[np.dtype, np.ndarray]] = [
        (np.dtype(f"V{mask.shape[1]}"), mask.view(f"V{mask.shape[1]}").reshape(n))
    ]
    segments: list[pa.Array] = []
    for column, field in zip(columns, fields, strict=True):
        cell = _cells(column, field)
        if isinstance(cell, _Fixed):
            run.append((cell.dtype, cell.values))
            continue
        parts = cell.fixed_parts()
        if parts is not None:
            run.extend(parts)
            continue
        run.append((_COUNT, cell.counts))
        segments.append(_run_array(_structured(run, n)))
        segments.append(cell.cells)
        run = []
    if not segments:
        return _structured(run, n).view(np.uint8)
    if run:
        segments.append(_run_array(_structured(run, n)))
    joined = pc.binary_join_element_wise(*segments, pa.scalar(b"", pa.binary()))
    return _flat_bytes(joined)


def _run_array(rows: np.ndarray) -> pa.Array:
    """A structured array's rows as an Arrow binary array (zero-copy, then offsets)."""
    width = rows.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(rows), [None, pa.py_buffer(rows)]
    )
    return fixed.cast(pa.binary())


def encode_batch(batch: pa.RecordBatch, fields: list[VOField]) -> bytes:
    """The BINARY2 bytes of every row of *batch*."""
    return encode_batch_array(batch, fields).tobytes()
