"""TAP_SCHEMA metadata: what tables and columns the service publishes, and how.

Everything the service says about a column (VOTable datatype, arraysize, unit, UCD, utype,
xtype, description) comes from the catalog's own ``tap_schema`` tables, so the service works
for any catalog that ships a TAP_SCHEMA 1.1. Names are matched case-insensitively (ADQL regular
identifiers); the canonical spelling is TAP_SCHEMA's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "TAP_SCHEMA_SELF",
    "ColumnDescription",
    "ColumnMeta",
    "ForeignKey",
    "TableMeta",
    "TapSchema",
]


@dataclass(frozen=True)
class ColumnDescription:
    """What a TAP_SCHEMA column and a VOTable FIELD say about a column."""

    name: str
    datatype: str
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None

    def description_fields(self) -> dict[str, Any]:
        """Everything but the name, to describe another column the same way."""
        return {f.name: getattr(self, f.name) for f in fields(ColumnDescription)[1:]}


@dataclass(frozen=True)
class ColumnMeta(ColumnDescription):
    """One column as TAP_SCHEMA.columns describes it."""

    datatype: str = "char"
    principal: bool = False
    indexed: bool = False
    std: bool = False
    column_index: int | None = None

    def renamed(self, name: str) -> ColumnMeta:
        return replace(self, name=name)

    @property
    def plain_name(self) -> str:
        """The name without ADQL delimiters (TAP_SCHEMA lists reserved words as ``"size"``)."""
        name = self.name
        if len(name) > 1 and name.startswith('"') and name.endswith('"'):
            return name[1:-1].replace('""', '"')
        return name


@dataclass(frozen=True)
class ForeignKey:
    key_id: str
    from_table: str
    target_table: str
    columns: tuple[tuple[str, str], ...]
    description: str | None = None
    utype: str | None = None


@dataclass
class TableMeta:
    """One table: its schema, name (without schema) and ordered columns."""

    schema_name: str
    name: str
    columns: list[ColumnMeta] = field(default_factory=list)
    table_type: str = "table"
    description: str | None = None
    utype: str | None = None
    table_index: int | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        """The name TAP clients use: ``schema.table``."""
        return f"{self.schema_name}.{self.name}" if self.schema_name else self.name

    def column(self, name: str) -> ColumnMeta | None:
        lowered = name.lower()
        for column in self.columns:
            if column.plain_name.lower() == lowered:
                return column
        return None


@dataclass
class SchemaMeta:
    name: str
    description: str | None = None
    utype: str | None = None
    schema_index: int | None = None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes")
    return bool(value)


class TapSchema:
    """The published tables, looked up case-insensitively by ``schema.table``."""

    def __init__(self, schemas: Iterable[SchemaMeta], tables: Iterable[TableMeta]) -> None:
        self.schemas = sorted(schemas, key=lambda s: (s.schema_index or 0, s.name.lower()))
        self.tables: dict[str, TableMeta] = {}
        for table in tables:
            self.tables[table.qualified.lower()] = table

    def table(self, qualified: str) -> TableMeta | None:
        return self.tables.get(qualified.lower())

    def tables_in(self, schema: str) -> list[TableMeta]:
        found = [t for t in self.tables.values() if t.schema_name.lower() == schema.lower()]
        return sorted(found, key=lambda t: (t.table_index or 0, t.name.lower()))

    def with_tables(self, extra: Iterable[TableMeta]) -> TapSchema:
        """A copy that also knows *extra* tables (e.g. this request's TAP_UPLOAD tables)."""
        merged = TapSchema(self.schemas, self.tables.values())
        for table in extra:
            merged.tables[table.qualified.lower()] = table
        return merged

    @classmethod
    def from_rows(
        cls,
        schemas: Iterable[Mapping[str, Any]],
        tables: Iterable[Mapping[str, Any]],
        columns: Iterable[Mapping[str, Any]],
        keys: Iterable[Mapping[str, Any]] = (),
        key_columns: Iterable[Mapping[str, Any]] = (),
    ) -> TapSchema:
        """Build from the rows of the five TAP_SCHEMA tables (dicts keyed by column name)."""
        schema_list = [
            SchemaMeta(
                name=row["schema_name"],
                description=row.get("description"),
                utype=row.get("utype"),
                schema_index=row.get("schema_index"),
            )
            for row in schemas
        ]
        by_name: dict[str, TableMeta] = {}
        for row in tables:
            qualified = row["table_name"]
            schema_name = row.get("schema_name") or ""
            prefix = schema_name + "."
            name = (
                qualified[len(prefix) :]
                if qualified.lower().startswith(prefix.lower())
                else qualified
            )
            by_name[qualified.lower()] = TableMeta(
                schema_name=schema_name,
                name=name,
                table_type=row.get("table_type") or "table",
                description=row.get("description"),
                utype=row.get("utype"),
                table_index=row.get("table_index"),
            )
        for row in sorted(
            columns, key=lambda r: (r.get("column_index") is None, r.get("column_index") or 0)
        ):
            table = by_name.get(str(row["table_name"]).lower())
            if table is None:
                continue
            arraysize = row.get("arraysize")
            table.columns.append(
                ColumnMeta(
                    name=row["column_name"],
                    datatype=row.get("datatype") or "char",
                    arraysize=str(arraysize) if arraysize not in (None, "") else None,
                    xtype=row.get("xtype") or None,
                    unit=row.get("unit") or None,
                    ucd=row.get("ucd") or None,
                    utype=row.get("utype") or None,
                    description=row.get("description") or None,
                    principal=_bool(row.get("principal")),
                    indexed=_bool(row.get("indexed")),
                    std=_bool(row.get("std")),
                    column_index=row.get("column_index"),
                )
            )
        pairs: dict[str, list[tuple[str, str]]] = {}
        for row in key_columns:
            pairs.setdefault(row["key_id"], []).append((row["from_column"], row["target_column"]))
        for row in keys:
            table = by_name.get(str(row["from_table"]).lower())
            if table is not None:
                table.foreign_keys.append(
                    ForeignKey(
                        key_id=row["key_id"],
                        from_table=row["from_table"],
                        target_table=row["target_table"],
                        columns=tuple(pairs.get(row["key_id"], [])),
                        description=row.get("description"),
                        utype=row.get("utype"),
                    )
                )
        return cls(schema_list, by_name.values())


def _c(name: str, datatype: str, arraysize: str | None, description: str, index: int) -> ColumnMeta:
    return ColumnMeta(
        name=name,
        datatype=datatype,
        arraysize=arraysize,
        description=description,
        principal=True,
        std=True,
        column_index=index,
    )


#: TAP_SCHEMA's description of itself (TAP 1.1 §4), used when a catalog's tap_schema does not
#: list its own tables.
TAP_SCHEMA_SELF: dict[str, list[ColumnMeta]] = {
    "schemas": [
        _c("schema_name", "char", "*", "schema name for reference to tap_schema.schemas", 1),
        _c("utype", "char", "*", "lists the utypes of schemas in the tableset", 2),
        _c("description", "char", "*", "describes schemas in the tableset", 3),
        _c("schema_index", "int", None, "recommended sort order when listing schemas", 4),
    ],
    "tables": [
        _c("schema_name", "char", "*", "the schema this table belongs to", 1),
        _c("table_name", "char", "*", "the fully qualified table name", 2),
        _c("table_type", "char", "*", "one of: table view", 3),
        _c("utype", "char", "*", "lists the utype of tables in the tableset", 4),
        _c("description", "char", "*", "describes tables in the tableset", 5),
        _c("table_index", "int", None, "recommended sort order when listing tables", 6),
    ],
    "columns": [
        _c("table_name", "char", "*", "the table this column belongs to", 1),
        _c("column_name", "char", "*", "the column name", 2),
        _c("utype", "char", "*", "lists the utypes of columns in the tableset", 3),
        _c("ucd", "char", "*", "lists the UCDs of columns in the tableset", 4),
        _c("unit", "char", "*", "lists the unit used for column values in the tableset", 5),
        _c("description", "char", "*", "describes the columns in the tableset", 6),
        _c("datatype", "char", "*", "lists the ADQL datatype of columns in the tableset", 7),
        _c("arraysize", "char", "*", "lists the size of variable-length columns", 8),
        _c("xtype", "char", "*", "a DALI or custom extended type annotation", 9),
        _c('"size"', "int", None, "deprecated: use arraysize", 10),
        _c("principal", "int", None, "a principal column; 1 means 1, 0 means 0", 11),
        _c("indexed", "int", None, "an indexed column; 1 means 1, 0 means 0", 12),
        _c("std", "int", None, "a standard column; 1 means 1, 0 means 0", 13),
        _c("column_index", "int", None, "recommended sort order when listing columns", 14),
    ],
    "keys": [
        _c("key_id", "char", "*", "unique key to join to tap_schema.key_columns", 1),
        _c("from_table", "char", "*", "the table with the foreign key", 2),
        _c("target_table", "char", "*", "the table with the primary key", 3),
        _c("utype", "char", "*", "lists the utype of keys in the tableset", 4),
        _c("description", "char", "*", "describes keys in the tableset", 5),
    ],
    "key_columns": [
        _c("key_id", "char", "*", "key to join to tap_schema.keys", 1),
        _c("from_column", "char", "*", "column in the from_table", 2),
        _c("target_column", "char", "*", "column in the target_table", 3),
    ],
}


#: TAP_SCHEMA's own foreign keys (TAP 1.1 §4): (key_id, from, target, from_column, target_column).
TAP_SCHEMA_KEYS = [
    ("tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas", "schema_name", "schema_name"),
    ("columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables", "table_name", "table_name"),
    ("keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "from_table", "table_name"),
    ("keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "target_table", "table_name"),
    ("key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys", "key_id", "key_id"),
]
