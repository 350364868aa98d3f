"""MyDB through the real API service on DuckDB and PostgreSQL, with pyvo for ADQL."""

from __future__ import annotations

import io

import numpy as np
import psycopg
import pytest
import pyvo
from astropy.table import Table
from mydb_support import MAX_UPLOAD, QUOTA_ROWS, Platform, drop_all

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(platform: Platform):
    yield
    drop_all(platform, "alice", "bob")


def _targets(n: int = 50) -> Table:
    """Object ids that exist in the sample catalog (1..3000), with a unit on one column."""
    table = Table()
    table["objectId"] = np.arange(1, n + 1, dtype=np.int64) * 7
    table["priority"] = np.linspace(0.0, 1.0, n)
    table["priority"].unit = "mag"
    table["label"] = [f"t{i}" for i in range(n)]
    return table


def _parquet(table: Table) -> bytes:
    from sciplat.mydb import _parquet_bytes

    return _parquet_bytes(table)


def _votable(table: Table) -> bytes:
    buffer = io.BytesIO()
    table.write(buffer, format="votable", tabledata_format="binary2")
    return buffer.getvalue()


def _csv(table: Table) -> bytes:
    buffer = io.StringIO()
    table.write(buffer, format="ascii.csv")
    return buffer.getvalue().encode()


def _put(platform: Platform, user: str, name: str, body: bytes, **params):
    with platform.client(user) as client:
        return client.put(f"{platform.mydb}/tables/{name}", content=body, params=params)


def _tap(platform: Platform, user: str) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(platform.tap, session=platform.session(user))


def test_upload_formats_list_describe(platform: Platform):
    source = _targets()
    for fmt, body in (
        ("parquet", _parquet(source)),
        ("votable", _votable(source)),
        ("csv", _csv(source)),
    ):
        created = _put(platform, "alice", f"targets_{fmt}", body)
        assert created.status_code == 201, created.text
        record = created.json()
        assert record["name"] == f"user_alice.targets_{fmt}"
        assert record["rows"] == 50
        assert record["source"] == f"upload:{fmt}"
        columns = {c["name"]: c for c in record["columns"]}
        assert list(columns) == ["objectid", "priority", "label"]
        assert columns["objectid"]["datatype"] == "long"
        assert columns["priority"]["datatype"] == "double"
        assert columns["label"]["datatype"] == "char"
        if fmt != "csv":  # CSV carries no units
            assert columns["priority"]["unit"] == "mag"
    with platform.client("alice") as client:
        listing = client.get(f"{platform.mydb}/tables").json()
        described = client.get(f"{platform.mydb}/tables/targets_parquet").json()
    assert sorted(t["name"] for t in listing["tables"]) == [
        "user_alice.targets_csv",
        "user_alice.targets_parquet",
        "user_alice.targets_votable",
    ]
    usage = {u["schema"]: u for u in listing["usage"]}
    assert usage["user_alice"]["rows"] == 150
    assert usage["user_alice"]["quota_rows"] == QUOTA_ROWS
    assert described["owner"] == "alice"
    # Nobody else sees them.
    with platform.client("bob") as client:
        assert client.get(f"{platform.mydb}/tables").json()["tables"] == []


