"""Fuzzing the ADQL entry point: whatever the text, the translator either translates it or
raises AdqlError (a 400), and whatever it translates, the backend runs or refuses with a
UsageError - never another exception (which the service would turn into a 500)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sciplat.services.common.errors import UsageError
from sciplat.services.tap.adql import AdqlError, translate

_FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

COLUMNS = [
    "objectId",
    "coord_ra",
    "coord_dec",
    "g_psfFlux",
    "tract",
    "shape_flag",
    "bogus",
    "o.objectId",
    "s.band",
    "s.ra",
    "detect_isPrimary",
    "*",
    "1",
    "'x'",
    "NULL",
    "2.5e3",
]
FUNCTIONS = [
    "ABS",
    "LOWER",
    "COUNT",
    "MAX",
    "SQRT",
    "LOG",
    "POINT",
    "CIRCLE",
    "DISTANCE",
    "CONTAINS",
    "COORD1",
    "AREA",
    "read_csv",
    "pg_sleep",
    "ROUND",
    "CAST",
    "COALESCE",
    "POLYGON",
    "BOX",
    "INTERSECTS",
    "TRUNCATE",
    "MOD",
    "UPPER",
]
OPERATORS = [
    "+",
    "-",
    "*",
    "/",
    "=",
    "<>",
    "<",
    ">=",
    "AND",
    "OR",
    "||",
    "&",
    "|",
    "^",
    "LIKE",
    "ILIKE",
    "IS",
    "IN",
    "BETWEEN",
    ",",
    "NOT",
    ";",
]
TABLES = [
    "dp1.Object",
    "dp1.Object AS o",
    "dp1.Source s",
    "dp1.Object o JOIN dp1.Source s ON o.objectId = s.objectId",
    "TAP_SCHEMA.columns",
    "nope.nothing",
    "(SELECT 1) AS t",
]


@st.composite
def expressions(draw, depth: int = 0) -> str:
    choice = draw(st.integers(0, 4 if depth < 3 else 1))
    if choice <= 1:
        return draw(st.sampled_from(COLUMNS))
    if choice == 2:
        args = draw(st.lists(expressions(depth + 1), min_size=0, max_size=4))
        return f"{draw(st.sampled_from(FUNCTIONS))}({', '.join(args)})"
    if choice == 3:
        return f"{draw(expressions(depth + 1))} {draw(st.sampled_from(OPERATORS))} " + draw(
            expressions(depth + 1)
        )
    return f"({draw(expressions(depth + 1))})"


@st.composite
def queries(draw) -> str:
    top = draw(st.sampled_from(["", "TOP 5 ", "DISTINCT ", "TOP -1 "]))
    columns = ", ".join(draw(st.lists(expressions(), min_size=1, max_size=3)))
    query = f"SELECT {top}{columns} FROM {draw(st.sampled_from(TABLES))}"
    if draw(st.booleans()):
        query += f" WHERE {draw(expressions())}"
    if draw(st.booleans()):
        query += f" GROUP BY {draw(expressions())}"
    if draw(st.booleans()):
        query += f" ORDER BY {draw(expressions())} {draw(st.sampled_from(['', 'ASC', 'DESC']))}"
    if draw(st.booleans()):
        query += draw(st.sampled_from([" OFFSET 3", " UNION SELECT 1", " LIMIT 2", "; DROP x"]))
    return query


def _check(adql: str, schema, catalog, *, execute: bool) -> None:
    try:
        translation = translate(adql, schema, catalog.target(), maxrec=20)
    except AdqlError as exc:
        assert exc.status_code == 400 and exc.message
        return
    if execute:
        try:
            with catalog.execute(translation.sql, timeout=5) as result:
                for _ in result.batches:
                    pass
        except UsageError:
            pass


@_FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text(text: str, tap_schema, sample_catalog) -> None:
    _check(text, tap_schema, sample_catalog, execute=False)


@_FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from(list("SELCT *FROMWHERdp1.Objct(),'\"=<>;-+0123456789")),
        max_size=120,
    ).map(lambda t: "SELECT " + t)
)
def test_sql_alphabet(text: str, tap_schema, sample_catalog) -> None:
    _check(text, tap_schema, sample_catalog, execute=True)


@_FUZZ
@given(query=queries())
def test_grammar_shaped_queries(query: str, tap_schema, sample_catalog) -> None:
    _check(query, tap_schema, sample_catalog, execute=True)


@pytest.fixture(scope="module")
def http_client(tmp_path_factory):
    """The API service (TAP only) in-process, with a stand-in token check."""
    from fastapi.testclient import TestClient

    from sciplat.config import Settings
    from sciplat.services.app import create_app, load_plugins
    from sciplat.services.common.auth import AuthenticatedUser, HubTokenVerifier
    from sciplat.services.tap.sample import build_sample_catalog

    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzzapi"))
    build_sample_catalog(settings.dataset_dir, objects=200)

    class Verifier(HubTokenVerifier):
        async def verify(self, token: str) -> AuthenticatedUser:
            return AuthenticatedUser(token, frozenset({"custom:tap:read"}), ("users",))

    app = create_app(settings, plugins=load_plugins(["sciplat.services.tap:plugin"]))
    with TestClient(app, base_url="http://t") as client:
        app.state.context.verifier = Verifier("http://unused", http=app.state.context.http)
        client.headers["Authorization"] = "Bearer fuzzer"
        yield client


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    query=st.one_of(queries(), st.text(max_size=200)),
    maxrec=st.one_of(st.none(), st.integers(-5, 10**12).map(str), st.text(max_size=5)),
    fmt=st.one_of(
        st.none(),
        st.sampled_from(["votable", "csv", "fits", "parquet", "votable/td", "tsv", "x"]),
        st.text(max_size=8),
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_http_never_500(http_client, query, maxrec, fmt, method) -> None:
    """Whatever the parameters, /sync answers 200 or a 400 VOTable error - never a 500."""
    params = {"QUERY": query}
    if maxrec is not None:
        params["MAXREC"] = maxrec
    if fmt is not None:
        params["RESPONSEFORMAT"] = fmt
    if method == "GET":
        response = http_client.get("/services/api/tap/sync", params=params)
    else:
        response = http_client.post("/services/api/tap/sync", data=params)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert 'value="ERROR"' in response.text
