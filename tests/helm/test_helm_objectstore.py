"""The object-store Butler the chart configures, run for real: S3 (moto's server) + PostgreSQL.

The chart renders ``butler.yaml`` (datastore on S3, registry in PostgreSQL) and mounts it where
the services look for the data preview's repository. Here the same template is rendered with
values pointing at a private PostgreSQL and an S3 server on loopback, the pod's environment
(S3 endpoint, keys, database) is applied, and a repository is created, written and read back
through the services' own opening path (:class:`ImageRepository`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from chartdocs import one, values_of

from sciplat.helmchart import manifests, render

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres():
    import psycopg

    from sciplat.services.tap.pgcluster import start_postgres

    cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-pg-")))
    try:
        # what the chart's init script does for the in-cluster database
        with psycopg.connect(cluster.admin_url, autocommit=True) as con:
            con.execute("CREATE DATABASE butler")
        url = f"postgresql://postgres@127.0.0.1:{cluster.port}/butler"
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    from sciplat.services.tap.pgcluster import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def rendered_api(postgres, s3_endpoint: str) -> tuple[str, dict[str, str]]:
    values = values_of("production")
    values["externalDatabase"].update(
        host="127.0.0.1", port=postgres.port, username="postgres", sslmode="disable"
    )
    values["objectStore"].update(endpoint=s3_endpoint, butlerRepo="s3://sciplat-butler/dp1")
    docs = manifests(render(values))
    config = one(docs, "ConfigMap", "sciplat-butler")["data"]["butler.yaml"]
    api = one(docs, "Deployment", "sciplat-api")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in api["containers"][0]["env"]}
    (mount,) = [m for m in api["containers"][0]["volumeMounts"] if m["name"] == "butler"]
    assert mount["mountPath"] == "/var/lib/sciplat/dataset/butler/butler.yaml"
    return config, env


def test_services_open_an_s3_postgresql_butler_from_the_rendered_config(
    postgres, s3_endpoint, tmp_path, monkeypatch
):
    import boto3
    import psycopg
    from lsst.daf.butler import Butler, Config, DatasetType

    from sciplat.services.images.butler import ImageRepository

    config, env = rendered_api(postgres, s3_endpoint)
    assert "password" not in config.lower()
    # the pod's environment: literal values from the Deployment, secrets from their Secrets
    for name in ("S3_ENDPOINT_URL", "AWS_DEFAULT_REGION", "PGHOST", "PGPORT", "PGUSER"):
        monkeypatch.setenv(name, str(env[name]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sciplat-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sciplat-test-secret")
    monkeypatch.setenv("PGPASSWORD", "trust-auth-ignores-it")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=env["AWS_DEFAULT_REGION"])
    s3.create_bucket(Bucket="sciplat-butler")

    # the mounted file, where the services look for the repository
    repo_dir = tmp_path / "dataset" / "butler"
    repo_dir.mkdir(parents=True)
    (repo_dir / "butler.yaml").write_text(config)
    Butler.makeRepo("s3://sciplat-butler/dp1/", config=Config(str(repo_dir / "butler.yaml")))
    with Butler.from_config(str(repo_dir), writeable=True, run="u/test") as butler:
        notes = DatasetType("notes", [], "StructuredDataDict", universe=butler.dimensions)
        butler.registry.registerDatasetType(notes)
        ref = butler.put({"seeing": 0.7}, "notes")

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sciplat-butler")["Contents"]]
    assert "dp1/butler.yaml" in keys
    assert any(k.startswith("dp1/u/test/notes") for k in keys), keys
    assert not list(tmp_path.rglob("notes*")), "datasets must not land on the local disk"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/butler") as con:
        (count,) = con.execute("SELECT count(*) FROM dataset_type").fetchone()
    assert count >= 1  # the registry lives in PostgreSQL

    repo = ImageRepository(repo_dir)  # the image services' read-only opening path
    try:
        assert repo.butler.get_dataset(ref.id).run == "u/test"
        assert repo.butler.get(ref) == {"seeing": 0.7}
    finally:
        repo.close()


def test_without_an_object_store_the_services_keep_the_file_repo(rendered):
    docs = rendered["minimal"]
    assert not [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("butler")
    ]
    api = one(docs, "Deployment", "sciplat-api")["spec"]["template"]["spec"]
    assert all(m["name"] != "butler" for m in api["containers"][0]["volumeMounts"])
