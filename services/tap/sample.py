"""A small synthetic catalog with a TAP_SCHEMA, for tests and ``sciplat bench tap``.

Same layout as the data preview (``catalog/catalog.duckdb`` with ``dp1`` tables and a filled
``tap_schema``), generated in SQL so 10 M rows take seconds. Rows are stored sorted by a sky
cell, as the data preview's HEALPix partitions are, so cone queries prune row groups.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

__all__ = ["SAMPLE_TABLES", "build_sample_catalog"]

# (column, duckdb type, votable datatype, arraysize, unit, ucd, description, principal, indexed)
_OBJECT = [
    ("objectId", "BIGINT", "long", None, None, "meta.id;src", "Unique object id", 1, 1),
    ("coord_ra", "DOUBLE", "double", None, "deg", "pos.eq.ra;meta.main", "Right ascension", 1, 1),
    ("coord_dec", "DOUBLE", "double", None, "deg", "pos.eq.dec;meta.main", "Declination", 1, 1),
    ("g_psfFlux", "FLOAT", "float", None, "nJy", "phot.flux;em.opt.B", "PSF flux in g", 1, 0),
    ("r_psfFlux", "FLOAT", "float", None, "nJy", "phot.flux;em.opt.R", "PSF flux in r", 1, 0),
    ("i_psfFlux", "FLOAT", "float", None, "nJy", "phot.flux;em.opt.I", "PSF flux in i", 0, 0),
    (
        "refExtendedness",
        "DOUBLE",
        "double",
        None,
        None,
        "src.class.starGalaxy",
        "0 star, 1 ext.",
        0,
        0,
    ),
    ("detect_isPrimary", "BOOLEAN", "boolean", None, None, "meta.code", "Primary detection", 0, 0),
    ("tract", "INTEGER", "int", None, None, "meta.id", "Sky tract", 0, 0),
    ("shape_flag", "SMALLINT", "short", None, None, "meta.code.qual", "Shape flag bits", 0, 0),
]
_SOURCE = [
    ("sourceId", "BIGINT", "long", None, None, "meta.id;src", "Unique source id", 1, 1),
    ("objectId", "BIGINT", "long", None, None, "meta.id.assoc", "Associated object", 1, 1),
    ("ra", "DOUBLE", "double", None, "deg", "pos.eq.ra;meta.main", "Right ascension", 1, 0),
    ("dec", "DOUBLE", "double", None, "deg", "pos.eq.dec;meta.main", "Declination", 1, 0),
    ("band", "VARCHAR", "char", "*", None, "meta.id;instr.filter", "Filter band", 1, 0),
    ("psfFlux", "DOUBLE", "double", None, "nJy", "phot.flux", "PSF flux", 1, 0),
    ("midpointMjdTai", "DOUBLE", "double", None, "d", "time.epoch", "Exposure midpoint", 1, 0),
]

SAMPLE_TABLES = {"Object": _OBJECT, "Source": _SOURCE}

_TAP_DDL = """
CREATE SCHEMA tap_schema;
CREATE TABLE tap_schema.schemas (schema_name VARCHAR, utype VARCHAR, description VARCHAR,
    schema_index INTEGER);
CREATE TABLE tap_schema.tables (schema_name VARCHAR, table_name VARCHAR, table_type VARCHAR,
    utype VARCHAR, description VARCHAR, table_index INTEGER);
CREATE TABLE tap_schema.columns (table_name VARCHAR, column_name VARCHAR, utype VARCHAR,
    ucd VARCHAR, unit VARCHAR, description VARCHAR, datatype VARCHAR, arraysize VARCHAR,
    xtype VARCHAR, "size" INTEGER, principal INTEGER, indexed INTEGER, std INTEGER,
    column_index INTEGER);
CREATE TABLE tap_schema.keys (key_id VARCHAR, from_table VARCHAR, target_table VARCHAR,
    utype VARCHAR, description VARCHAR);
CREATE TABLE tap_schema.key_columns (key_id VARCHAR, from_column VARCHAR,
    target_column VARCHAR);
