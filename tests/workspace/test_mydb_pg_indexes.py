"""MyDB on PostgreSQL: a user table is indexed for cone searches (q3c) and joins (B-tree on its
integer ``...id`` columns) in the write's own transaction, and a cone search uses the index."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
import pyvo
from astropy.table import Table
from mydb_support import Platform, drop_all

pytestmark = pytest.mark.integration


def test_user_table_indexed_for_cones_and_joins(postgres_platform: Platform):
    from sciplat.mydb import _parquet_bytes

    platform = postgres_platform
    n = 2000
    table = Table()
    table["objectId"] = np.arange(1, n + 1, dtype=np.int64)
    table["coord_ra"] = np.linspace(10.0, 11.0, n)
    table["coord_dec"] = np.linspace(-5.0, -4.0, n)
    table["label"] = [f"s{i}" for i in range(n)]
    try:
        with platform.client("alice") as client:
            r = client.put(f"{platform.mydb}/tables/cat", content=_parquet_bytes(table))
        assert r.status_code == 201, r.text
        with psycopg.connect(platform.admin_url) as con:
            indexes = [
                d
                for (d,) in con.execute(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'user_alice' "
                    "AND tablename = 'cat'"
                )
            ]
            plan = "\n".join(
                row
                for (row,) in con.execute(
                    "EXPLAIN SELECT objectid FROM user_alice.cat "
                    "WHERE q3c_radial_query(coord_ra, coord_dec, 10.5, -4.5, 0.01)"
                )
            )
        assert any("q3c_ang2ipix(coord_ra, coord_dec)" in d for d in indexes), indexes
        assert any("(objectid)" in d for d in indexes), indexes
        assert len(indexes) == 2
        assert "Index" in plan, plan  # the cone search reads the q3c index
        # the stored size counts the indexes
        with platform.client("alice") as client:
            described = client.get(f"{platform.mydb}/tables/cat").json()
        with psycopg.connect(platform.admin_url) as con:
            (total,) = con.execute(
                "SELECT pg_total_relation_size('user_alice.cat'::regclass)"
            ).fetchone()
        assert described["bytes"] == total
        # and the ADQL cone search through TAP finds the rows
        tap = pyvo.dal.TAPService(platform.tap, session=platform.session("alice"))
        found = tap.search(
            "SELECT COUNT(*) AS n FROM user_alice.cat WHERE 1 = CONTAINS("
            "POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 10.5, -4.5, 0.01))"
        ).to_table()
        inside = np.hypot(
            (table["coord_ra"] - 10.5) * np.cos(np.radians(-4.5)), table["coord_dec"] + 4.5
        )
        assert int(found["n"][0]) == int((inside <= 0.01).sum()) > 0
    finally:
        drop_all(platform, "alice")
