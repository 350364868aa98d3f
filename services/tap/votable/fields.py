"""Output column metadata (VOTable FIELDs) and converting Arrow columns to match it.

A result column that is a published column gets its TAP_SCHEMA metadata (datatype, arraysize,
unit, UCD, utype, xtype, description) and its values are cast to that datatype; a computed
column gets a datatype from its Arrow type.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
import pyarrow.compute as pc

from sciplat.services.tap.adql import FieldSpec
from sciplat.services.tap.schema import ColumnDescription

__all__ = ["VOField", "conform", "field_xml", "fields_for"]

_ARROW_FOR = {
    "boolean": pa.bool_(),
    "unsignedByte": pa.uint8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "unicodeChar": pa.string(),
}

_GEOMETRY_SIZES = {"point": "2", "circle": "3", "polygon": "*"}


@dataclass(frozen=True)
class VOField(ColumnDescription):
    """A result column as its VOTable FIELD describes it."""

    @property
    def is_array(self) -> bool:
        return self.arraysize is not None and self.datatype not in ("char", "unicodeChar")

    @property
    def fixed_count(self) -> int | None:
        """Element count of a fixed-size array or string, None when variable."""
        if self.arraysize is None:
            return 1
        if self.arraysize.endswith("*") or "x" in self.arraysize:
            return None
        return int(self.arraysize)

    @property
    def arrow_type(self) -> pa.DataType:
        element = _ARROW_FOR[self.datatype]
        return pa.list_(element) if self.is_array else element


def _datatype_of(arrow: pa.DataType) -> tuple[str, str | None, str | None]:
    """(datatype, arraysize, xtype) for a computed column of Arrow type *arrow*."""
    if pa.types.is_boolean(arrow):
        return "boolean", None, None
    if pa.types.is_int8(arrow) or pa.types.is_int16(arrow) or pa.types.is_uint8(arrow):
        return "short", None, None
    if pa.types.is_int32(arrow) or pa.types.is_uint16(arrow):
        return "int", None, None
    if pa.types.is_integer(arrow):
        return "long", None, None
    if pa.types.is_float16(arrow) or pa.types.is_float32(arrow):
        return "float", None, None
    if pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return "double", None, None
    if pa.types.is_timestamp(arrow) or pa.types.is_date(arrow):
        return "char", "*", "timestamp"
    if (
        pa.types.is_list(arrow)
        or pa.types.is_large_list(arrow)
        or pa.types.is_fixed_size_list(arrow)
    ):
        inner, _, _ = _datatype_of(arrow.value_type)
        if inner in ("char", "boolean"):
            return "char", "*", None
        return inner, "*", None
    return "char", "*", None


def fields_for(specs: list[FieldSpec], schema: pa.Schema) -> list[VOField]:
    """The FIELDs of a result: TAP_SCHEMA metadata where known, else derived from Arrow."""
    fields = []
    for spec, arrow_field in zip(specs, schema, strict=True):
        meta = spec.meta
        if meta is not None and meta.datatype in _ARROW_FOR:
            fields.append(VOField(name=spec.name, **meta.description_fields()))
            continue
        datatype, arraysize, xtype = _datatype_of(arrow_field.type)
        if spec.xtype:
            datatype, arraysize, xtype = "double", _GEOMETRY_SIZES[spec.xtype], spec.xtype
        fields.append(VOField(name=spec.name, datatype=datatype, arraysize=arraysize, xtype=xtype))
    return fields


def conform(column: pa.Array | pa.ChunkedArray, field: VOField) -> pa.Array:
    """*column* cast to the Arrow type matching *field* (timestamps as ISO 8601 strings)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    target = field.arrow_type
    if column.type == target:
        return column
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        if pa.types.is_timestamp(column.type):
            # Arrow's %S already carries the fraction of a second (no %f; it would be literal).
            return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
        return pc.strftime(column, format="%Y-%m-%d")
    if pa.types.is_large_string(column.type) and target == pa.string():
        return column.cast(pa.string())
    if pa.types.is_boolean(target) and pa.types.is_integer(column.type):
        return pc.not_equal(column, 0)
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
        column = column.cast(pa.list_(column.type.value_type))
    return column.cast(target, safe=False)


def field_xml(field: VOField, *, element: str = "FIELD", indent: str = "      ") -> str:
    attrs = [f"name={quoteattr(field.name)}", f"datatype={quoteattr(field.datatype)}"]
    if field.arraysize:
        attrs.append(f"arraysize={quoteattr(field.arraysize)}")
    for key in ("xtype", "unit", "ucd", "utype"):
        value = getattr(field, key)
        if value:
            attrs.append(f"{key}={quoteattr(value)}")
    body = ""
    if field.description:
        body = f"<DESCRIPTION>{escape(field.description)}</DESCRIPTION>"
    return f"{indent}<{element} {' '.join(attrs)}>{body}</{element}>\n"