"""


def _tap_schema_rows(con: duckdb.DuckDBPyConnection) -> None:
    from sciplat.services.tap.schema import TAP_SCHEMA_KEYS, TAP_SCHEMA_SELF

    con.executemany(
        "INSERT INTO tap_schema.schemas VALUES (?, NULL, ?, ?)",
        [("dp1", "Simulated data preview 1", 0), ("TAP_SCHEMA", "TAP metadata", 1)],
    )
    tables = [
        ("dp1", "dp1.Object", "table", None, "Objects (coadd detections)", 0),
        ("dp1", "dp1.Source", "table", None, "Single-visit sources", 1),
    ] + [
        ("TAP_SCHEMA", f"TAP_SCHEMA.{name}", "table", None, f"TAP_SCHEMA {name} table", 10 + i)
        for i, name in enumerate(TAP_SCHEMA_SELF)
    ]
    con.executemany("INSERT INTO tap_schema.tables VALUES (?, ?, ?, ?, ?, ?)", tables)
    rows = []
    for table, columns in SAMPLE_TABLES.items():
        for index, (name, _, datatype, arraysize, unit, ucd, desc, principal, indexed) in enumerate(
            columns
        ):
            rows.append(
                (
                    f"dp1.{table}",
                    name,
                    None,
                    ucd,
                    unit,
                    desc,
                    datatype,
                    arraysize,
                    None,
                    None,
                    principal,
                    indexed,
                    0,
                    index,
                )
            )
    for table, columns in TAP_SCHEMA_SELF.items():
        for c in columns:
            rows.append(
                (
                    f"TAP_SCHEMA.{table}",
                    c.name,
                    None,
                    None,
                    None,
                    c.description,
                    c.datatype,
                    c.arraysize,
                    None,
                    None,
                    1,
                    0,
                    1,
                    c.column_index,
                )
            )
    con.executemany(
        "INSERT INTO tap_schema.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
    )
    keys = [("source_object", "dp1.Source", "dp1.Object", "objectId", "objectId"), *TAP_SCHEMA_KEYS]
    con.executemany(
        "INSERT INTO tap_schema.keys VALUES (?, ?, ?, NULL, NULL)", [k[:3] for k in keys]
    )
    con.executemany(
        "INSERT INTO tap_schema.key_columns VALUES (?, ?, ?)", [(k[0], k[3], k[4]) for k in keys]
    )


def build_sample_catalog(
    root: Path, *, objects: int = 2000, sources_per_object: int = 3, seed: float = 0.42
) -> Path:
    """Write ``root/catalog/catalog.duckdb``; returns its path. Objects cover the whole sky."""
    path = Path(root) / "catalog" / "catalog.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    con = duckdb.connect(str(path))
    try:
        con.execute(f"SELECT setseed({seed})")
        con.execute("CREATE SCHEMA dp1")
        con.execute(
            f"""
            CREATE TABLE dp1."Object" AS
            WITH raw AS (
                SELECT range + 1 AS objectId, random() * 360 AS ra,
                       degrees(asin(2 * random() - 1)) AS dec, random() AS u, random() AS v
                FROM range({int(objects)})
            )
            SELECT objectId, ra AS coord_ra, dec AS coord_dec,
                   CASE WHEN objectId % 17 = 0 THEN NULL ELSE (u * 5000)::FLOAT END AS g_psfFlux,
                   (v * 8000)::FLOAT AS r_psfFlux, ((u + v) * 3000)::FLOAT AS i_psfFlux,
                   CASE WHEN objectId % 11 = 0 THEN NULL ELSE round(u) END AS refExtendedness,
                   objectId % 5 <> 0 AS detect_isPrimary,
                   (floor(ra / 10) * 100 + floor(dec / 10))::INTEGER AS tract,
                   (objectId % 4)::SMALLINT AS shape_flag
            FROM raw ORDER BY floor(dec), floor(ra)
            """
        )
        con.execute(
            f"""
            CREATE TABLE dp1."Source" AS
            SELECT o.objectId * 10 + k AS sourceId, o.objectId,
                   o.coord_ra + (random() - 0.5) * 1e-4 AS ra,
                   o.coord_dec + (random() - 0.5) * 1e-4 AS dec,
                   ['u', 'g', 'r', 'i', 'z', 'y'][1 + (k % 6)::INTEGER] AS band,
                   (random() * 1000)::DOUBLE AS psfFlux, 60000 + random() * 400 AS midpointMjdTai
            FROM dp1."Object" o, range({int(sources_per_object)}) t(k)
            ORDER BY floor(o.coord_dec), floor(o.coord_ra)
            """
        )
        con.execute(_TAP_DDL)
        _tap_schema_rows(con)
    finally:
        con.close()
    return path