def test_join_with_survey_tables_and_tap_schema_per_user(platform: Platform):
    assert _put(platform, "alice", "targets", _parquet(_targets())).status_code == 201
    alice = _tap(platform, "alice")
    joined = alice.search(
        "SELECT t.objectid, t.priority, o.coord_ra FROM user_alice.targets AS t "
        "JOIN dp1.Object AS o ON o.objectId = t.objectid ORDER BY t.objectid"
    ).to_table()
    assert len(joined) == 50
    assert list(joined["objectid"][:3]) == [7, 14, 21]
    assert joined["priority"].unit == "mag"
    # A filter and an aggregate run on the user table as on any other.
    count = alice.search("SELECT COUNT(*) AS n FROM user_alice.targets WHERE priority > 0.5")
    assert int(count.to_table()["n"][0]) == 25

    tables = alice.search("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
    assert "user_alice.targets" in {str(v) for v in tables["table_name"]}
    assert "dp1.Object" in {str(v) for v in tables["table_name"]}
    columns = alice.search(
        "SELECT column_name, unit FROM TAP_SCHEMA.columns WHERE table_name = 'user_alice.targets'"
    ).to_table()
    assert {str(c) for c in columns["column_name"]} == {"objectid", "priority", "label"}
    schemas = alice.search("SELECT schema_name FROM TAP_SCHEMA.schemas").to_table()
    assert "user_alice" in {str(v) for v in schemas["schema_name"]}
    assert "user_alice.targets" in {t.name for t in alice.tables}

    bob = _tap(platform, "bob")
    bob_tables = bob.search("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
    assert not any("user_alice" in str(v) for v in bob_tables["table_name"])
    assert "user_alice.targets" not in {t.name for t in bob.tables}
    with pytest.raises(pyvo.dal.DALQueryError, match="Unknown table"):
        bob.search("SELECT * FROM user_alice.targets")


def test_share_is_read_only_and_members_only(platform: Platform):
    assert _put(platform, "alice", "shared", _parquet(_targets(10))).status_code == 201
    bob = _tap(platform, "bob")
    with platform.client("alice") as client:
        # bob is in "users", not "staff": a share with staff does not reach him.
        assert client.put(f"{platform.mydb}/tables/shared/shares/staff").status_code == 200
        with pytest.raises(pyvo.dal.DALQueryError, match="Unknown table"):
            bob.search("SELECT * FROM user_alice.shared")
        shared = client.put(f"{platform.mydb}/tables/shared/shares/users")
        assert shared.json()["shared_with"] == ["staff", "users"]
        assert client.put(f"{platform.mydb}/tables/shared/shares/nosuch").status_code == 400
    bob_tables = bob.search("SELECT table_name FROM TAP_SCHEMA.tables").to_table()
    assert "user_alice.shared" in {str(v) for v in bob_tables["table_name"]}
    rows = bob.search("SELECT objectid FROM user_alice.shared ORDER BY objectid").to_table()
    assert list(rows["objectid"]) == [7 * i for i in range(1, 11)]
    with platform.client("bob") as client:
        listing = client.get(f"{platform.mydb}/tables").json()["tables"]
        assert [t["name"] for t in listing] == ["user_alice.shared"]
        # Read-only: no drop, no overwrite, no re-share.
        assert client.delete(f"{platform.mydb}/tables/user_alice.shared").status_code == 403
        over = client.put(
            f"{platform.mydb}/tables/user_alice.shared",
            content=_parquet(_targets(3)),
            params={"overwrite": "true"},
        )
        assert over.status_code == 403
        assert (
            client.put(f"{platform.mydb}/tables/user_alice.shared/shares/staff").status_code == 403
        )
    with platform.client("alice") as client:
        assert client.get(f"{platform.mydb}/tables/shared").json()["rows"] == 10
        assert client.delete(f"{platform.mydb}/tables/shared/shares/users").status_code == 200
    with pytest.raises(pyvo.dal.DALQueryError, match="Unknown table"):
        bob.search("SELECT * FROM user_alice.shared")


def test_group_schema_for_members(platform: Platform):
    assert _put(platform, "alice", "group_users.common", _csv(_targets(5))).status_code == 201
    bob = _tap(platform, "bob")
    assert len(bob.search("SELECT * FROM group_users.common").to_table()) == 5
    with platform.client("alice") as client:
        # alice is not in staff: its schema is not hers to write.
        refused = client.put(f"{platform.mydb}/tables/group_staff.x", content=_csv(_targets(5)))
        assert refused.status_code == 403
    with platform.client("bob") as client:
        assert client.delete(f"{platform.mydb}/tables/group_users.common").status_code == 200


def test_create_from_job_and_dest_table(platform: Platform):
    alice = _tap(platform, "alice")
    query = "SELECT objectId, coord_ra, coord_dec, r_psfFlux FROM dp1.Object WHERE r_psfFlux > 7000"
    job = alice.submit_job(query).run().wait(timeout=120)
    job.raise_if_error()
    expected = len(job.fetch_result().to_table())
    assert expected > 0
    with platform.client("alice") as client:
        created = client.post(f"{platform.mydb}/tables/bright/from-job", params={"job": job.job_id})
        assert created.status_code == 201, created.text
        assert created.json()["rows"] == expected
        assert created.json()["source"] == f"job:{job.job_id}"
    # A Parquet result (the fast path for big results) is read by pyarrow.
    parquet_job = pyvo.dal.AsyncTAPJob.create(
        platform.tap, query, session=platform.session("alice"), responseformat="parquet"
    )
    parquet_job.run().wait(timeout=120)
    parquet_job.raise_if_error()
    with platform.client("alice") as client:
        made = client.post(
            f"{platform.mydb}/tables/bright_pq/from-job", params={"job": parquet_job.job_id}
        )
        assert made.status_code == 201, made.text
        assert made.json()["rows"] == expected
    with platform.client("bob") as client:  # not bob's job: no such job for him
        stolen = client.post(f"{platform.mydb}/tables/stolen/from-job", params={"job": job.job_id})
        assert stolen.status_code == 404
    # The stored table keeps the survey columns' metadata and joins back to the survey.
    joined = alice.search(
        "SELECT COUNT(*) AS n FROM user_alice.bright AS b JOIN dp1.Source AS s "
        "ON s.objectId = b.objectid"
    ).to_table()
    assert int(joined["n"][0]) == 3 * expected

    # DEST_TABLE on /async: the result is stored as the job runs.
    job = pyvo.dal.AsyncTAPJob.create(
        platform.tap, query, session=platform.session("alice"), dest_table="bright_dest"
    )
    job.run().wait(timeout=120)
    job.raise_if_error()
    assert len(job.fetch_result().to_table()) == expected
    stored = alice.search("SELECT COUNT(*) AS n FROM user_alice.bright_dest").to_table()
    assert int(stored["n"][0]) == expected
    with platform.client("alice") as client:
        described = client.get(f"{platform.mydb}/tables/bright_dest").json()
    assert described["source"] == "query"
    assert {c["name"]: c["unit"] for c in described["columns"]}["coord_ra"] == "deg"
    # Someone else's schema as DEST_TABLE: refused when the job is created.
    with pytest.raises(pyvo.dal.DALServiceError, match=r"403|not write"):
        pyvo.dal.AsyncTAPJob.create(
            platform.tap, query, session=platform.session("alice"), dest_table="user_bob.x"
        )
    # ...and on /sync (where it would mean nothing).
    with pytest.raises(pyvo.dal.DALQueryError, match="async only"):
        pyvo.dal.TAPService(platform.tap, session=platform.session("alice")).run_sync(
            query, dest_table="x"
        )


@pytest.mark.parametrize(
    "name",
    [
        "select",  # reserved words
        "user_alice.from",
        "1abc",
        "a-b",
        'x"; DROP TABLE dp1.Object; --',
        "x%20y",
        "user_alice.x.y",
        "dp1.object",  # not a MyDB schema
        "tap_schema.tables",
        "a" * 64,
    ],
)
def test_bad_names_refused(platform: Platform, name: str):
    response = _put(platform, "alice", name, _csv(_targets(3)))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "UsageError"


def test_other_users_schema_refused_without_existence_leak(platform: Platform):
    assert _put(platform, "bob", "private", _csv(_targets(3))).status_code == 201
    with platform.client("alice") as client:
        existing = client.get(f"{platform.mydb}/tables/user_bob.private")
        missing = client.get(f"{platform.mydb}/tables/user_bob.nothing_here")
        assert existing.status_code == missing.status_code == 403
        assert existing.json()["message"].replace("private", "X") == missing.json()[
            "message"
        ].replace("nothing_here", "X")
        for method in ("delete", "put"):
            response = getattr(client, method)(f"{platform.mydb}/tables/user_bob.private")
            assert response.status_code == 403
    with platform.client("bob") as client:
        assert client.get(f"{platform.mydb}/tables/private").json()["rows"] == 3
    # No scope, no entry.
    with platform.client("carol") as client:
        assert client.get(f"{platform.mydb}/tables").status_code == 403


def test_collision_needs_overwrite(platform: Platform):
    assert _put(platform, "alice", "t", _csv(_targets(3))).status_code == 201
    again = _put(platform, "alice", "T", _csv(_targets(4)))  # names are case-insensitive
    assert again.status_code == 400
    assert "already exists" in again.json()["message"]
    replaced = _put(platform, "alice", "t", _csv(_targets(4)), overwrite="true")
    assert replaced.status_code == 201
    assert replaced.json()["rows"] == 4


def test_bad_files_refused(platform: Platform):
    fits = io.BytesIO()
    _targets(3).write(fits, format="fits")
    cases = {
        "fits": (fits.getvalue(), 400, "FITS"),
        "binary": (bytes(range(256)) * 8, 400, "Unknown file format"),
        "xml": (b"<?xml version='1.0'?><html></html>", 400, "not a VOTable"),
        "empty": (b"", 400, "empty"),
        "badparquet": (b"PAR1" + b"\x00" * 100, 400, "Parquet"),
        "huge": (b"a,b\n" + b"1,2\n" * (MAX_UPLOAD // 4 + 10), 413, "limit"),
    }
    for name, (body, status, text) in cases.items():
        response = _put(platform, "alice", name, body)
        assert response.status_code == status, (name, response.text)
        assert text in response.json()["message"], name
    with platform.client("alice") as client:
        assert client.get(f"{platform.mydb}/tables").json()["tables"] == []
    incoming = platform.settings.services_state_dir / "mydb" / "incoming"
    assert list(incoming.glob("*")) == []


def _physical_exists(platform: Platform, name: str) -> bool:
    schema, table = name.split(".")
    if platform.backend == "duckdb":
        return (
            platform.settings.services_state_dir / "mydb/tables" / schema / f"{table}.parquet"
        ).exists()
    with psycopg.connect(platform.admin_url) as con:
        return (
            con.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0] is not None
        )


def test_quota_refused_and_nothing_left(platform: Platform):
    small = _targets(10)
    assert _put(platform, "alice", "keep", _parquet(small)).status_code == 201
    big = Table({"x": np.arange(QUOTA_ROWS + 1, dtype=np.int64)})
    over = _put(platform, "alice", "big", _parquet(big))
    assert over.status_code == 429
    assert "quota exceeded" in over.json()["message"]
    assert not _physical_exists(platform, "user_alice.big")
    # Replacing an existing table with one over quota leaves the old one as it was.
    replaced = _put(platform, "alice", "keep", _parquet(big), overwrite="true")
    assert replaced.status_code == 429
    with platform.client("alice") as client:
        assert client.get(f"{platform.mydb}/tables/keep").json()["rows"] == 10
        assert client.get(f"{platform.mydb}/tables/big").status_code == 404
    alice = _tap(platform, "alice")
    assert len(alice.search("SELECT * FROM user_alice.keep").to_table()) == 10
    # A DEST_TABLE job over quota ends in ERROR and stores nothing.
    job = pyvo.dal.AsyncTAPJob.create(
        platform.tap,
        "SELECT s.sourceId, s.objectId FROM dp1.Source AS s JOIN dp1.Object AS o "
        "ON o.objectId = s.objectId JOIN dp1.Source AS s2 ON s2.objectId = o.objectId",
        session=platform.session("alice"),
        dest_table="toolarge",
    )
    job.run().wait(timeout=120)
    assert job.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError, match="quota exceeded"):
        job.raise_if_error()
    assert not _physical_exists(platform, "user_alice.toolarge")
    assert _physical_exists(platform, "user_alice.keep")


def test_numeric_values_round_trip(platform: Platform):
    """Every storable type, with and without NULLs (PostgreSQL: binary COPY, else CSV)."""
    n = 1000
    rng = np.random.default_rng(3)
    table = Table(
        {
            "i16": rng.integers(-300, 300, n).astype(np.int16),
            "i32": rng.integers(-(2**31), 2**31 - 1, n).astype(np.int32),
            "i64": rng.integers(-(2**62), 2**62, n),
            "f32": rng.random(n).astype(np.float32),
            "f64": rng.normal(size=n),
            "flag": rng.random(n) > 0.3,
        }
    )
    assert _put(platform, "alice", "numbers", _parquet(table)).status_code == 201
    with_nulls = Table.read(io.BytesIO(_csv(table)), format="ascii.csv")
    with_nulls["f64"] = np.ma.masked_array(table["f64"], mask=np.arange(n) % 7 == 0)
    assert _put(platform, "alice", "holes", _parquet(with_nulls)).status_code == 201
    alice = _tap(platform, "alice")
    back = alice.search("SELECT * FROM user_alice.numbers ORDER BY i64").to_table()
    order = np.argsort(table["i64"])
    for name in table.colnames:
        assert np.array_equal(np.asarray(back[name]), np.asarray(table[name])[order]), name
    nulls = alice.search(
        "SELECT COUNT(*) AS n, COUNT(f64) AS valued FROM user_alice.holes"
    ).to_table()
    assert (int(nulls["n"][0]), int(nulls["valued"][0])) == (n, n - len(range(0, n, 7)))
