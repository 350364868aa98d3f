"""Parquet (HATS layout) and the embedded DuckDB catalog database with its TAP_SCHEMA.

Parquet is the source of truth: every table is written under ``catalog/parquet/<schema>/<Table>/``
and the DuckDB database ``catalog/catalog.duckdb`` is loaded from those files.

- **Spatial tables** (Object, Source, ForcedSource, DiaObject, DiaSource, truth.TruthSummary)
  use the HATS layout (LSDB's): ``dataset/Norder=k/Dir=d/Npix=n.parquet`` partitions at one
  HEALPix order chosen so no partition exceeds :data:`MAX_PARTITION_ROWS`, plus ``properties``,
  ``partition_info.csv``, ``dataset/_common_metadata`` and ``dataset/_metadata``. Rows carry
  HATS' spatial index ``_healpix_29`` (nested HEALPix index at order 29 of the row's position)
  and are sorted by it, in Parquet and in DuckDB, so range predicates on it prune row groups.
  A cone at order *k* pixel *p* is ``_healpix_29 BETWEEN p << 2(29-k) AND ((p+1) << 2(29-k)) - 1``.
- **Other tables** (Visit, CcdVisit, truth tables without positions, ivoa.ObsCore):
  ``<Table>.parquet``.
- **TAP_SCHEMA** (schema ``tap_schema``) is filled by felis' own loader (``DataLoader`` and
  ``MetadataInserter``) from our felis schemas, run against a scratch SQLite database and copied
  into DuckDB, so it describes the dp1, truth and ivoa schemas and TAP_SCHEMA itself.
  ``_healpix_29`` is an internal index column and is not listed there.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy_healpix import HEALPix

from sciplat.pipelines.schema import (
    DP_SCHEMA_PATH,
    OBSCORE_SCHEMA_PATH,
    TRUTH_SCHEMA_PATH,
    load_felis,
    table_columns,
)

__all__ = [
    "HEALPIX_COLUMN",
    "MAX_PARTITION_ROWS",
    "TABLES",
    "TableSpec",
    "arrow_table",
    "build_database",
    "healpix29",
    "write_hats",
    "write_plain",
]

HEALPIX_COLUMN = "_healpix_29"
MAX_PARTITION_ROWS = 1_000_000
_HP29 = HEALPix(nside=2**29, order="nested")

_ARROW = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "string": pa.string(),
    "unicode": pa.string(),
    "text": pa.string(),
    "timestamp": pa.timestamp("us"),
    "binary": pa.binary(),
}


@dataclass(frozen=True)
class TableSpec:
    """Where a table's definition lives and how it is laid out."""

    schema: str  # DuckDB / TAP schema name
    name: str
    felis: Path
    sort: tuple[str, ...]  # primary sort (after _healpix_29 for spatial tables)
    ra: str | None = None  # position columns: present -> HATS layout
    dec: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def spatial(self) -> bool:
        return self.ra is not None


TABLES: dict[str, TableSpec] = {
    t.qualified: t
    for t in [
        TableSpec("dp1", "Object", DP_SCHEMA_PATH, ("objectId",), "coord_ra", "coord_dec"),
        TableSpec("dp1", "Source", DP_SCHEMA_PATH, ("sourceId",), "coord_ra", "coord_dec"),
        TableSpec(
            "dp1", "ForcedSource", DP_SCHEMA_PATH, ("objectId", "visit"), "coord_ra", "coord_dec"
        ),
        TableSpec("dp1", "DiaObject", DP_SCHEMA_PATH, ("diaObjectId",), "ra", "dec"),
        TableSpec("dp1", "DiaSource", DP_SCHEMA_PATH, ("diaSourceId",), "ra", "dec"),
        TableSpec("dp1", "Visit", DP_SCHEMA_PATH, ("visit",)),
        TableSpec("dp1", "CcdVisit", DP_SCHEMA_PATH, ("ccdVisitId",)),
        TableSpec("truth", "TruthSummary", TRUTH_SCHEMA_PATH, ("id",), "ra", "dec"),
        TableSpec("truth", "Galaxy", TRUTH_SCHEMA_PATH, ("id",)),
        TableSpec("truth", "Star", TRUTH_SCHEMA_PATH, ("id",)),
        TableSpec("truth", "Transient", TRUTH_SCHEMA_PATH, ("id",)),
        TableSpec("truth", "Mover", TRUTH_SCHEMA_PATH, ("id",)),
        TableSpec("truth", "MatchesTruth", TRUTH_SCHEMA_PATH, ("id", "match_objectId")),
        TableSpec("ivoa", "ObsCore", OBSCORE_SCHEMA_PATH, ("obs_publisher_did",)),
    ]
}


def healpix29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at order 29 (HATS' ``_healpix_29``)."""
    if len(ra) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(
        _HP29.lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg), dtype=np.int64
    )


