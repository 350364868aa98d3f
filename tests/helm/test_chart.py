"""The Helm chart, rendered offline by Helm's own engine and checked against Kubernetes' schemas.

No cluster runs here. The ``jupyterhub`` and ``dask-gateway`` subcharts cannot be fetched on
this machine, so they are not rendered (Helm skips absent dependencies); what sciplat passes to
them is checked as values.
"""

from __future__ import annotations

import json
import re

import helm_python
import pytest
from chartdocs import VALUES_FILES, find, one, pod_specs, values_of

from sciplat.config import Settings
from sciplat.helmchart import (
    CHART_DIR,
    manifests,
    render,
    rendered_settings,
    schema_text,
    validate_manifest,
)


def test_values_schema_is_generated_from_settings():
    committed = (CHART_DIR / "values.schema.json").read_text()
    assert committed == schema_text(), (
        "helm/sciplat/values.schema.json is stale: run `sciplat helm schema --write`"
    )
    schema = json.loads(committed)
    assert schema["properties"]["sciplat"]["$ref"] == "#/$defs/Settings"
    assert schema["$defs"]["Settings"]["properties"].keys() == Settings.model_fields.keys()


def test_three_values_files_exist():
    assert {p.name for p in VALUES_FILES} >= {
        "minimal-values.yaml",
        "production-values.yaml",
        "large-values.yaml",
    }


@pytest.mark.parametrize("name", ["minimal", "production", "large"])
def test_every_manifest_validates_strictly(rendered, name):
    docs = rendered[name]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Secret", "NetworkPolicy", "Ingress"} <= kinds
    for doc in docs:
        validate_manifest(doc)  # kubernetes-validate, strict: unknown fields fail
    # and the rendered settings are a valid sciplat.yaml
    settings = rendered_settings(docs)
    assert settings.public_url.startswith("https://")


BAD_VALUES = [
    (
        {"sciplat": {"sizes": [{"name": "small", "cpu": "lots", "memory": "4G"}]}},
        "/sciplat/sizes/0/cpu",
    ),
    ({"sciplat": {"hub": {"authenticator": "ldap"}}}, "/sciplat/hub/authenticator"),
    (
        {
            "sciplat": {
                "groups": {"users": {"scopes": ["custom:tap:read"], "quotas": {"disk": "lots"}}}
            }
        },
        "/sciplat/groups/users/quotas/disk",
    ),
    ({"sciplat": {"hub": {"cul": {}}}}, "'cul' not allowed"),
    ({"api": {"replicass": 3}}, "'replicass' not allowed"),
    ({"ingres": {}}, "'ingres' not allowed"),
    ({"labs": {"homeStorage": "s3"}}, "/labs/homeStorage"),
    ({"labs": {"uidOffset": 0}}, "/labs/uidOffset"),
    ({"postgresql": {"storage": {"size": "lots"}}}, "/postgresql/storage/size"),
]


@pytest.mark.parametrize(("values", "key"), BAD_VALUES)
def test_invalid_values_fail_naming_the_key(values, key):
    with pytest.raises(helm_python.HelmValuesError) as info:
        render(values)
    assert key in str(info.value)


