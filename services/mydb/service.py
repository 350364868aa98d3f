"""MyDB logic: who may read or write which schema, quotas, and transactional table creation.

Rules:

- ``user_<you>`` is yours: you create, replace, drop and share its tables.
- ``group_<g>`` (for each configured group *g*) is shared by its members: any member creates,
  replaces or drops tables there; members read them.
- A table you share with a group is readable (SELECT in ADQL) by its members; they cannot
  replace, drop or re-share it.
- Anything else is refused with the same answer whether it exists or not.

Quotas: rows and stored bytes per schema, from the groups' ``quotas.mydb_rows`` and
``quotas.mydb_bytes`` (a user gets the largest of their groups'). A write over quota fails and
leaves nothing behind; a replaced table stays as it was.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from sciplat.config import QuotaConfig, Settings
from sciplat.services.common.errors import (
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServiceError,
    UsageError,
)
from sciplat.services.mydb.formats import ColumnInfo
from sciplat.services.mydb.names import (
    TableName,
    group_schema,
    parse_table_name,
    schema_kind,
    user_schema,
)
from sciplat.services.mydb.registry import ColumnRecord, Registry, TableRecord
from sciplat.services.mydb.storage import TableStore, TableWriter

__all__ = ["Caller", "MyDBService", "Quota"]


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quota:
    rows: int
    bytes: int


def _datatype(kind: pa.DataType) -> tuple[str, str | None]:
    if pa.types.is_boolean(kind):
        return "boolean", None
    if pa.types.is_int8(kind) or pa.types.is_int16(kind):
        return "short", None
    if pa.types.is_int32(kind):
        return "int", None
    if pa.types.is_integer(kind):
        return "long", None
    if pa.types.is_float32(kind):
        return "float", None
    if pa.types.is_floating(kind):
        return "double", None
    return "char", "*"


def _gib(value: int) -> str:
    return f"{value / 2**30:.3g} GiB" if value >= 2**30 else f"{value / 2**20:.3g} MiB"


class MyDBService:
    def __init__(self, settings: Settings, registry: Registry, store: TableStore) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self._lock = threading.Lock()

    # who may do what --------------------------------------------------------------------------
    def member_groups(self, caller: Caller) -> list[str]:
        """The caller's groups that are configured (only those have schemas and shares)."""
        return sorted(g for g in caller.groups if g in self.settings.groups)

    def name(self, text: str, caller: Caller) -> TableName:
        return parse_table_name(text, default_schema=user_schema(caller.name))

    def writable_schemas(self, caller: Caller) -> list[str]:
        return [user_schema(caller.name), *(group_schema(g) for g in self.member_groups(caller))]

    def _check_write(self, name: TableName, caller: Caller) -> None:
        if name.schema not in self.writable_schemas(caller):
            raise PermissionDeniedError(
                f"You may not write in schema {name.schema!r}: use {user_schema(caller.name)!r} "
                "or group_<group> of a group you belong to"
            )
        if schema_kind(name.schema) == "user":
            owner, kind = caller.name, "user"
        else:
            owner = next(g for g in self.member_groups(caller) if group_schema(g) == name.schema)
            kind = "group"
        if not self.registry.claim(name.schema, kind, owner):
            raise PermissionDeniedError(
                f"Schema {name.schema!r} already belongs to another {kind} whose name folds to "
                "the same identifier; ask an operator"
            )

    def visible(self, caller: Caller) -> list[TableRecord]:
        """Every table the caller may read: own, their groups' schemas, shared with them."""
        groups = self.member_groups(caller)
        schemas = [user_schema(caller.name), *(group_schema(g) for g in groups)]
        return self.registry.visible(schemas, groups)

    def readable(self, name: TableName, caller: Caller) -> TableRecord:
        """The table's record if the caller may read it; the same refusal whether a table
        outside their reach exists or not."""
        record = self.registry.get(name)
        writable = name.schema in self.writable_schemas(caller)
        if record is not None and (
            writable or set(record.shares) & set(self.member_groups(caller))
        ):
            return record
        if writable:
            raise NotFoundError(f"No table {name.qualified!r}")
        raise PermissionDeniedError(f"You have no access to {name.qualified!r}")

    # quotas -----------------------------------------------------------------------------------
    def quota(self, schema: str, caller: Caller) -> Quota:
        """What *schema* may hold: an operator's grant (``sciplat admin quota set ...
        --resource mydb_rows|mydb_bytes``) to its user or group, else from the groups."""
        from sciplat.services.workspace.quota import granted

        owner, configured = ("users", caller.name), self._configured_quota(schema, caller)
        if schema_kind(schema) == "group":
            owner = next(
                (("groups", g) for g in self.member_groups(caller) if group_schema(g) == schema),
                owner,
            )
        rows = granted(self.settings, "mydb_rows", *owner)
        size = granted(self.settings, "mydb_bytes", *owner)
        return Quota(
            configured.rows if rows is None else rows, configured.bytes if size is None else size
        )

    def _configured_quota(self, schema: str, caller: Caller) -> Quota:
        groups = self.settings.groups
        if schema_kind(schema) == "group":
            for group in self.member_groups(caller):
                if group_schema(group) == schema:
                    q = groups[group].quotas
                    return Quota(q.mydb_rows, q.mydb_bytes)
        configs = [groups[g].quotas for g in self.member_groups(caller)]
        if configs:
            return Quota(max(q.mydb_rows for q in configs), max(q.mydb_bytes for q in configs))
        # In no configured group: the smallest configured allocation (as for disk quotas).
        configs = [g.quotas for g in groups.values()] or [QuotaConfig()]
        return Quota(min(q.mydb_rows for q in configs), min(q.mydb_bytes for q in configs))

    def usage(self, caller: Caller) -> list[dict]:
        out = []
        for schema in self.writable_schemas(caller):
            rows, size = self.registry.usage(schema)
            quota = self.quota(schema, caller)
            out.append(
                {
                    "schema": schema,
                    "rows": rows,
                    "bytes": size,
                    "quota_rows": quota.rows,
                    "quota_bytes": quota.bytes,
                }
            )
        return out

    # writes -----------------------------------------------------------------------------------
    def prepare(self, name: TableName, caller: Caller, *, overwrite: bool) -> None:
        """Refuse a write before any data moves (permission, collision)."""
        self._check_write(name, caller)
        existing = self.registry.get(name)
        if existing is not None and not overwrite:
            raise UsageError(
                f"Table {name.qualified!r} already exists; pass overwrite=true to replace it"
            )

    @contextlib.contextmanager
    def writing(
        self,
        name: TableName,
        schema: pa.Schema,
        caller: Caller,
        *,
        overwrite: bool,
        source: str,
        info: dict[str, ColumnInfo] | None = None,
        description: str | None = None,
    ) -> Iterator[_QuotaWriter]:
        """Write a table batch by batch; it exists (and is registered) only if the block ends
        normally and the result is within quota."""
        self.prepare(name, caller, overwrite=overwrite)
        quota = self.quota(name.schema, caller)
        used_rows, used_bytes = self.registry.usage(name.schema, excluding=name.table)
        writer = self.store.writer(name, schema, replace=overwrite)
        guarded = _QuotaWriter(writer, name, quota, used_rows, used_bytes)
        try:
            yield guarded
            size = guarded.finish()
            with self._lock:
                if self.registry.get(name) is not None and not overwrite:
                    raise UsageError(f"Table {name.qualified!r} was created meanwhile")
                writer.commit()
                info = info or {}
                self.registry.put(
                    TableRecord(
                        name=name,
                        owner=caller.name,
                        rows=writer.rows,
                        bytes=size,
                        columns=[
                            ColumnRecord(
                                f.name,
                                *_datatype(f.type),
                                unit=info.get(f.name, ColumnInfo()).unit,
                                ucd=info.get(f.name, ColumnInfo()).ucd,
                                description=info.get(f.name, ColumnInfo()).description,
                            )
                            for f in schema
                        ],
                        created=time.time(),
                        description=description,
                        source=source,
                    )
                )
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, ServiceError | GeneratorExit | KeyboardInterrupt):
                raise
            if isinstance(exc, pa.ArrowException):
                raise UsageError(f"The values could not be stored: {exc}"[:300]) from exc
            if isinstance(exc, Exception) and type(exc).__module__.startswith("psycopg"):
                raise UsageError(f"The table could not be written: {exc}".splitlines()[0]) from exc
            raise

    def create(
        self,
        name: TableName,
        table: pa.Table,
        caller: Caller,
        *,
        overwrite: bool,
        source: str,
        info: dict[str, ColumnInfo] | None = None,
    ) -> TableRecord:
        with self.writing(
            name, table.schema, caller, overwrite=overwrite, source=source, info=info
        ) as writer:
            for batch in table.to_batches(max_chunksize=100_000):
                writer.write(batch)
        return self.registry.get(name)  # type: ignore[return-value]

    def drop(self, name: TableName, caller: Caller) -> None:
        record = self.readable(name, caller)
        self._check_write(name, caller)
        with self._lock:
            self.store.drop(record.name)
            self.registry.delete(record.name)

    def share(self, name: TableName, group: str, caller: Caller, *, revoke: bool = False) -> None:
        if schema_kind(name.schema) != "user" or name.schema != user_schema(caller.name):
            raise PermissionDeniedError(
                f"Only tables in your own schema {user_schema(caller.name)!r} can be shared"
            )
        record = self.readable(name, caller)
        if group not in self.settings.groups:
            raise UsageError(f"Unknown group {group!r} (groups: {sorted(self.settings.groups)})")
        if revoke:
            if not self.registry.unshare(record.name, group):
                raise NotFoundError(f"{name.qualified!r} is not shared with {group!r}")
        else:
            self.registry.share(record.name, group)


class _QuotaWriter:
    """Counts rows against the quota as they arrive; bytes are checked before commit."""

    def __init__(
        self, writer: TableWriter, name: TableName, quota: Quota, used_rows: int, used_bytes: int
    ) -> None:
        self.writer = writer
        self.name = name
        self.quota = quota
        self.used_rows = used_rows
        self.used_bytes = used_bytes

    @property
    def rows(self) -> int:
        return self.writer.rows

    def write(self, batch: pa.RecordBatch) -> None:
        if self.used_rows + self.writer.rows + batch.num_rows > self.quota.rows:
            raise QuotaExceededError(
                f"MyDB quota exceeded: {self.name.schema} may hold {self.quota.rows} rows and "
                f"already has {self.used_rows}; this table has more than "
                f"{self.quota.rows - self.used_rows}. Nothing was stored"
            )
        self.writer.write(batch)

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.write(batch)

    def finish(self) -> int:
        size = self.writer.size()
        if self.used_bytes + size > self.quota.bytes:
            raise QuotaExceededError(
                f"MyDB quota exceeded: {self.name.schema} may store {_gib(self.quota.bytes)} "
                f"and already uses {_gib(self.used_bytes)}; this table takes {_gib(size)}. "
                "Nothing was stored"
            )
        return size
