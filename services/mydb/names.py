"""Names in MyDB: schemas ``user_<name>`` / ``group_<name>`` and table names.

A table name is a plain ADQL regular identifier (letter first, then letters, digits and
underscores, at most 63 characters) that is not an ADQL or SQL reserved word; it is stored in
lower case, so ``Bright`` and ``bright`` are the same table. Nothing is ever quoted or
interpolated into SQL unchecked: these rules are what the storage layer relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sciplat.services.common.errors import UsageError

__all__ = [
    "RESERVED",
    "TableName",
    "adql_column",
    "column_name",
    "group_schema",
    "parse_table_name",
    "schema_kind",
    "user_schema",
]

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PRINCIPAL = re.compile(r"[^a-z0-9_]")

#: ADQL 2.1 reserved words (§2.1.3: its own and SQL-92's).
_RESERVED_WORDS = """
    abs acos area asin atan atan2 box ceiling centroid circle contains coord1 coord2 coordsys
    cos cot degrees distance exp floor ilike intersects log log10 mod pi point polygon power
    radians region rand round sin sqrt tan top truncate offset lower upper in_unit
    absolute action add all allocate alter and any are as asc assertion at authorization avg
    begin between bit bit_length both by cascade cascaded case cast catalog char character
    character_length char_length check close coalesce collate collation column commit connect
    connection constraint constraints continue convert corresponding count create cross current
    current_date current_time current_timestamp current_user cursor date day deallocate dec
    decimal declare default deferrable deferred delete desc describe descriptor diagnostics
    disconnect distinct domain double drop else end end-exec escape except exception exec execute
    exists external extract false fetch first float for foreign found from full get global go
    goto grant group having hour identity immediate in indicator initially inner input
    insensitive insert int integer intersect interval into is isolation join key language last
    leading left level like local lower match max min minute module month names national natural
    nchar next no not null nullif numeric octet_length of on only open option or order outer
    output overlaps pad partial position precision prepare preserve primary prior privileges
    procedure public read real references relative restrict revoke right rollback rows schema
    scroll second section select session session_user set size smallint some space sql sqlcode
    sqlerror sqlstate substring sum system_user table temporary then time timestamp
    timezone_hour timezone_minute to trailing transaction translate translation trim true union
    unique unknown update upper usage user using value values varchar varying view when whenever
    where with work write year zone limit returning analyse analyze
"""
RESERVED = frozenset(_RESERVED_WORDS.split())

USER_PREFIX = "user_"
GROUP_PREFIX = "group_"


def _principal(name: str) -> str:
    folded = _PRINCIPAL.sub("_", name.lower())
    return folded[:56]


def user_schema(user: str) -> str:
    """The schema of *user*'s own tables (``user_`` + the name, folded to an identifier)."""
    return USER_PREFIX + _principal(user)


def group_schema(group: str) -> str:
    """The schema shared by the members of *group*."""
    return GROUP_PREFIX + _principal(group)


def schema_kind(schema: str) -> str | None:
    """``"user"``, ``"group"`` or None (not a MyDB schema)."""
    if schema.startswith(USER_PREFIX):
        return "user"
    if schema.startswith(GROUP_PREFIX):
        return "group"
    return None


def _check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name.lower()):
        raise UsageError(
            f"{what} {name!r} is not valid: use a letter, then letters, digits or underscores "
            "(at most 63 characters), no quotes or spaces"
        )
    lowered = name.lower()
    if lowered in RESERVED:
        raise UsageError(f"{what} {name!r} is an ADQL/SQL reserved word; choose another name")
    return lowered


@dataclass(frozen=True)
class TableName:
    """A MyDB table: ``schema.table``, both lower case."""

    schema: str
    table: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def __str__(self) -> str:
        return self.qualified


def parse_table_name(text: str, *, default_schema: str) -> TableName:
    """``name`` (in *default_schema*) or ``schema.name``; :class:`UsageError` if invalid.

    The schema must be a MyDB schema (``user_...`` or ``group_...``); whether the caller may
    use it is checked elsewhere.
    """
    if not isinstance(text, str) or not text.strip():
        raise UsageError("A table name is required")
    if text != text.strip() or '"' in text or "`" in text or "[" in text:
        raise UsageError(f"Table name {text!r} is not valid: no quotes, brackets or spaces")
    schema, dot, table = text.rpartition(".")
    if not dot:
        schema = default_schema
    elif "." in schema or not schema:
        raise UsageError(f"Table name {text!r} is not valid: use 'table' or 'schema.table'")
    schema = schema.lower()
    if schema_kind(schema) is None or not _IDENT.match(schema):
        raise UsageError(f"Schema {schema!r} is not a MyDB schema: use user_<you> or group_<group>")
    return TableName(schema=schema, table=_check_identifier(table, "Table name"))


def column_name(name: str, index: int) -> str:
    """A stored column name: lower case, invalid characters as ``_``, ``c_`` before a name that
    does not start with a letter (``2mass_j`` -> ``c_2mass_j``)."""
    folded = re.sub(r"[^a-z0-9_]", "_", str(name or "").strip().lower()) or f"col{index}"
    if not folded[0].isalpha():
        folded = f"c_{folded}"
    return folded[:63]


def adql_column(name: str) -> str:
    """How TAP_SCHEMA lists a stored column: reserved words delimited (``"size"``), as TAP 1.1
    requires."""
    return f'"{name}"' if name in RESERVED else name
