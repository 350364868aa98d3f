"""ADQL -> backend SQL: parse with the ADQL dialect, check every node and name, rewrite.

The pipeline (:func:`translate`):

1. parse (sqlglot, :class:`~.dialect.ADQL`); exactly one statement, and it must be a query;
2. allow-list every syntax node and every function - anything else (``COPY``, ``PRAGMA``,
   ``read_csv``, ``pg_read_file``, lambdas, ...) is refused before it reaches a database;
3. resolve tables against TAP_SCHEMA (and this request's TAP_UPLOAD tables), then columns with
   sqlglot's qualifier, so unknown names fail with their position;
4. rewrite geometry (:mod:`.geometry`), apply MAXREC as ``LIMIT maxrec+1``, rename tables to
   their physical names and write the target dialect's SQL.

The output columns keep their TAP_SCHEMA metadata (:class:`FieldSpec`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.schema import MappingSchema

from sciplat.services.tap.adql.dialect import ADQL
from sciplat.services.tap.adql.errors import AdqlError
from sciplat.services.tap.adql.geometry import (
    GEOMETRY_FUNCTIONS,
    GeometryStyle,
    geometry_xtype,
    rewrite_geometry,
)
from sciplat.services.tap.schema import ColumnMeta, TableMeta, TapSchema

__all__ = ["MAX_QUERY_LENGTH", "FieldSpec", "Target", "Translation", "translate"]

MAX_QUERY_LENGTH = 100_000
MAX_DEPTH = 200

#: Syntax the service accepts (ADQL 2.1's grammar, as sqlglot spells it).
_ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.Union,
    exp.Intersect,
    exp.Except,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Distinct,
    exp.Column,
    exp.Identifier,
    exp.Table,
    exp.TableAlias,
    exp.Alias,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.Like,
    exp.ILike,
    exp.Escape,
    exp.In,
    exp.Between,
    exp.Exists,
    exp.Any,
    exp.All,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseNot,
    exp.Cast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Case,
    exp.If,
    exp.Tuple,
    exp.Contains,
)

#: Functions by sqlglot class (ADQL 2.1 §2.3: math, trigonometry, strings, aggregates).
_ALLOWED_FUNCTIONS: tuple[type[exp.Expr], ...] = (
    exp.Abs,
    exp.Ceil,
    exp.Floor,
    exp.Degrees,
    exp.Radians,
    exp.Exp,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Sqrt,
    exp.Pi,
    exp.Rand,
    exp.Round,
    exp.Trunc,
    exp.Acos,
    exp.Asin,
    exp.Atan,
    exp.Atan2,
    exp.Cos,
    exp.Cot,
    exp.Sin,
    exp.Tan,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.Substring,
    exp.Length,
    exp.Coalesce,
    exp.Nullif,
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Min,
    exp.Max,
)

_STATEMENTS = frozenset(
    [
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMENT",
        "COMMIT",
        "COPY",
        "CREATE",
        "DEALLOCATE",
        "DELETE",
        "DESCRIBE",
        "DETACH",
        "DO",
        "DROP",
        "EXECUTE",
        "EXPLAIN",
        "EXPORT",
        "GRANT",
        "IMPORT",
        "INSERT",
        "INSTALL",
        "LISTEN",
        "LOAD",
        "LOCK",
        "MERGE",
        "NOTIFY",
        "PRAGMA",
        "PREPARE",
        "REINDEX",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SET",
        "SHOW",
        "SUMMARIZE",
        "TRUNCATE",
        "UPDATE",
        "USE",
        "VACUUM",
        "VALUES",
    ]
)

_CAST_TYPES = {
    exp.DType.SMALLINT: "short",
    exp.DType.INT: "int",
    exp.DType.BIGINT: "long",
    exp.DType.FLOAT: "float",
    exp.DType.DOUBLE: "double",
    exp.DType.CHAR: "char",
    exp.DType.VARCHAR: "char",
    exp.DType.TIMESTAMP: "char",
}

_SQL_TYPES = {
    "boolean": "BOOLEAN",
    "unsignedByte": "SMALLINT",
    "short": "SMALLINT",
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "char": "VARCHAR",
    "unicodeChar": "VARCHAR",
}


@dataclass(frozen=True)
class Target:
    """A backend the translator writes for."""

    #: sqlglot dialect name ("duckdb", "postgres").
    dialect: str
    #: Physical (schema, table) of a published table.
    physical: Callable[[TableMeta], tuple[str | None, str]]
    geometry: GeometryStyle
    #: Last rewrite of the tree for the backend's own function signatures, if any.
    rewrite: Callable[[exp.Expr], exp.Expr] | None = None


@dataclass(frozen=True)
class FieldSpec:
    """One output column: its name, and TAP_SCHEMA metadata when it is a published column."""

    name: str
    meta: ColumnMeta | None = None
    xtype: str | None = None


@dataclass
class Translation:
    sql: str
    fields: list[FieldSpec]
    tables: list[str] = field(default_factory=list)
    #: The LIMIT put on the query for MAXREC (maxrec + 1), or None.
    limit: int | None = None


def _parse(adql: str) -> exp.Expr:
    if not adql or not adql.strip():
        raise AdqlError("The query is empty")
    if len(adql) > MAX_QUERY_LENGTH:
        raise AdqlError(f"The query is longer than {MAX_QUERY_LENGTH} characters")
    first = re.match(r"\s*([A-Za-z_]+)", adql)
    if first and first[1].upper() not in ("SELECT", "WITH"):
        word = first[1].upper()
        if word in _STATEMENTS:
            raise AdqlError(f"Only SELECT queries are allowed, not {word}", line=1, col=1)
        raise AdqlError(f"Syntax error: expected SELECT or WITH, found {first[1]!r}", line=1, col=1)
    try:
        statements = [s for s in sqlglot.parse(adql, read=ADQL) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        message = str(first.get("description") or exc).split(". Line")[0]
        message = re.sub(r"<Token token_type: TokenType\.\w+, text: ([^,]*),.*?>", r"'\1'", message)
        raise AdqlError(
            f"Syntax error: {message}", line=first.get("line"), col=first.get("col")
        ) from exc
    except TokenError as exc:
        raise AdqlError(f"Syntax error: {exc}") from exc
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise AdqlError("Syntax error: the query could not be parsed") from exc
    if len(statements) != 1:
        raise AdqlError(f"Expected one SELECT statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise AdqlError(f"Only SELECT queries are allowed, not {tree.key.upper()}", node=tree)
    return tree


def _depth(node: exp.Expr) -> int:
    depth = 0
    while node.parent is not None:
        node = node.parent
        depth += 1
    return depth


def _check_nodes(tree: exp.Expr) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            name = str(node.this).upper()
            if name not in GEOMETRY_FUNCTIONS:
                raise AdqlError(f"Unknown or forbidden function {name}", node=node)
        elif isinstance(node, _ALLOWED_FUNCTIONS):
            if isinstance(node, exp.Rand) and node.this is not None:
                raise AdqlError("RAND takes no seed here", node=node)
        elif isinstance(node, exp.Func) and not isinstance(node, _ALLOWED_NODES):
            raise AdqlError(f"Unknown or forbidden function {node.sql_name()}", node=node)
        elif not isinstance(node, _ALLOWED_NODES):
            raise AdqlError(f"Unsupported syntax: {node.key.upper()}", node=node)
        if isinstance(node, exp.Cast):
            to = node.args.get("to")
            if to is None or to.this not in _CAST_TYPES:
                raise AdqlError(f"CAST to {to.sql() if to else '?'} is not supported", node=node)
        if isinstance(node, exp.Join) and node.args.get("method"):
            method = str(node.args["method"]).upper()
            if method not in ("NATURAL",):
                raise AdqlError(f"Unsupported join: {method}", node=node)
        if isinstance(node, exp.Star) and not isinstance(
            node.parent, exp.Select | exp.Column | exp.Count
        ):
            raise AdqlError("* stands alone (SELECT *, t.*) or in COUNT(*)", node=node)
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            raise AdqlError("Table functions are not allowed in FROM", node=node)
        if isinstance(node, exp.Select) and (node.args.get("kind") or node.args.get("into")):
            raise AdqlError("SELECT INTO is not allowed", node=node)
        if _depth(node) > MAX_DEPTH:
            raise AdqlError("The query is nested too deeply", node=node)


def _resolve_tables(tree: exp.Expr, schema: TapSchema) -> dict[tuple[str, str], TableMeta]:
    """Check every table reference; returns (schema, table) lower-cased -> its metadata."""
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    used: dict[tuple[str, str], TableMeta] = {}
    for table in tree.find_all(exp.Table):
        if table.args.get("catalog"):
            raise AdqlError(f"Unknown table {table.sql(dialect=ADQL)}", node=table)
        db, name = table.db, table.name
        if not db and name.lower() in cte_names:
            continue
        meta = schema.table(f"{db}.{name}") if db else None
        if meta is None and not db:
            matches = [t for t in schema.tables.values() if t.name.lower() == name.lower()]
            meta = matches[0] if len(matches) == 1 else None
        if meta is None:
            shown = f"{db}.{name}" if db else name
            raise AdqlError(
                f"Unknown table '{shown}' (see /tables or TAP_SCHEMA.tables)", node=table
            )
        key = (meta.schema_name.lower(), meta.name.lower())
        used[key] = meta
        table.set("db", exp.to_identifier(key[0]))
        table.set("this", exp.to_identifier(key[1]))
    return used


def _normalize(tree: exp.Expr) -> None:
    """ADQL names are case-insensitive: fold every identifier to lower case, unquoted."""
    for ident in tree.find_all(exp.Identifier):
        ident.set("this", ident.this.lower())
        ident.set("quoted", False)


def _mapping(tables: dict[tuple[str, str], TableMeta]) -> MappingSchema:
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for (db, name), meta in tables.items():
        nested.setdefault(db, {})[name] = {
            c.plain_name.lower(): _SQL_TYPES.get(c.datatype, "VARCHAR") for c in meta.columns
        }
    return MappingSchema(nested, dialect=ADQL, normalize=False)


def _leftmost(query: exp.Expr) -> exp.Select:
    while isinstance(query, exp.SetOperation):
        query = query.this
    while isinstance(query, exp.Subquery):
        query = query.this
    if not isinstance(query, exp.Select):
        raise AdqlError("Could not determine the output columns")
    return query


def _left_scope(scope: Scope) -> Scope:
    while scope.set_operation_scopes:
        scope = scope.set_operation_scopes[0]
    return scope


def _column_meta(
    scope: Scope, node: exp.Expr, tables: dict[tuple[str, str], TableMeta], depth: int = 0
) -> ColumnMeta | None:
    """TAP_SCHEMA metadata of a projected expression that is (an alias of) a column."""
    if depth > 50 or not isinstance(node, exp.Column):
        return None
    source = scope.sources.get(node.table)
    if isinstance(source, exp.Table):
        meta = tables.get((source.db, source.name))
        return meta.column(node.name) if meta else None
    if isinstance(source, Scope):
        inner = _left_scope(source)
        for projection in inner.expression.expressions:
            if projection.alias_or_name == node.name:
                target = projection.this if isinstance(projection, exp.Alias) else projection
                return _column_meta(inner, target, tables, depth + 1)
    return None


def _output_names(select: exp.Select) -> list[tuple[str | None, str | None]]:
    """(alias, column name) of each projection as written, before names are folded."""
    names: list[tuple[str | None, str | None]] = []
    for projection in select.expressions:
        if isinstance(projection, exp.Alias):
            names.append((projection.alias, None))
        elif isinstance(projection, exp.Column) and not isinstance(projection.this, exp.Star):
            names.append((None, projection.name))
        else:
            names.append((None, None))
    return names


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        key = name.lower()
        if key in seen:
            seen[key] += 1
            candidate = f"{name}_{seen[key]}"
            while candidate.lower() in seen:
                seen[key] += 1
                candidate = f"{name}_{seen[key]}"
            seen[candidate.lower()] = 0
            result.append(candidate)
        else:
            seen[key] = 0
            result.append(name)
    return result


def _apply_limit(tree: exp.Query, maxrec: int | None) -> tuple[exp.Query, int | None]:
    if maxrec is None:
        return tree, None
    wanted = maxrec + 1
    limit = tree.args.get("limit")
    if isinstance(limit, exp.Limit):
        value = limit.expression
        if isinstance(value, exp.Literal) and not value.is_string:
            try:
                current = int(value.this)
            except ValueError as exc:
                raise AdqlError("TOP must be an integer", node=value) from exc
            if current <= wanted:
                return tree, None
        limit.set("expression", exp.Literal.number(wanted))
        return tree, wanted
    if isinstance(tree, exp.SetOperation):
        wrapped = exp.select("*").from_(tree.subquery("tap_result", copy=False), copy=False)
        wrapped = wrapped.limit(wanted, copy=False)
        return wrapped, wanted
    return tree.limit(wanted, copy=False), wanted


def translate(
    adql: str,
    schema: TapSchema,
    target: Target,
    *,
    maxrec: int | None = None,
) -> Translation:
    """Translate *adql* for *target*; :class:`AdqlError` (HTTP 400) on any problem."""
    tree = _parse(adql)
    _check_nodes(tree)
    for limit in tree.find_all(exp.Limit, exp.Offset):
        value = limit.expression
        if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
            raise AdqlError("TOP and OFFSET take a non-negative integer", node=limit)
    user_names = _output_names(_leftmost(tree))
    tables = _resolve_tables(tree, schema)
    _normalize(tree)
    try:
        tree = qualify(
            tree,
            schema=_mapping(tables),
            dialect=ADQL,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as exc:
        message = str(exc)
        match = re.search(r"Line: (\d+), Col: (\d+)", message)
        message = re.sub(r"\s*Line: \d+, Col: \d+\.?", "", message).strip().rstrip(".")
        message = message.replace("could not be resolved", "is not a column of the tables in FROM")
        line, col = (int(match[1]), int(match[2])) if match else (None, None)
        raise AdqlError(message, line=line, col=col) from exc
    except (SqlglotError, RecursionError, ValueError, KeyError) as exc:
        raise AdqlError(f"The query could not be resolved: {exc}") from exc

    root = build_scope(tree)
    if root is None:
        raise AdqlError("Could not analyse the query")
    outer_scope = _left_scope(root)
    outer = outer_scope.expression
    if len(user_names) != len(outer.expressions):
        user_names = [(None, None)] * len(outer.expressions)
    fields: list[FieldSpec] = []
    for projection, (user_name, written) in zip(outer.expressions, user_names, strict=True):
        body = projection.this if isinstance(projection, exp.Alias) else projection
        meta = _column_meta(outer_scope, body, tables)
        if user_name is None and written and meta and meta.plain_name.lower() != written.lower():
            user_name = written
        name = user_name or (meta.plain_name if meta else None)
        if name is None:
            if isinstance(body, exp.Func):
                name = (
                    str(body.this).lower()
                    if isinstance(body, exp.Anonymous)
                    else body.sql_name().lower()
                )
            else:
                name = projection.alias_or_name or "col"
            name = re.sub(r"\W+", "_", name).strip("_") or "col"
        xtype = geometry_xtype(body)
        fields.append(
            FieldSpec(name=name, meta=meta if user_name is None or meta else None, xtype=xtype)
        )
    names = _unique([f.name for f in fields])
    fields = [FieldSpec(n, f.meta, f.xtype) for n, f in zip(names, fields, strict=True)]

    tree = rewrite_geometry(tree, target.geometry)
    outer = _leftmost(tree)
    renamed: dict[str, str] = {}
    for projection, spec in zip(outer.expressions, fields, strict=True):
        body = projection.this if isinstance(projection, exp.Alias) else projection
        renamed[projection.alias_or_name] = spec.name
        alias = exp.alias_(body.pop(), exp.to_identifier(spec.name, quoted=True), copy=False)
        projection.replace(alias)
    order = tree.args.get("order")
    if order is not None:
        for column in order.find_all(exp.Column):
            if not column.table and column.name in renamed:
                column.set("this", exp.to_identifier(renamed[column.name], quoted=True))
    for table in tree.find_all(exp.Table):
        meta = tables.get((table.db, table.name))
        if meta is not None:
            db, name = target.physical(meta)
            table.set("db", exp.to_identifier(db) if db else None)
            table.set("this", exp.to_identifier(name))
    tree, limit = _apply_limit(tree, maxrec)
    if target.rewrite is not None:
        tree = target.rewrite(tree)
    try:
        sql = tree.sql(dialect=target.dialect, identify=True)
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise AdqlError(f"The query could not be translated: {exc}") from exc
    return Translation(
        sql=sql,
        fields=fields,
        tables=sorted({t.qualified for t in tables.values()}),
        limit=limit,
    )
