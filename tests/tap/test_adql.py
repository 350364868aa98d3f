"""The ADQL translator: accepted syntax, names checked against TAP_SCHEMA, refused input, and
geometry results checked against astropy."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import AdqlError, translate


def run(catalog, schema, adql: str, maxrec: int | None = None):
    translation = translate(adql, schema, catalog.target(), maxrec=maxrec)
    with catalog.execute(translation.sql) as result:
        rows = [row for batch in result.batches for row in batch.to_pylist()]
    return translation, rows


def objects(catalog):
    cur = catalog._cursor()
    try:
        return cur.execute(
            'SELECT objectId, coord_ra, coord_dec FROM dp1."Object" ORDER BY objectId'
        ).fetchnumpy()
    finally:
        cur.close()


@pytest.mark.parametrize(
    "adql",
    [
        "SELECT TOP 5 objectId, coord_ra FROM dp1.Object ORDER BY coord_ra DESC",
        "SELECT DISTINCT band FROM dp1.Source",
        "SELECT TOP 5 o.objectId, s.band FROM dp1.Object AS o JOIN dp1.Source AS s "
        "ON o.objectId = s.objectId",
        "SELECT TOP 5 * FROM dp1.Object NATURAL JOIN dp1.Source",
        "SELECT TOP 5 o.objectId FROM dp1.Object o LEFT OUTER JOIN dp1.Source s USING (objectId)",
        "SELECT objectId FROM dp1.Object WHERE objectId IN (SELECT objectId FROM dp1.Source "
        "WHERE band = 'g') AND objectId < 10",
        "WITH bright AS (SELECT objectId, r_psfFlux FROM dp1.Object WHERE r_psfFlux > 7000) "
        "SELECT COUNT(*) AS n FROM bright",
        "SELECT band, COUNT(*) AS n, AVG(psfFlux) AS mean FROM dp1.Source GROUP BY band "
        "HAVING COUNT(*) > 10 ORDER BY band",
        "SELECT objectId FROM dp1.Object ORDER BY objectId OFFSET 2990",
        "SELECT objectId FROM dp1.Object WHERE objectId < 5 UNION SELECT objectId FROM "
        "dp1.Source WHERE objectId < 3",
        "SELECT objectId FROM dp1.Object WHERE objectId < 5 INTERSECT SELECT objectId FROM "
        "dp1.Source",
        "SELECT objectId FROM dp1.Object WHERE objectId < 5 EXCEPT SELECT objectId FROM "
        "dp1.Object WHERE objectId = 2",
        "SELECT CAST(objectId AS VARCHAR(20)) AS s, CAST(coord_ra AS INTEGER) AS r, "
        "CAST(tract AS BIGINT) AS t, CAST(shape_flag AS REAL) AS f FROM dp1.Object "
        "WHERE objectId = 1",
        "SELECT LOWER('AbC') AS l, UPPER('x') AS u2, 'a' || 'b' AS c FROM dp1.Object "
        "WHERE objectId = 1",
        "SELECT ABS(-1) a, CEILING(1.2) c, FLOOR(1.7) f, LOG(10) l, LOG10(100) l10, "
        "EXP(0) e, POWER(2, 3) p, SQRT(4) s, PI() pi, MOD(7, 3) m, ROUND(1.26, 1) r, "
        "TRUNCATE(1.29, 1) t, DEGREES(PI()) d, RADIANS(180) rad, SIN(0) s0, COS(0) c0, "
        "TAN(0) t0, ASIN(0) as0, ACOS(1) ac1, ATAN(0) at0, ATAN2(0, 1) at2, COT(1) ct "
        "FROM dp1.Object WHERE objectId = 1",
        "SELECT objectId FROM dp1.Source WHERE band ILIKE 'G' AND objectId < 3",
        "SELECT shape_flag & 1 AS a, shape_flag | 4 AS o, shape_flag ^ 1 AS x, ~shape_flag AS n "
        "FROM dp1.Object WHERE objectId = 3",
        "SELECT COALESCE(g_psfFlux, -1) AS g, NULLIF(tract, 0) AS t FROM dp1.Object "
        "WHERE objectId = 17",
        "SELECT CASE WHEN r_psfFlux > 4000 THEN 'bright' ELSE 'faint' END AS kind "
        "FROM dp1.Object WHERE objectId = 1",
        "SELECT table_name FROM TAP_SCHEMA.tables",
        'SELECT "objectId" FROM "dp1"."Object" WHERE "objectId" = 1',
        "SELECT objectId FROM dp1.Object WHERE EXISTS (SELECT 1 FROM dp1.Source s "
        "WHERE s.objectId = dp1.Object.objectId) AND objectId < 3",
        "SELECT objectId FROM dp1.Object WHERE objectId BETWEEN 1 AND 3 AND g_psfFlux "
        "IS NOT NULL AND NOT (tract IS NULL)",
    ],
)
def test_accepted_queries_run(catalog, schema, adql: str) -> None:
    translation, rows = run(catalog, schema, adql)
    assert translation.fields
    assert all(len(row) == len(translation.fields) for row in rows)


def test_results_and_names(catalog, schema) -> None:
    translation, rows = run(
        catalog,
        schema,
        "SELECT TOP 3 objectid, coord_ra AS RA, 1 + 1 AS two, COUNT(*) FROM dp1.object "
        "GROUP BY objectid, coord_ra ORDER BY objectid",
    )
    assert [f.name for f in translation.fields] == ["objectId", "RA", "two", "count"]
    assert translation.fields[0].meta.datatype == "long"
    assert translation.fields[1].meta.unit == "deg"
    assert translation.fields[2].meta is None
    assert [r["objectId"] for r in rows] == [1, 2, 3]
    _, rows = run(
        catalog,
        schema,
        "SELECT LOG(EXP(2)) AS l, LOG10(1000) AS t FROM dp1.Object WHERE objectId = 1",
    )
    assert rows[0]["l"] == pytest.approx(2) and rows[0]["t"] == pytest.approx(3)


def test_maxrec_limit(catalog, schema) -> None:
    translation, rows = run(catalog, schema, "SELECT objectId FROM dp1.Object", 10)
    assert translation.limit == 11 and len(rows) == 11
    translation, rows = run(catalog, schema, "SELECT TOP 4 objectId FROM dp1.Object", 10)
    assert translation.limit is None and len(rows) == 4
    translation, rows = run(catalog, schema, "SELECT TOP 400 objectId FROM dp1.Object", 10)
    assert translation.limit == 11 and len(rows) == 11


@pytest.mark.parametrize(
    ("adql", "message"),
    [
        ("SELECT bogus FROM dp1.Object", "Column 'bogus' is not a column"),
        ("SELECT objectId FROM dp1.Nope", "Unknown table 'dp1.Nope'"),
        ("SELECT objectId FROM nope.Object", "Unknown table"),
        ("SELECT o.objectId FROM dp1.Object", "is not a column"),
        ("SELEC objectId FROM dp1.Object", "Syntax error"),
        ("SELECT objectId FROM", "Syntax error"),
        ("", "empty"),
        ("SELECT 1; SELECT 2", "Expected one SELECT statement, got 2"),
        ("DROP TABLE dp1.Object", "Only SELECT"),
        ("DELETE FROM dp1.Object", "Only SELECT"),
        ("INSERT INTO dp1.Object VALUES (1)", "Only SELECT"),
        ("UPDATE dp1.Object SET tract = 1", "Only SELECT"),
        ("CREATE TABLE x AS SELECT 1", "Only SELECT"),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", "Only SELECT"),
        ("ATTACH '/tmp/x.duckdb'", "Only SELECT"),
        ("PRAGMA database_list", "Only SELECT"),
        ("SET threads = 1", "Only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Table functions are not allowed"),
        ("SELECT * FROM '/etc/passwd'", "Unknown table"),
        ("SELECT read_csv('/etc/passwd') FROM dp1.Object", "READ_CSV"),
        ("SELECT pg_read_file('/etc/passwd') FROM dp1.Object", "PG_READ_FILE"),
        ("SELECT getenv('HOME') FROM dp1.Object", "GETENV"),
        ("SELECT current_setting('x') FROM dp1.Object", "forbidden function"),
        ("SELECT objectId FROM dp1.Object, LATERAL (SELECT 1) t", "Unsupported"),
        ("SELECT CAST(objectId AS BLOB) FROM dp1.Object", "CAST to"),
        ("SELECT TOP 5.5 objectId FROM dp1.Object", "TOP and OFFSET"),
        ("SELECT RAND(1) FROM dp1.Object", "RAND"),
        ("SELECT (*) FROM dp1.Object", "stands alone"),
        ("SELECT objectId + * FROM dp1.Object", "stands alone"),
        (
            "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT('GALACTIC', 1, 2), "
            "CIRCLE('ICRS', 1, 2, 3)) = 1",
            "GALACTIC",
        ),
        (
            "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
            "POLYGON(0, 0, 10, 0, 10, 10, 5, 2, 0, 10)) = 1",
            "convex",
        ),
        (
            "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
            "CIRCLE(1, 2, 3)) = 2",
            "compared with 0 or 1",
        ),
    ],
)
def test_refused_queries(tap_schema, sample_catalog, adql: str, message: str) -> None:
    with pytest.raises(AdqlError) as info:
        translate(adql, tap_schema, sample_catalog.target())
    assert message.lower() in info.value.message.lower()
    assert isinstance(info.value, UsageError) and info.value.status_code == 400


def test_error_position(tap_schema, sample_catalog) -> None:
    with pytest.raises(AdqlError) as info:
        translate("SELECT objectId,\n  bogus FROM dp1.Object", tap_schema, sample_catalog.target())
    assert info.value.line == 2 and info.value.col == 7


def test_backend_refuses_files_even_without_translator(sample_catalog) -> None:
    """Defence in depth: the DuckDB connection itself cannot touch files."""
    for sql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "ATTACH '/tmp/x.duckdb' AS x",
        "SET enable_external_access = true",
        "CREATE TABLE dp1.evil AS SELECT 1",
    ):
        with pytest.raises(UsageError):
            sample_catalog.execute(sql)


def _separation(ra, dec, ra0, dec0):
    return SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra0 * u.deg, dec0 * u.deg)).deg


@pytest.mark.parametrize(("ra0", "dec0", "radius"), [(10, 20, 8), (359, -5, 10), (120, 85, 9)])
def test_cone_matches_astropy(catalog, schema, sample_catalog, ra0, dec0, radius) -> None:
    data = objects(sample_catalog)
    sep = _separation(data["objectId"] * 0 + data["coord_ra"], data["coord_dec"], ra0, dec0)
    expected = set(data["objectId"][sep <= radius].tolist())
    _, rows = run(
        catalog,
        schema,
        "SELECT objectId, DISTANCE(POINT('ICRS', coord_ra, coord_dec), "
        f"POINT('ICRS', {ra0}, {dec0})) AS d FROM dp1.Object WHERE "
        f"CONTAINS(POINT('ICRS', coord_ra, coord_dec), "
        f"CIRCLE('ICRS', {ra0}, {dec0}, {radius})) = 1",
    )
    assert expected and {r["objectId"] for r in rows} == expected
    by_id = dict(zip(data["objectId"].tolist(), sep.tolist(), strict=True))
    assert all(abs(r["d"] - by_id[r["objectId"]]) < 1e-9 for r in rows)
    _, outside = run(
        catalog,
        schema,
        "SELECT COUNT(*) AS n FROM dp1.Object WHERE "
        f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra0}, {dec0}, {radius})) = 0",
    )
    assert outside[0]["n"] == len(data["objectId"]) - len(expected)


def test_polygon_and_box(catalog, schema, sample_catalog) -> None:
    data = objects(sample_catalog)
    ra, dec = data["coord_ra"], data["coord_dec"]
    _, rows = run(
        catalog,
        schema,
        "SELECT objectId FROM dp1.Object WHERE 1 = CONTAINS(POINT(coord_ra, coord_dec), "
        "POLYGON('ICRS', 20, -10, 60, -10, 60, 10, 20, 10))",
    )
    got = {r["objectId"] for r in rows}

    # Edges are great circles: check against the same definition computed with numpy.
    def unit(a, d):
        a, d = np.radians(a), np.radians(d)
        return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)

    corners = unit(np.array([20, 60, 60, 20]), np.array([-10, -10, 10, 10]))
    p = unit(ra, dec)
    inside = np.ones(len(ra), bool)
    for i in range(4):
        normal = np.cross(corners[i], corners[(i + 1) % 4])
        inside &= p @ normal >= 0
    assert got == set(data["objectId"][inside].tolist()) and got
    _, box = run(
        catalog,
        schema,
        "SELECT COUNT(*) AS n FROM dp1.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
        "BOX('ICRS', 40, 0, 40, 20)) = 1",
    )
    assert abs(box[0]["n"] - len(got)) <= len(got) * 0.1


def test_geometry_values(catalog, schema) -> None:
    translation, rows = run(
        catalog,
        schema,
        "SELECT POINT('ICRS', coord_ra, coord_dec) AS p, CIRCLE(coord_ra, coord_dec, 1) AS c, "
        "COORD1(POINT(coord_ra, coord_dec)) AS ra, COORD2(POINT(coord_ra, coord_dec)) AS dec, "
        "COORDSYS(POINT(coord_ra, coord_dec)) AS sys, AREA(CIRCLE(0, 0, 1)) AS a, "
        "AREA(POLYGON(0, 0, 1, 0, 1, 1, 0, 1)) AS ap, "
        "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(0, 0, 180)) AS inside "
        "FROM dp1.Object WHERE objectId = 1",
    )
    row = rows[0]
    assert [f.xtype for f in translation.fields][:2] == ["point", "circle"]
    assert row["p"] == [row["ra"], row["dec"]] and row["c"][2] == 1
    assert row["sys"] == "ICRS" and row["inside"] == 1
    assert float(row["a"]) == pytest.approx(np.pi * 1 * (1 - 1 / 12 * (np.pi / 180) ** 2), rel=1e-3)
    assert float(row["ap"]) == pytest.approx(1.0, rel=1e-3)


def test_crossmatch_join(catalog, schema) -> None:
    _, rows = run(
        catalog,
        schema,
        "SELECT COUNT(*) AS n FROM dp1.Object AS o, dp1.Source AS s WHERE "
        "CONTAINS(POINT(s.ra, s.dec), CIRCLE(o.coord_ra, o.coord_dec, 0.001)) = 1 "
        "AND o.objectId < 100",
    )
    _, direct = run(catalog, schema, "SELECT COUNT(*) AS n FROM dp1.Source WHERE objectId < 100")
    assert rows[0]["n"] >= direct[0]["n"] > 0


DIFFERENTIAL = [
    "SELECT objectId, coord_ra, coord_dec FROM dp1.Object WHERE CONTAINS(POINT('ICRS', "
    "coord_ra, coord_dec), CIRCLE('ICRS', 200, -30, 5)) = 1 ORDER BY objectId",
    "SELECT o.objectId, COUNT(*) AS n, MAX(s.psfFlux) AS peak FROM dp1.Object AS o "
    "JOIN dp1.Source AS s ON s.objectId = o.objectId WHERE o.coord_dec > 60 "
    "GROUP BY o.objectId ORDER BY o.objectId",
    "SELECT band, COUNT(*) AS n, ROUND(AVG(psfFlux), 3) AS mean FROM dp1.Source "
    "GROUP BY band ORDER BY band",
    "SELECT TOP 20 objectId, g_psfFlux FROM dp1.Object ORDER BY g_psfFlux DESC, objectId",
    "SELECT tract, COUNT(*) AS n FROM dp1.Object WHERE refExtendedness IS NULL "
    "GROUP BY tract HAVING COUNT(*) > 1 ORDER BY tract",
    "SELECT a.objectId AS a, b.objectId AS b, DISTANCE(POINT(a.coord_ra, a.coord_dec), "
    "POINT(b.coord_ra, b.coord_dec)) AS d FROM dp1.Object AS a, dp1.Object AS b WHERE "
    "CONTAINS(POINT(b.coord_ra, b.coord_dec), CIRCLE(a.coord_ra, a.coord_dec, 1.5)) = 1 "
    "AND a.objectId < b.objectId AND a.objectId < 300 ORDER BY a, b",
    "SELECT objectId FROM dp1.Object WHERE 1 = CONTAINS(POINT(coord_ra, coord_dec), "
    "POLYGON(100, 10, 120, 10, 120, 30, 100, 30)) ORDER BY objectId",
    "WITH near AS (SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
    "CIRCLE(0, 0, 20)) = 1) SELECT COUNT(*) AS n FROM dp1.Source WHERE objectId IN "
    "(SELECT objectId FROM near)",
    "SELECT shape_flag, MOD(tract, 7) AS m, LOWER(band) AS b FROM dp1.Object AS o JOIN "
    "dp1.Source AS s USING (objectId) WHERE objectId < 20 ORDER BY sourceId",
    "SELECT objectId FROM dp1.Object WHERE objectId < 10 UNION SELECT objectId FROM "
    "dp1.Source WHERE objectId BETWEEN 5 AND 15 ORDER BY objectId",
]


@pytest.mark.parametrize("adql", DIFFERENTIAL)
def test_backends_agree(sample_catalog, postgres_catalog, adql: str) -> None:
    """The same ADQL gives the same rows on DuckDB and on PostgreSQL."""
    results = []
    for backend in (sample_catalog, postgres_catalog):
        _, rows = run(backend, backend.load_schema(), adql)
        results.append(rows)
    duck, pg = results
    assert duck, adql
    assert len(duck) == len(pg)
    for a, b in zip(duck, pg, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float) or isinstance(b[key], float):
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-9, abs=1e-9)
            else:
                assert a[key] == b[key], (key, a, b)
