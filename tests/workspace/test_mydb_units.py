"""MyDB without servers: names, format sniffing, storable types, quota arithmetic, registry."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sciplat.config import GroupConfig, QuotaConfig, Settings
from sciplat.services.common.errors import (
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    UsageError,
)
from sciplat.services.mydb.formats import read_table_file, sniff, storable_schema
from sciplat.services.mydb.names import (
    adql_column,
    column_name,
    group_schema,
    parse_table_name,
    user_schema,
)
from sciplat.services.mydb.registry import Registry
from sciplat.services.mydb.service import Caller, MyDBService, Quota
from sciplat.services.mydb.storage import ParquetStore


def test_schema_names_fold_to_identifiers():
    assert user_schema("Alice.Smith-2") == "user_alice_smith_2"
    assert group_schema("rubin-commissioning") == "group_rubin_commissioning"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bright", "user_alice.bright"),
        ("Bright_2", "user_alice.bright_2"),
        ("user_alice.x", "user_alice.x"),
        ("GROUP_users.t", "group_users.t"),
    ],
)
def test_table_names(text, expected):
    assert parse_table_name(text, default_schema="user_alice").qualified == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "required"),
        ("select", "reserved word"),
        ("user_alice.Order", "reserved word"),
        ('"bright"', "no quotes"),
        ("bri ght", "not valid"),
        (" bright", "no quotes"),
        ("x;drop", "not valid"),
        ("1x", "not valid"),
        ("dp1.object", "not a MyDB schema"),
        ("public.x", "not a MyDB schema"),
        ("a.b.c", "schema.table"),
        ("user_alice.", "not valid"),
        ("x" * 64, "not valid"),
    ],
)
def test_bad_table_names(text, message):
    with pytest.raises(UsageError, match=message):
        parse_table_name(text, default_schema="user_alice")


def test_column_names():
    assert column_name("Coord RA", 0) == "coord_ra"
    assert column_name("2MASS_J", 1) == "c_2mass_j"
    assert column_name("", 3) == "col3"
    assert adql_column("size") == '"size"'
    assert adql_column("ra") == "ra"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PAR1\x15\x04", "parquet"),
        (b'<?xml version="1.0"?>\n<VOTABLE version="1.4">', "votable"),
        (b"\xef\xbb\xbfa,b\n1,2\n", "csv"),
    ],
)
def test_sniff_known(head, kind):
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"SIMPLE  =                    T", "FITS"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"<html><body/></html>", "not a VOTable"),
        (b"\x00\x01\x02\x03" * 100, "binary data"),
        (b"one column only\n1\n", "header line"),
    ],
)
def test_sniff_refuses(head, message):
    with pytest.raises(UsageError, match=message):
        sniff(head)


def test_storable_types():
    schema = storable_schema(
        pa.schema(
            [
                ("A", pa.uint32()),
                ("b", pa.int8()),
                ("c", pa.dictionary(pa.int8(), pa.string())),
                ("d", pa.timestamp("us")),
                ("e", pa.float16()),
            ]
        )
    )
    assert schema.names == ["a", "b", "c", "d", "e"]
    assert schema.types == [pa.int64(), pa.int16(), pa.string(), pa.string(), pa.float32()]
    with pytest.raises(UsageError, match="unsigned 64-bit"):
        storable_schema(pa.schema([("x", pa.uint64())]))
    with pytest.raises(UsageError, match="cannot store"):
        storable_schema(pa.schema([("x", pa.list_(pa.float64()))]))
    with pytest.raises(UsageError, match="both be named"):
        storable_schema(pa.schema([("X", pa.int32()), ("x", pa.int32())]))


def test_index_plan():
    from sciplat.services.mydb.storage import index_plan

    schema = pa.schema(
        [("objectid", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64()),
         ("coord_ra", pa.float64()), ("coord_dec", pa.float64()), ("parentid", pa.int32()),
         ("grid", pa.string()), ("a_id", pa.int64()), ("b_id", pa.int64())]
    )  # fmt: skip
    assert index_plan(schema) == (("coord_ra", "coord_dec"), ["objectid", "parentid", "a_id"])
    assert index_plan(pa.schema([("ra", pa.string()), ("dec", pa.float64())])) == (None, [])
    assert index_plan(pa.schema([("s_ra", pa.float32()), ("s_dec", pa.float32())]))[0] == (
        "s_ra",
        "s_dec",
    )


def test_read_parquet_file(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"Id": [1, 2, 3], "Name": ["a", None, "c"]}), path)
    loaded = read_table_file(path)
    assert loaded.format == "parquet"
    assert loaded.table.column_names == ["id", "name"]
    assert loaded.table.column("name").null_count == 1


def test_big_votable_refused_with_the_way_out(tmp_path):
    path = tmp_path / "big.xml"
    with open(path, "wb") as out:
        out.write(
            b'<?xml version="1.0"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        )
        out.truncate(33 * 2**20)  # sparse: no 33 MiB written
    with pytest.raises(UsageError, match=r"33 MiB.*limited to 32 MiB.*Parquet or CSV"):
        read_table_file(path)


def _service(tmp_path, rows: int = 100, size: str = "1Mi") -> MyDBService:
    settings = Settings(
        data_dir=tmp_path,
        groups={
            "users": GroupConfig(quotas=QuotaConfig(mydb_rows=rows, mydb_bytes=size)),
            "big": GroupConfig(quotas=QuotaConfig(mydb_rows=rows * 10, mydb_bytes="10Mi")),
        },
        hub={"default_groups": ["users"]},
    )
    return MyDBService(
        settings, Registry(tmp_path / "registry.sqlite3"), ParquetStore(tmp_path / "tables")
    )


def test_quota_is_the_largest_of_the_groups(tmp_path):
    service = _service(tmp_path)
    assert service.quota("user_a", Caller("a", ("users",))).rows == 100
    assert service.quota("user_a", Caller("a", ("users", "big"))).rows == 1000
    assert service.quota("group_users", Caller("a", ("users", "big"))).rows == 100
    assert service.quota("user_a", Caller("a", ("unconfigured",))).rows == 100


def test_operator_grants_mydb_rows_and_bytes(tmp_path):
    """`sciplat admin quota set ... --resource mydb_rows|mydb_bytes` raises one user's or one
    group's MyDB allocation; `default` returns to the groups' settings."""
    from click.testing import CliRunner

    from sciplat.cli import _load_areas, cli

    service = _service(tmp_path)
    config = tmp_path / "sciplat.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nhub: {{default_groups: [users]}}\n"
        "groups:\n  users: {quotas: {mydb_rows: 100, mydb_bytes: 1Mi}}\n"
        "  big: {quotas: {mydb_rows: 1000, mydb_bytes: 10Mi}}\n"
    )
    _load_areas()
    runner = CliRunner()

    def quota_set(*args: str):
        result = runner.invoke(cli, ["admin", "quota", "set", *args, "--config", str(config)])
        assert result.exit_code == 0, result.output
        return result.output

    alice, bob = Caller("alice", ("users",)), Caller("bob", ("users",))
    assert "5000 rows" in quota_set("user", "alice", "5000", "--resource", "mydb_rows")
    quota_set("user", "alice", "20Mi", "--resource", "mydb_bytes")
    quota_set("group", "users", "700", "--resource", "mydb_rows")
    assert service.quota("user_alice", alice) == Quota(5000, 20 * 2**20)
    assert service.quota("user_bob", bob) == Quota(100, 2**20)  # nobody else's changed
    assert service.quota("group_users", bob).rows == 700
    name = parse_table_name("t", default_schema="user_alice")
    service.create(name, pa.table({"x": list(range(3000))}), alice, overwrite=False, source="t")
    quota_set("user", "alice", "default", "--resource", "mydb_rows")
    assert service.quota("user_alice", alice).rows == 100
    # the disk grant is apart from MyDB's
    from sciplat.services.workspace.quota import user_quota

    assert (
        user_quota(service.settings, ["users"], "alice")
        == service.settings.groups["users"].quotas.disk
    )
    bad = runner.invoke(
        cli,
        ["admin", "quota", "set", "user", "alice", "lots", "--resource", "mydb_rows",
         "--config", str(config)],
    )  # fmt: skip
    assert bad.exit_code != 0 and "lots" in bad.output


def test_rows_over_quota_leave_nothing(tmp_path):
    service = _service(tmp_path)
    alice = Caller("alice", ("users",))
    name = parse_table_name("t", default_schema="user_alice")
    service.create(name, pa.table({"x": list(range(60))}), alice, overwrite=False, source="t")
    other = parse_table_name("u", default_schema="user_alice")
    with pytest.raises(QuotaExceededError, match="100 rows and already has 60"):
        service.create(other, pa.table({"x": list(range(41))}), alice, overwrite=False, source="t")
    assert service.registry.get(other) is None
    assert sorted(p.name for p in (tmp_path / "tables/user_alice").iterdir()) == ["t.parquet"]
    # Replacing t with 100 rows fits (t's own 60 no longer count).
    service.create(name, pa.table({"x": list(range(100))}), alice, overwrite=True, source="t")
    assert service.registry.usage("user_alice") == (100, service.registry.get(name).bytes)


def test_bytes_over_quota_refused(tmp_path):
    service = _service(tmp_path, rows=10**9, size="64Ki")
    alice = Caller("alice", ("users",))
    name = parse_table_name("noise", default_schema="user_alice")
    import numpy as np

    noise = pa.table({"x": np.random.default_rng(1).random(50_000)})
    with pytest.raises(QuotaExceededError, match="may store"):
        service.create(name, noise, alice, overwrite=False, source="t")
    assert not (tmp_path / "tables/user_alice/noise.parquet").exists()
    assert list((tmp_path / "tables/user_alice").glob(".*")) == []


def test_access_rules(tmp_path):
    service = _service(tmp_path)
    alice, bob = Caller("alice", ("users",)), Caller("bob", ("users",))
    mallory = Caller("mallory", ("big",))
    name = parse_table_name("t", default_schema="user_alice")
    service.create(name, pa.table({"x": [1]}), alice, overwrite=False, source="t")
    with pytest.raises(PermissionDeniedError):
        service.readable(name, bob)
    with pytest.raises(PermissionDeniedError):  # same answer for a table that does not exist
        service.readable(parse_table_name("user_alice.nope", default_schema="user_bob"), bob)
    with pytest.raises(NotFoundError):  # in your own schema, a missing table is just missing
        service.readable(parse_table_name("nope", default_schema="user_alice"), alice)
    service.share(name, "users", alice)
    assert service.readable(name, bob).shares == ["users"]
    with pytest.raises(PermissionDeniedError):
        service.readable(name, mallory)
    with pytest.raises(PermissionDeniedError):
        service.drop(name, bob)
    with pytest.raises(PermissionDeniedError):
        service.share(name, "big", bob)
    assert [r.name.qualified for r in service.visible(bob)] == ["user_alice.t"]
    service.drop(name, alice)
    assert service.visible(bob) == []