RENDER_FAILURES = [
    (
        {
            "sciplat": {
                "images": [
                    {
                        "name": "recommended",
                        "tag": "recommended",
                        "container_image": "ghcr.io/sciplat/lab:recommended",
                    },
                    {"name": "exp", "tag": "experimental"},
                ]
            }
        },
        "sciplat.images[1].container_image",
    ),
    (
        {
            "sciplat": {
                "sizes": [
                    {"name": "small", "cpu": 1, "memory": "4Gi"},
                    {"name": "big", "cpu": 8, "memory": "64Gi"},
                ]
            },
            "labs": {"largestNode": {"cpu": 16, "memory": "32Gi"}},
        },
        "sciplat.sizes[1] (big: 8 CPU, 64Gi) does not fit labs.largestNode",
    ),
    ({"ingress": {"enabled": False}}, "sciplat.hub.public_url"),
    ({"postgresql": {"enabled": False}}, "externalDatabase.host"),
    (
        {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db"}},
        "externalDatabase.existingSecret",
    ),
    ({"objectStore": {"enabled": True}}, "objectStore.existingSecret"),
    (
        {
            "sciplat": {
                "images": [
                    {
                        "name": "recommended",
                        "tag": "recommended",
                        "container_image": "ghcr.io/sciplat/lab:r2_0_0",
                    }
                ]
            }
        },
        "jupyterhub.singleuser.image (ghcr.io/sciplat/lab:recommended) must be the recommended "
        "lab image (ghcr.io/sciplat/lab:r2_0_0)",
    ),
]


@pytest.mark.parametrize(("values", "message"), RENDER_FAILURES)
def test_unusable_values_fail_at_render_with_the_key(values, message):
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(values)
    assert message in str(info.value)


def test_sizes_that_fit_the_largest_node_pass():
    values = {
        "labs": {"largestNode": {"cpu": 16, "memory": "64Gi"}},
        "sciplat": {"sizes": [{"name": "big", "cpu": 16, "memory": "64Gi"}]},
    }
    assert manifests(render(values))


def test_cross_field_errors_are_caught_by_the_settings_model():
    """What JSON Schema cannot say (max_size names a size) fails `sciplat helm render`."""
    values = {"sciplat": {"groups": {"users": {"quotas": {"max_size": "gigantic"}}}}}
    docs = manifests(render(values))  # the schema alone accepts it ...
    with pytest.raises(ValueError, match="max_size 'gigantic' is not a size"):
        rendered_settings(docs)  # ... the one settings model does not


def test_settings_secret_is_the_sciplat_section(rendered):
    docs = rendered["production"]
    settings = rendered_settings(docs)
    values = values_of("production")["sciplat"]
    assert settings.hub.authenticator == "oidc"
    assert settings.hub.oidc.issuer == values["hub"]["oidc"]["issuer"]
    assert [i.name for i in settings.images] == [i["name"] for i in values["images"]]
    assert settings.catalog.url == values["catalog"]["url"]
    # in-cluster database: the chart fills the catalog URL (without a password)
    minimal = rendered_settings(rendered["minimal"])
    assert minimal.catalog.url == (
        "postgresql://sciplat@sciplat-postgresql:5432/catalog?sslmode=disable"
    )
    assert minimal.public_url == "https://dac.test.example"
    # UWS jobs in PostgreSQL (every replica sees every job), never SQLite on a shared volume
    assert (
        minimal.jobs.url == "postgresql://sciplat@sciplat-postgresql:5432/sciplat?sslmode=disable"
    )
    assert rendered_settings(docs).jobs.url == (
        "postgresql://sciplat@db.example.org:5432/sciplat?sslmode=verify-full"
    )
    assert (
        json.loads(
            one(rendered["minimal"], "Secret", "sciplat-settings")["stringData"]["datasets.json"]
        )
        == {}
    )
    backend = json.loads(
        one(rendered["large"], "Secret", "sciplat-settings")["stringData"]["kubernetes.json"]
    )
    assert backend["home_storage"] == "nfs"
    assert backend["group_volumes"]["staff"]["gid"] == 30001


def test_ingress_serves_https_to_the_proxy(rendered):
    for name in ("minimal", "production", "large"):
        ing = one(rendered[name], "Ingress", "sciplat")
        hosts = [r["host"] for r in ing["spec"]["rules"]]
        assert ing["spec"]["tls"][0]["hosts"] == hosts
        for rule in ing["spec"]["rules"]:
            backend = rule["http"]["paths"][0]["backend"]["service"]
            assert backend == {"name": "proxy-public", "port": {"name": "http"}}
    assert (
        one(rendered["production"], "Ingress", "sciplat")["spec"]["tls"][0]["secretName"]
        == "data-example-org-tls"
    )


SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|ACCESS_KEY", re.IGNORECASE)


@pytest.mark.parametrize("name", ["minimal", "production", "large"])
def test_secrets_come_from_secrets(rendered, name):
    docs = rendered[name]
    for where, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for env in c.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "value" not in env, f"{where}: {env['name']} is a literal"
                    assert "secretKeyRef" in env["valueFrom"], where
    settings = one(docs, "Secret", "sciplat-settings")["stringData"]["settings.json"]
    assert "password" not in settings.lower()
    for where, spec in pod_specs(docs):
        if "sciplat-api" in where:
            env = {e["name"]: e for e in spec["containers"][0]["env"]}
            assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                "name": "hub",
                "key": "hub.services.api.apiToken",
            }


