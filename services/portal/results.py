"""Per-user result cache: each result (a TAP job's result or an uploaded table) is kept once as
Parquet and paged, sorted, filtered and summarised server-side with DuckDB. The browser only
ever receives one page, one column's statistics, or a plot image.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.portal.plots import sql_expression

__all__ = ["Filter", "ResultCache", "ResultInfo", "to_parquet"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPS = {"=", "!=", "<", "<=", ">", ">=", "like", "between", "is null", "is not null"}
MAX_PAGE = 1000


@dataclass
class ResultInfo:
    id: str
    title: str
    rows: int
    columns: list[dict[str, Any]]
    source: str  # "tap" | "upload"
    job_id: str | None = None
    query: str | None = None
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Filter:
        op = str(spec.get("op", "=")).lower()
        if op not in _OPS:
            raise UsageError(f"Unknown filter operator {op!r}; use one of {sorted(_OPS)}")
        return cls(str(spec.get("column", "")), op, spec.get("value"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def to_parquet(source: Path, target: Path) -> None:
    """Convert any table astropy reads (VOTable, FITS, CSV, ECSV, Parquet) to Parquet."""
    if source.read_bytes()[:4] == b"PAR1":
        source.replace(target)
        return
    from astropy.table import Table

    try:
        table = Table.read(source)
    except Exception:
        try:
            table = Table.read(source, format="ascii")
        except Exception as exc:
            raise UsageError(f"Could not read the file as a table: {exc}") from exc
    columns = {}
    for name in table.colnames:
        col = table[name]
        if col.ndim > 1:
            continue
        data = col.filled() if hasattr(col, "filled") else col
        columns[name] = pa.array(data.tolist() if data.dtype.kind in "OUS" else data)
    pq.write_table(pa.table(columns), target)


class ResultCache:
    """Results of one portal process, per user, on disk under *root* (``<user>/<id>.parquet``
    plus ``<id>.json``). A few recently used results also live in an in-memory DuckDB table,
    which keeps sorting a million rows well under 200 ms."""

    def __init__(self, root: Path, *, hot: int = 3) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET threads TO 2")
        self._lock = threading.Lock()
        self._hot: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._hot_max = hot

    # storage -------------------------------------------------------------------------------------
    def _dir(self, user: str) -> Path:
        path = self.root / user
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_id(self) -> str:
        return uuid.uuid4().hex[:16]

    def path(self, user: str, result_id: str) -> Path:
        if not _ID.match(result_id):
            raise NotFoundError(f"No result {result_id!r}")
        path = self._dir(user) / f"{result_id}.parquet"
        if not path.exists():
            raise NotFoundError(f"No result {result_id!r}")
        return path

    def add(
        self,
        user: str,
        parquet: Path,
        *,
        title: str,
        source: str,
        result_id: str | None = None,
        job_id: str | None = None,
        query: str | None = None,
    ) -> ResultInfo:
        """Take ownership of the Parquet file *parquet* as a new result of *user*."""
        result_id = result_id or self.new_id()
        target = self._dir(user) / f"{result_id}.parquet"
        parquet.replace(target)
        rows, columns = _describe(target)
        info = ResultInfo(result_id, title, rows, columns, source, job_id, query)
        (self._dir(user) / f"{result_id}.json").write_text(json.dumps(asdict(info)))
        return info

    def info(self, user: str, result_id: str) -> ResultInfo:
        self.path(user, result_id)
        meta = json.loads((self._dir(user) / f"{result_id}.json").read_text())
        return ResultInfo(**meta)

    def list(self, user: str) -> list[ResultInfo]:
        infos = []
        for path in self._dir(user).glob("*.json"):
            try:
                infos.append(ResultInfo(**json.loads(path.read_text())))
            except (ValueError, TypeError):
                continue
        return sorted(infos, key=lambda i: i.created, reverse=True)

    def find_job(self, user: str, job_id: str) -> ResultInfo | None:
        return next((i for i in self.list(user) if i.job_id == job_id), None)

    # queries -------------------------------------------------------------------------------------
    def _relation(self, user: str, result_id: str) -> str:
        """SQL naming the result: a hot in-memory table, loaded on first use."""
        key = (user, result_id)
        if key in self._hot:
            self._hot.move_to_end(key)
            return self._hot[key]
        path = self.path(user, result_id)
        name = f"r_{abs(hash(key)):x}"
        self._db.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet(?)", [str(path)]
        )
        self._hot[key] = name
        while len(self._hot) > self._hot_max:
            _, old = self._hot.popitem(last=False)
            self._db.execute(f"DROP TABLE IF EXISTS {old}")
        return name

    def _where(self, info: ResultInfo, filters: list[Filter]) -> tuple[str, list[Any]]:
        names = {c["name"] for c in info.columns}
        clauses, args = [], []
        for f in filters:
            # a column, or an axis expression of columns (``g_psfMag - r_psfMag``)
            col = _quote(f.column) if f.column in names else sql_expression(f.column, names)
            if f.op in ("is null", "is not null"):
                clauses.append(f"{col} {f.op.upper()}")
            elif f.op == "between":
                if not isinstance(f.value, list | tuple) or len(f.value) != 2:
                    raise UsageError("between needs a value [low, high]")
                clauses.append(f"{col} BETWEEN ? AND ?")
                args.extend(f.value)
            elif f.op == "like":
                clauses.append(f"CAST({col} AS VARCHAR) ILIKE ?")
                args.append(str(f.value))
            else:
                clauses.append(f"{col} {f.op} ?")
                args.append(f.value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def page(
        self,
        user: str,
        result_id: str,
        *,
        offset: int = 0,
        limit: int = 100,
        sort: str | None = None,
        descending: bool = False,
        filters: list[Filter] = (),
    ) -> dict[str, Any]:
        """One page of rows (as lists), the filtered row count and the columns."""
        if not 0 < limit <= MAX_PAGE:
            raise UsageError(f"limit must be from 1 to {MAX_PAGE}")
        if offset < 0:
            raise UsageError("offset must not be negative")
        info = self.info(user, result_id)
        where, args = self._where(info, list(filters))
        order = ""
        if sort:
            if sort not in {c["name"] for c in info.columns}:
                raise UsageError(f"No column {sort!r} to sort on")
            order = f" ORDER BY {_quote(sort)} {'DESC' if descending else 'ASC'} NULLS LAST"
        with self._lock:
            if not sort and not filters and (user, result_id) not in self._hot:
                # Browsing in file order needs no load: read the page's row groups only.
                table = self._arrow(
                    f"SELECT * FROM read_parquet(?) LIMIT {limit} OFFSET {offset}",
                    [str(self.path(user, result_id))],
                )
                return self._page_dict(result_id, offset, info.rows, info, table)
            rel = self._relation(user, result_id)
            try:
                count = self._db.execute(f"SELECT count(*) FROM {rel}{where}", args)
                total = count.fetchall()[0][0]
                table = self._arrow(
                    f"SELECT * FROM {rel}{where}{order} LIMIT {limit} OFFSET {offset}", args
                )
            except duckdb.Error as exc:
                raise UsageError(f"Bad filter: {str(exc).splitlines()[0]}") from exc
        return self._page_dict(result_id, offset, total, info, table)

    def _arrow(self, sql: str, args: list[Any]) -> pa.Table:
        """Run *sql* (with parameters) straight to Arrow (caller holds the lock)."""
        return self._db.sql(sql, params=args or None).to_arrow_table()

    @staticmethod
    def _page_dict(
        result_id: str, offset: int, total: int, info: ResultInfo, table: pa.Table
    ) -> dict[str, Any]:
        rows = [list(r.values()) for r in table.to_pylist()]
        return {
            "id": result_id,
            "offset": offset,
            "total": total,
            "rows_in_result": info.rows,
            "columns": info.columns,
            "rows": [[_jsonable(v) for v in row] for row in rows],
        }

    def stats(self, user: str, result_id: str, column: str, filters: list[Filter] = ()) -> dict:
        info = self.info(user, result_id)
        meta = next((c for c in info.columns if c["name"] == column), None)
        if meta is None:
            raise UsageError(f"No column {column!r} in this result")
        where, args = self._where(info, list(filters))
        col = _quote(column)
        numeric = _is_numeric(meta["type"])
        aggregates = "count(*), count(" + col + "), approx_count_distinct(" + col + ")"
        if numeric:
            aggregates += f", min({col}), max({col}), avg({col}), stddev_samp({col}), "
            aggregates += f"quantile_cont({col}, [0.25, 0.5, 0.75])"
        with self._lock:
            rel = self._relation(user, result_id)
            row = self._db.execute(f"SELECT {aggregates} FROM {rel}{where}", args).fetchall()[0]
        out: dict[str, Any] = {
            "column": column,
            "rows": row[0],
            "non_null": row[1],
            "nulls": row[0] - row[1],
            "distinct_approx": row[2],
        }
        if numeric:
            q = row[7] or [None, None, None]
            out.update(min=row[3], max=row[4], mean=row[5], stddev=row[6])
            out.update(q25=q[0], median=q[1], q75=q[2])
        return {k: _jsonable(v) for k, v in out.items()}

    def columns(
        self,
        user: str,
        result_id: str,
        names: list[str],
        filters: list[Filter] = (),
        *,
        limit: int | None = None,
    ) -> pa.Table:
        """Whole columns (filtered) as Arrow, for plots and overlays."""
        info = self.info(user, result_id)
        known = {c["name"] for c in info.columns}
        for name in names:
            if name not in known:
                raise UsageError(f"No column {name!r} in this result")
        where, args = self._where(info, list(filters))
        cols = ", ".join(_quote(n) for n in names)
        lim = f" LIMIT {int(limit)}" if limit else ""
        with self._lock:
            rel = self._relation(user, result_id)
            return self._arrow(f"SELECT {cols} FROM {rel}{where}{lim}", args)

    def export(self, user: str, result_id: str, fmt: str, target: Path) -> None:
        """Write the whole result as ``parquet``, ``csv`` or ``votable`` to *target*."""
        path = self.path(user, result_id)
        if fmt == "parquet":
            target.write_bytes(path.read_bytes())
        elif fmt == "csv":
            with self._lock:
                self._db.execute(
                    f"COPY (SELECT * FROM read_parquet(?)) TO '{_sql_str(str(target))}' "
                    "(HEADER, DELIMITER ',')",
                    [str(path)],
                )
        elif fmt == "votable":
            from astropy.table import Table

            table = Table.read(path, format="parquet")
            table.write(target, format="votable", overwrite=True)
        else:
            raise UsageError(f"Unknown download format {fmt!r}; use votable, csv or parquet")

    def drop_user_cache(self) -> None:
        with self._lock:
            for name in self._hot.values():
                self._db.execute(f"DROP TABLE IF EXISTS {name}")
            self._hot.clear()

    def close(self) -> None:
        self._db.close()


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _is_numeric(type_name: str) -> bool:
    return any(t in type_name for t in ("int", "float", "double", "decimal"))


def _describe(path: Path) -> tuple[int, list[dict[str, Any]]]:
    """The row count and the columns (name, type, unit, UCD, description) of a Parquet file."""
    meta = pq.read_metadata(path)
    fields = meta.schema.to_arrow_schema()
    return meta.num_rows, [{"name": f.name, "type": str(f.type), **_field_meta(f)} for f in fields]


def _field_meta(f: pa.Field) -> dict[str, Any]:
    meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
    return {k: meta[k] for k in ("unit", "ucd", "description") if k in meta}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
