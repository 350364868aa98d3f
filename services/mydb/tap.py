"""How MyDB tables reach TAP: per-caller metadata, physical names, sources, DEST_TABLE.

The TAP service calls :class:`UserTables` (``TapService.user_tables``) with the caller's name
and groups. The caller's tables join the published ones in their own view of TAP_SCHEMA
(``/tables`` and ``TAP_SCHEMA.schemas/tables/columns`` queries); other users never see them,
because a table reference only resolves against that per-caller view.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sciplat.services.common.errors import UsageError
from sciplat.services.mydb.formats import ColumnInfo, conform_batch, storable_schema
from sciplat.services.mydb.names import adql_column
from sciplat.services.mydb.registry import TableRecord
from sciplat.services.mydb.service import Caller, MyDBService
from sciplat.services.tap.adql import Target, Translation
from sciplat.services.tap.schema import ColumnMeta, SchemaMeta, TableMeta, TapSchema

__all__ = ["CallerTables", "UserTables"]

#: TAP_SCHEMA tables a caller with MyDB tables sees extended with them.
_EXTENDED = ("schemas", "tables", "columns")


def table_meta(record: TableRecord) -> TableMeta:
    columns = [
        ColumnMeta(
            name=adql_column(c.name),
            datatype=c.datatype,
            arraysize=c.arraysize,
            unit=c.unit,
            ucd=c.ucd,
            description=c.description,
            principal=True,
            column_index=index,
        )
        for index, c in enumerate(record.columns)
    ]
    shared = f"; shared read-only with {', '.join(record.shares)}" if record.shares else ""
    description = record.description or f"MyDB table of {record.owner}{shared}"
    return TableMeta(
        schema_name=record.name.schema,
        name=record.name.table,
        columns=columns,
        description=description,
        table_index=1000,
    )


def _items(kind: str, schema: TapSchema) -> list[tuple[Any, dict[str, Any]]]:
    """(metadata object, values that are not its attributes) for each TAP_SCHEMA.<kind> row."""
    if kind == "schemas":
        known = {s.name.lower() for s in schema.schemas}
        extra = sorted(
            {t.schema_name for t in schema.tables.values() if t.schema_name.lower() not in known}
        )
        metas = [*schema.schemas, *(SchemaMeta(name=name, schema_index=1000) for name in extra)]
        return [(m, {"schema_name": m.name}) for m in metas]
    if kind == "tables":
        return [(t, {"table_name": t.qualified}) for t in schema.tables.values()]
    return [
        (c, {"table_name": t.qualified, "column_name": c.name})
        for t in schema.tables.values()
        for c in t.columns
    ]


def _tap_schema_table(kind: str, schema: TapSchema) -> pa.Table:
    """TAP_SCHEMA.<kind> rows for *schema*, with the columns TAP_SCHEMA declares for it."""
    declared = schema.table(f"tap_schema.{kind}")
    if declared is None:
        raise UsageError(f"TAP_SCHEMA.{kind} is not published")
    arrays = []
    items = _items(kind, schema)
    for column in declared.columns:
        name = column.plain_name.lower()
        values = []
        for meta, special in items:
            value = special[name] if name in special else getattr(meta, name, None)
            values.append(int(value) if isinstance(value, bool) else value)
        if column.datatype in ("int", "short", "long"):
            arrays.append(pa.array([None if v is None else int(v) for v in values], pa.int32()))
        else:
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.table(arrays, names=[c.plain_name.lower() for c in declared.columns])


@dataclasses.dataclass
class CallerTables:
    """One caller's MyDB tables, ready for one TAP query."""

    owner: UserTables
    records: list[TableRecord]
    schema: TapSchema

    def wrap(self, target: Target) -> Target:
        """*target*, with MyDB tables and the extended TAP_SCHEMA tables mapped."""
        names = {r.name.qualified: r.name for r in self.records}
        store = self.owner.service.store
        base = target.physical

        def physical(meta: TableMeta) -> tuple[str | None, str]:
            qualified = meta.qualified.lower()
            if qualified in names:
                return store.physical(names[qualified])
            if meta.schema_name.lower() == "tap_schema" and meta.name.lower() in _EXTENDED:
                return None, f"mydb_tap_schema_{meta.name.lower()}"
            return base(meta)

        return dataclasses.replace(target, physical=physical)

    def sources(self, translation: Translation) -> dict[str, Any]:
        """What the query's connection must have registered (or created) to run it."""
        used = {name.lower() for name in translation.tables}
        names = [r.name for r in self.records if r.name.qualified in used]
        found = self.owner.service.store.sources(names)
        for kind in _EXTENDED:
            if f"tap_schema.{kind}" in used:
                found[f"mydb_tap_schema_{kind}"] = _tap_schema_table(kind, self.schema)
        return found


class UserTables:
    """The TAP service's hook into MyDB (``TapService.user_tables``)."""

    def __init__(self, service: MyDBService) -> None:
        self.service = service

    def for_caller(
        self, base: TapSchema, owner: str, groups: tuple[str, ...]
    ) -> CallerTables | None:
        """The caller's view, or None when they have no tables (the plain, cached path)."""
        if not owner:
            return None
        records = self.service.visible(Caller(owner, groups))
        if not records:
            return None
        return CallerTables(self, records, base.with_tables(table_meta(r) for r in records))

    def schema_for(self, base: TapSchema, owner: str, groups: tuple[str, ...]) -> TapSchema:
        view = self.for_caller(base, owner, groups)
        return view.schema if view else base

    def check_destination(self, text: str, owner: str, groups: tuple[str, ...]) -> None:
        """Refuse a DEST_TABLE the caller may not write, when the job is created."""
        caller = Caller(owner, groups)
        self.service.prepare(self.service.name(text, caller), caller, overwrite=True)

    @contextlib.contextmanager
    def capture(self, request: Any, stream: Any) -> Iterator[Any]:
        """Tee *stream*'s rows into the DEST_TABLE of *request* while the result is written;
        the table exists only if the whole result was stored (no MAXREC overflow, no error)."""
        caller = Caller(request.owner, request.groups)
        name = self.service.name(request.dest_table, caller)
        schema = storable_schema(
            pa.schema(
                [
                    pa.field(f.name, t)
                    for f, t in zip(stream.fields, stream.schema.types, strict=True)
                ]
            )
        )
        with self.service.writing(
            name,
            schema,
            caller,
            overwrite=True,
            source="query",
            info={
                stored.name: ColumnInfo(unit=f.unit, ucd=f.ucd, description=f.description)
                for stored, f in zip(schema, stream.fields, strict=True)
            },
            description=f"Result of: {request.query}"[:2000],
        ) as writer:
            rows = stream.rows
            stream.rows = _TeeRows(rows, writer, schema)
            yield stream
            if rows.error:
                raise UsageError(rows.error)
            if rows.overflow:
                raise UsageError(
                    f"The result has more than MAXREC={rows.maxrec} rows, so {name} was not "
                    "created; raise MAXREC"
                )


class _TeeRows:
    """A RowLimiter whose batches also go to a table writer."""

    def __init__(self, inner: Any, writer: Any, schema: pa.Schema) -> None:
        self._inner = inner
        self._writer = writer
        self._schema = schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._inner:
            self._writer.write(conform_batch(batch, self._schema))
            yield batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