def arrow_schema(spec: TableSpec) -> pa.Schema:
    fields = [
        pa.field(c.name, _ARROW[c.datatype.value], nullable=c.nullable is not False)
        for c in table_columns(spec.felis, spec.name)
    ]
    if spec.spatial:
        fields.insert(0, pa.field(HEALPIX_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields)


def arrow_table(spec: TableSpec, columns: dict[str, np.ndarray]) -> pa.Table:
    """Columns -> Arrow table with exactly the felis columns, types and order (NaN -> NULL)."""
    schema = arrow_schema(spec)
    if not columns:
        return schema.empty_table()
    names = [f.name for f in schema if f.name != HEALPIX_COLUMN]
    missing = [n for n in names if n not in columns]
    extra = [n for n in columns if n not in names]
    if missing or extra:
        raise ValueError(f"{spec.qualified}: missing columns {missing}, unexpected {extra}")
    arrays = []
    for f in schema:
        if f.name == HEALPIX_COLUMN:
            values = healpix29(columns[spec.ra], columns[spec.dec])
        else:
            values = columns[f.name]
        if isinstance(values, list):
            arrays.append(pa.array(values, type=f.type))
        elif pa.types.is_string(f.type):
            values = np.asarray(values)
            if values.dtype.kind != "U":
                values = values.astype(object).astype(str)
            arrays.append(pa.array(values, type=f.type))
        elif pa.types.is_timestamp(f.type):
            arrays.append(pa.array(np.asarray(values, dtype="datetime64[us]"), type=f.type))
        else:
            # NaN (no measurement) becomes NULL, so SQL aggregates skip it as users expect.
            arrays.append(pa.array(np.asarray(values), type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _connect(path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '6GB'")
    con.execute("SET enable_progress_bar = false")
    return con


def _order_by(spec: TableSpec) -> str:
    keys = ([HEALPIX_COLUMN] if spec.spatial else []) + list(spec.sort)
    return ", ".join(f'"{k}"' for k in keys)


def _choose_order(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """Lowest HEALPix order (<= 11) whose fullest pixel holds at most MAX_PARTITION_ROWS."""
    for order in range(0, 12):
        shift = 2 * (29 - order)
        biggest = con.execute(
            f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {relation} "
            f"GROUP BY {HEALPIX_COLUMN} >> {shift})"
        ).fetchone()[0]
        if biggest <= MAX_PARTITION_ROWS:
            return order
    return 11


def write_hats(spec: TableSpec, out_dir: Path, sources: Sequence[Path] | pa.Table) -> int:
    """Write a spatial table in the HATS layout; returns the row count.

    *sources* is an Arrow table or Parquet files with the table's Arrow schema. The directory
    is built beside *out_dir* and renamed into place, so it is complete or absent.
    """
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "dataset").mkdir(parents=True)
    con = _connect()
    if isinstance(sources, pa.Table):
        con.register("src_arrow", sources)
        con.execute(f"CREATE TEMP VIEW src AS SELECT * FROM src_arrow ORDER BY {_order_by(spec)}")
    else:
        # Not materialised: each partition below reads only its rows (the chunk files are
        # sorted by _healpix_29, so row-group statistics prune the rest).
        files = ", ".join(f"'{p}'" for p in sources)
        con.execute(f"CREATE TEMP VIEW src AS SELECT * FROM read_parquet([{files}])")
    total = con.execute("SELECT count(*) FROM src").fetchone()[0]
    order = _choose_order(con, "src")
    shift = 2 * (29 - order)
    pixels = [
        (int(p), int(n))
        for p, n in con.execute(
            f"SELECT {HEALPIX_COLUMN} >> {shift} AS p, count(*) FROM src GROUP BY p ORDER BY p"
        ).fetchall()
    ]
    metadata_rows = []
    for pixel, _count in pixels:
        directory = tmp / "dataset" / f"Norder={order}" / f"Dir={(pixel // 10_000) * 10_000}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"Npix={pixel}.parquet"
        lo, hi = pixel << shift, ((pixel + 1) << shift) - 1
        con.execute(
            f"COPY (SELECT * FROM src WHERE {HEALPIX_COLUMN} BETWEEN {lo} AND {hi} "
            f"ORDER BY {_order_by(spec)}) TO '{path}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
        )
        meta = pq.read_metadata(path)
        meta.set_file_path(str(path.relative_to(tmp / "dataset")))
        metadata_rows.append(meta)
    con.close()
    schema = arrow_schema(spec)
    pq.write_metadata(schema, tmp / "dataset" / "_common_metadata")
    if metadata_rows:
        first = metadata_rows[0]
        for meta in metadata_rows[1:]:
            first.append_row_groups(meta)
        first.write_metadata_file(str(tmp / "dataset" / "_metadata"))
    else:
        pq.write_metadata(schema, tmp / "dataset" / "_metadata")
    with open(tmp / "partition_info.csv", "w") as fh:
        fh.write("Norder,Npix\n")
        for pixel, _ in pixels:
            fh.write(f"{order},{pixel}\n")
    _write_properties(tmp / "properties", spec, total, order, len(pixels))
    _replace_dir(tmp, out_dir)
    return total


def _write_properties(path: Path, spec: TableSpec, rows: int, order: int, n_pix: int) -> None:
    sky_fraction = n_pix / (12 * 4**order)
    props = {
        "obs_collection": spec.name,
        "dataproduct_type": "object" if spec.name != "ForcedSource" else "source",
        "hats_nrows": rows,
        "hats_col_ra": spec.ra,
        "hats_col_dec": spec.dec,
        "hats_npix_suffix": ".parquet",
        "hats_max_rows": MAX_PARTITION_ROWS,
        "hats_order": order,
        "moc_sky_fraction": f"{sky_fraction:.6f}",
        "hats_builder": "sciplat data build",
        "hats_version": "v0.1",
        "obs_regime": "Optical",
        "obs_title": f"sciplat data preview {spec.qualified}",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def write_plain(spec: TableSpec, out_dir: Path, table: pa.Table) -> int:
    """A non-spatial table as one sorted Parquet file ``<out_dir>/<Table>.parquet``."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sort = [(k, "ascending") for k in spec.sort]
    if table.num_rows:
        table = table.sort_by(sort)
    pq.write_table(table, tmp / f"{spec.name}.parquet", compression="zstd")
    _replace_dir(tmp, out_dir)
    return table.num_rows


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def parquet_files(spec: TableSpec, parquet_root: Path) -> list[Path]:
    """The table's Parquet files in HEALPix order (so reading them in order is sorted)."""
    base = parquet_root / spec.schema / spec.name
    if not spec.spatial:
        return [base / f"{spec.name}.parquet"]
    parts = []
    for line in (base / "partition_info.csv").read_text().splitlines()[1:]:
        order, pixel = map(int, line.split(","))
        parts.append((pixel << 2 * (29 - order), order, pixel))
    if not parts:  # an empty table: its schema
        return [base / "dataset" / "_common_metadata"]
    return [
        base / "dataset" / f"Norder={o}" / f"Dir={(p // 10_000) * 10_000}" / f"Npix={p}.parquet"
        for _, o, p in sorted(parts)
    ]


def build_database(db_path: Path, parquet_root: Path, tables: Iterable[TableSpec]) -> None:
    """Load the Parquet tables and TAP_SCHEMA into a fresh DuckDB file, then move it in place."""
    tmp = db_path.with_name(db_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = _connect(str(tmp))
    tables = list(tables)
    for schema in sorted({t.schema for t in tables}):
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    con.execute("SET preserve_insertion_order = true")
    for spec in tables:
        # Partition files are sorted and listed in HEALPix order: the table comes out sorted
        # without a (memory-hungry) ORDER BY over tens of millions of wide rows.
        files = ", ".join(f"'{p}'" for p in parquet_files(spec, parquet_root))
        con.execute(
            f'CREATE TABLE "{spec.schema}"."{spec.name}" AS SELECT * FROM read_parquet('
            f"[{files}], hive_partitioning = false)"
        )
    _load_tap_schema(con, tables)
    con.execute("CHECKPOINT")
    con.close()
    os.replace(tmp, db_path)


def _load_tap_schema(con: duckdb.DuckDBPyConnection, tables: Sequence[TableSpec]) -> None:
    """TAP_SCHEMA 1.1 from the felis schemas via felis' own loader (scratch SQLite -> DuckDB)."""
    from felis.db.database_context import create_database_context
    from felis.tap_schema import DataLoader, MetadataInserter, TableManager

    felis_paths = []
    for spec in tables:
        if spec.felis not in felis_paths:
            felis_paths.append(spec.felis)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/tap_schema.sqlite3"
        mgr = TableManager(engine_url=url)
        ctx = create_database_context(url, mgr.metadata)
        try:
            mgr.initialize_database(ctx)
            for index, path in enumerate(felis_paths):
                schema = load_felis(path)
                DataLoader(schema, mgr, ctx, tap_schema_index=index + 1, unique_keys=True).load()
            MetadataInserter(mgr, ctx).insert_metadata()
        finally:
            ctx.close()
        con.execute("CREATE SCHEMA IF NOT EXISTS tap_schema")
        with sqlite3.connect(f"{scratch}/tap_schema.sqlite3") as lite:
            for name in TableManager.get_table_names_std():
                table = mgr[name]
                cols = [f'"{c.name}" {_duck_type(str(c.type))}' for c in table.columns]
                con.execute(f'CREATE TABLE tap_schema."{name}" ({", ".join(cols)})')
                names = [c.name for c in table.columns]
                quoted = ", ".join(f'"{n}"' for n in names)
                rows = lite.execute(f'SELECT {quoted} FROM "{table.name}"').fetchall()
                if rows:
                    marks = ", ".join("?" for _ in names)
                    con.executemany(
                        f'INSERT INTO tap_schema."{name}" ({quoted}) VALUES ({marks})', rows
                    )


def _duck_type(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith(("VARCHAR", "CHAR", "TEXT", "STRING")):
        return "VARCHAR"
    if t in ("INTEGER", "INT", "SMALLINT", "BIGINT"):
        return "INTEGER" if t != "BIGINT" else "BIGINT"
    return t


def build_time() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
