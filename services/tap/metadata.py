"""The TAP service's self-description: VOSI capabilities (TAPRegExt), VOSI tables and the DALI
examples document, all derived from TAP_SCHEMA and the service's settings."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from sciplat.config import Settings
from sciplat.services.common.vosi import (
    AVAILABILITY_ID,
    CAPABILITIES_ID,
    EXAMPLES_ID,
    TABLES_ID,
    Capability,
    capabilities_xml,
)
from sciplat.services.tap.adql.geometry import GEOMETRY_FUNCTIONS
from sciplat.services.tap.schema import ColumnMeta, TableMeta, TapSchema
from sciplat.services.tap.upload import MAX_UPLOAD_BYTES
from sciplat.services.tap.votable.formats import FORMATS

__all__ = [
    "capabilities_document",
    "data_models",
    "examples",
    "examples_document",
    "table_xml",
    "tables_document",
]

_TR = "ivo://ivoa.net/std/TAPRegExt#"
_FEATURES = {
    # Declared from the translator's own list, so capabilities never promise more than it does.
    "features-adqlgeo": sorted(GEOMETRY_FUNCTIONS),
    "features-adql-string": ["LOWER", "UPPER", "ILIKE"],
    "features-adql-sets": ["UNION", "EXCEPT", "INTERSECT"],
    "features-adql-common-table": ["WITH"],
    "features-adql-type": ["CAST"],
    "features-adql-offset": ["OFFSET"],
    "features-adql-bitwise": ["BIT_AND", "BIT_OR", "BIT_XOR", "BIT_NOT"],
}
_FORMAT_IDS = {
    "votable": f"{_TR}output-votable-binary2",
    "votable/td": f"{_TR}output-votable-td",
}


def _language() -> str:
    features = "".join(
        f'      <languageFeatures type="{_TR}{kind}">\n'
        + "".join(f"        <feature><form>{form}</form></feature>\n" for form in forms)
        + "      </languageFeatures>\n"
        for kind, forms in _FEATURES.items()
    )
    return (
        "    <language>\n"
        "      <name>ADQL</name>\n"
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>\n'
        '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n'
        "      <description>ADQL 2.1, translated to the catalog database's SQL</description>\n"
        f"{features}    </language>\n"
    )


def _output_formats() -> str:
    parts = []
    for fmt in FORMATS:
        ivo_id = _FORMAT_IDS.get(fmt.name)
        attr = f" ivo-id={quoteattr(ivo_id)}" if ivo_id else ""
        parts.append(
            f"    <outputFormat{attr}>\n      <mime>{escape(fmt.media_type)}</mime>\n"
            f"      <alias>{escape(fmt.name)}</alias>\n    </outputFormat>\n"
        )
    return "".join(parts)


#: Data models a table realises (TAPRegExt ``dataModel``): qualified table -> (ivo-id, name).
_DATA_MODELS = {
    "ivoa.obscore": ("ivo://ivoa.net/std/ObsCore#core-1.1", "ObsCore-1.1"),
}


def data_models(schema: TapSchema | None) -> list[tuple[str, str]]:
    """The (ivo-id, name) of each data model whose table the catalog publishes."""
    if schema is None:
        return []
    return [model for table, model in _DATA_MODELS.items() if schema.table(table) is not None]


def capabilities_document(
    base_url: str,
    settings: Settings,
    retention: int,
    *,
    models: list[tuple[str, str]] = (),
) -> str:
    config = settings.catalog
    declared = "".join(
        f"    <dataModel ivo-id={quoteattr(ivo_id)}>{escape(name)}</dataModel>\n"
        for ivo_id, name in models
    )
    tap_extra = (
        f"{declared}{_language()}{_output_formats()}"
        f'    <uploadMethod ivo-id="{_TR}upload-inline"/>\n'
        f'    <uploadMethod ivo-id="{_TR}upload-http"/>\n'
        f"    <retentionPeriod><default>{retention}</default><hard>{retention}</hard>"
        "</retentionPeriod>\n"
        f"    <executionDuration><default>{config.query_timeout}</default>"
        f"<hard>{config.query_timeout}</hard></executionDuration>\n"
        f'    <outputLimit><default unit="row">{config.default_maxrec}</default>'
        f'<hard unit="row">{config.max_rows}</hard></outputLimit>\n'
        f'    <uploadLimit><hard unit="byte">{MAX_UPLOAD_BYTES}</hard></uploadLimit>\n'
    )
    return capabilities_xml(
        [
            Capability(
                "ivo://ivoa.net/std/TAP",
                base_url,
                use="base",
                xsi_type="tr:TableAccess",
                role="std",
                version="1.1",
                extra=tap_extra,
            ),
            Capability(CAPABILITIES_ID, f"{base_url}/capabilities"),
            Capability(AVAILABILITY_ID, f"{base_url}/availability"),
            Capability(TABLES_ID, f"{base_url}/tables"),
            Capability(EXAMPLES_ID, f"{base_url}/examples"),
        ]
    )


def _opt(tag: str, value: str | None, indent: str) -> str:
    return f"{indent}<{tag}>{escape(value)}</{tag}>\n" if value else ""


def _column_xml(column: ColumnMeta, indent: str) -> str:
    attrs = ' xsi:type="vs:VOTableType"'
    if column.arraysize:
        attrs += f" arraysize={quoteattr(column.arraysize)}"
    if column.xtype:
        attrs += f" extendedType={quoteattr(column.xtype)}"
    flags = ""
    if column.indexed:
        flags += f"{indent}  <flag>indexed</flag>\n"
    if column.principal:
        flags += f"{indent}  <flag>principal</flag>\n"
    if column.std:
        flags += f"{indent}  <flag>std</flag>\n"
    inner = indent + "  "
    return (
        f"{indent}<column>\n"
        f"{inner}<name>{escape(column.name)}</name>\n"
        f"{_opt('description', column.description, inner)}"
        f"{_opt('unit', column.unit, inner)}{_opt('ucd', column.ucd, inner)}"
        f"{_opt('utype', column.utype, inner)}"
        f"{inner}<dataType{attrs}>{escape(column.datatype)}</dataType>\n"
        f"{flags}{indent}</column>\n"
    )


def table_xml(
    table: TableMeta, *, root: bool = False, columns: bool = True, indent: str = "    "
) -> str:
    inner = indent + "  "
    body = "".join(_column_xml(c, inner) for c in table.columns) if columns else ""
    for key in table.foreign_keys if columns else ():
        pairs = "".join(
            f"{inner}  <fkColumn><fromColumn>{escape(a)}</fromColumn>"
            f"<targetColumn>{escape(b)}</targetColumn></fkColumn>\n"
            for a, b in key.columns
        )
        body += (
            f"{inner}<foreignKey>\n{inner}  <targetTable>{escape(key.target_table)}</targetTable>\n"
            f"{pairs}{_opt('description', key.description, inner + '  ')}{inner}</foreignKey>\n"
        )
    if root:
        head = (
            '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f"type={quoteattr(table.table_type)}>\n"
        )
        tail = "</vosi:table>\n"
    else:
        head = f"{indent}<table type={quoteattr(table.table_type)}>\n"
        tail = f"{indent}</table>\n"
    return (
        f"{head}{inner}<name>{escape(table.qualified)}</name>\n"
        f"{_opt('description', table.description, inner)}{_opt('utype', table.utype, inner)}"
        f"{body}{tail}"
    )


def tables_document(schema: TapSchema, *, columns: bool = True) -> str:
    names = [s.name for s in schema.schemas]
    for table in schema.tables.values():
        if table.schema_name.lower() not in {n.lower() for n in names}:
            names.append(table.schema_name)
    descriptions = {s.name.lower(): s for s in schema.schemas}
    parts = []
    for name in names:
        tables = schema.tables_in(name)
        if not tables:
            continue
        meta = descriptions.get(name.lower())
        body = "".join(table_xml(t, columns=columns) for t in tables)
        description = _opt("description", meta.description if meta else None, "    ")
        parts.append(
            f"  <schema>\n    <name>{escape(name)}</name>\n{description}{body}  </schema>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{''.join(parts)}</vosi:tableset>\n"
    )


def _position_columns(table: TableMeta) -> tuple[str, str] | None:
    ra = next((c.name for c in table.columns if (c.ucd or "").startswith("pos.eq.ra")), None)
    dec = next((c.name for c in table.columns if (c.ucd or "").startswith("pos.eq.dec")), None)
    return (ra, dec) if ra and dec else None


def examples(schema: TapSchema) -> list[tuple[str, str, str, str]]:
    """(id, name, description, query) examples built from the published tables."""
    found: list[tuple[str, str, str, str]] = []
    data = [t for t in schema.tables.values() if t.schema_name.upper() != "TAP_SCHEMA"]
    for table in data:
        position = _position_columns(table)
        if position and not any(e[0] == "cone" for e in found):
            ra, dec = position
            found.append(
                (
                    "cone",
                    f"Cone search on {table.qualified}",
                    "Rows within 1 degree of a position, nearest first.",
                    f"SELECT TOP 100 *, DISTANCE(POINT('ICRS', {ra}, {dec}), POINT('ICRS', 10, 10))"
                    f" AS dist FROM {table.qualified}\nWHERE CONTAINS(POINT('ICRS', {ra}, {dec}), "
                    "CIRCLE('ICRS', 10, 10, 1)) = 1\nORDER BY dist",
                )
            )
    for table in data:
        for key in table.foreign_keys:
            if key.columns and not any(e[0] == "join" for e in found):
                a, b = key.columns[0]
                found.append(
                    (
                        "join",
                        f"Join {table.qualified} to {key.target_table}",
                        "Follow a foreign key declared in TAP_SCHEMA.",
                        f"SELECT TOP 10 f.*, t.* FROM {table.qualified} AS f\n"
                        f"JOIN {key.target_table} AS t ON f.{a} = t.{b}",
                    )
                )
    if data:
        table = data[0]
        found.append(
            (
                "count",
                f"Count the rows of {table.qualified}",
                "An aggregate over a whole table.",
                f"SELECT COUNT(*) AS n FROM {table.qualified}",
            )
        )
    found.append(
        (
            "columns",
            "List the columns of every table",
            "Query the service's own metadata.",
            "SELECT table_name, column_name, datatype, unit, ucd FROM TAP_SCHEMA.columns\n"
            "ORDER BY table_name, column_index",
        )
    )
    return found


def examples_document(schema: TapSchema, base_url: str) -> str:
    items = "".join(
        f'  <div typeof="example" id="{ex_id}" resource="#{ex_id}">\n'
        f'    <h2 property="name">{escape(name)}</h2>\n'
        f"    <p>{escape(description)}</p>\n"
        f'    <pre property="query">{escape(query)}</pre>\n'
        "  </div>\n"
        for ex_id, name, description, query in examples(schema)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML+RDFa 1.1//EN" '
        '"http://www.w3.org/MarkUp/DTD/xhtml-rdfa-2.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">\n'
        "<head><title>TAP query examples</title></head>\n"
        '<body vocab="ivo://ivoa.net/std/DALI-examples#">\n'
        f"  <h1>Example queries for {escape(base_url)}</h1>\n{items}</body>\n</html>\n"
    )