@pytest.mark.parametrize("name", ["minimal", "production", "large"])
def test_pods_run_as_non_root_without_privileges(rendered, name):
    for where, spec in pod_specs(rendered[name]):
        pod_nonroot = spec.get("securityContext", {}).get("runAsNonRoot")
        assert spec.get("automountServiceAccountToken") is False, where
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            sc = c.get("securityContext", {})
            assert pod_nonroot or sc.get("runAsNonRoot"), f"{where}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}"
            assert "privileged" not in sc


def test_production_uses_the_external_database_and_object_store(rendered):
    docs = rendered["production"]
    assert not find(docs, "StatefulSet")
    api = one(docs, "Deployment", "sciplat-api")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in api["env"]}
    assert env["PGHOST"]["value"] == "db.example.org"
    assert env["PGSSLMODE"]["value"] == "verify-full"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "sciplat-db",
        "key": "password",
    }
    assert env["S3_ENDPOINT_URL"]["value"] == "https://s3.example.org"
    assert env["SCIPLAT_BUTLER_REPO"]["value"] == "s3://butler/dp1"
    assert api["image"] == "registry.example.org/sciplat/services:0.1.0"
    hpa = one(docs, "HorizontalPodAutoscaler", "sciplat-api")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 16)
    assert "replicas" not in one(docs, "Deployment", "sciplat-api")["spec"]


def test_in_cluster_postgresql_has_pgsphere_and_a_generated_password(rendered):
    docs = rendered["minimal"]
    init = one(docs, "ConfigMap", "sciplat-postgresql-init")["data"]["10-sciplat.sql"]
    assert "CREATE EXTENSION IF NOT EXISTS pg_sphere" in init
    assert "CREATE DATABASE jupyterhub" in init
    secret = one(docs, "Secret", "sciplat-postgresql")
    assert len(secret["data"]["password"]) >= 40
    sts = one(docs, "StatefulSet", "sciplat-postgresql")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/sciplat/postgres:0.1.0"
    )


@pytest.mark.parametrize("name", ["minimal", "production", "large"])
def test_z2jh_hook_prepuller_pulls_the_recommended_image_before_upgrades(name):
    values = values_of(name)
    with helm_python.Chart.load(CHART_DIR) as chart:
        merged = chart.merge_values(values)
    jh = merged["jupyterhub"]
    assert jh["prePuller"]["hook"]["enabled"] is True
    assert jh["prePuller"]["continuous"]["enabled"] is False  # sciplat-prepuller does that
    assert jh["prePuller"]["pullProfileListImages"] is False
    recommended = next(i for i in merged["sciplat"]["images"] if i["tag"] == "recommended")
    image = jh["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == recommended["container_image"]


def test_prepuller_keeps_the_configured_tags_cached(rendered):
    ds = one(rendered["large"], "DaemonSet", "sciplat-prepuller")["spec"]["template"]["spec"]
    images = [c["image"] for c in ds["initContainers"]]
    assert images == [
        "ghcr.io/sciplat/lab:recommended",
        "ghcr.io/sciplat/lab:r1_0_0",
        "ghcr.io/sciplat/lab:r0_9_0",
    ]
    assert ds["nodeSelector"] == {"hub.jupyter.org/node-purpose": "user"}
    minimal = one(rendered["minimal"], "DaemonSet", "sciplat-prepuller")["spec"]["template"]
    assert [c["image"] for c in minimal["spec"]["initContainers"]] == [
        "ghcr.io/sciplat/lab:recommended"
    ]


def test_strict_validation_rejects_unknown_fields(rendered):
    import copy

    import jsonschema

    deployment = copy.deepcopy(one(rendered["minimal"], "Deployment", "sciplat-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(jsonschema.ValidationError, match="securityContxt"):
        validate_manifest(deployment)


def test_hub_may_read_nodes_and_lab_logs_and_nothing_more(rendered):
    docs = rendered["minimal"]
    cluster_role = one(docs, "ClusterRole", "sciplat-sciplat-node-reader")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}
    ]
    role = one(docs, "Role", "sciplat-hub-lab-logs")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        (binding,) = find(docs, kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "hub", "namespace": "sciplat"}
        ]


def test_helm_lint_finds_only_the_unfetched_subcharts():
    """`helm lint --strict`; offline, the two dependencies cannot be in charts/."""
    for values in ({}, values_of("production"), values_of("large")):
        report = helm_python.lint(CHART_DIR, values, strict=True, namespace="sciplat")
        assert report["errors"] == [
            "chart directory is missing these dependencies: jupyterhub,dask-gateway"
        ]
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        assert [m["error"] for m in serious] == report["errors"]
