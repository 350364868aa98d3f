"""sciplat's own components in the chart: which run by default, how they are reached and probed."""

from __future__ import annotations

import json

import helm_python
import pytest
from chartdocs import find, one, values_of

from sciplat.helmchart import manifests, render, rendered_settings, validate_manifest


def container(docs: list[dict], name: str) -> dict:
    return one(docs, "Deployment", f"sciplat-{name}")["spec"]["template"]["spec"]["containers"][0]


def test_defaults_run_what_the_embedded_default_runs(rendered):
    docs = rendered["minimal"]
    deployments = {d["metadata"]["name"] for d in find(docs, "Deployment")}
    # one machine: the API service (alerts and notebooks inside it) and the portal
    assert deployments == {"sciplat-api", "sciplat-portal", "sciplat-alerts"}
    components = json.loads(
        one(docs, "Secret", "sciplat-settings")["stringData"]["components.json"]
    )
    assert components == {"api": True, "portal": True, "workers": False, "alerts": True}


@pytest.mark.parametrize(
    ("name", "health", "service", "prefix"),
    [
        ("api", "/services/api/health", "api", "/services/api"),
        ("portal", "/services/portal/health", "portal", "/services/portal"),
        ("alerts", "/services/api/health", "api", "/services/api"),
        ("workers", "/services/api/health", "api", "/services/api"),
    ],
)
def test_components_are_probed_and_carry_their_hub_identity(
    rendered, name, health, service, prefix
):
    c = container(rendered["large"], name)
    assert c["readinessProbe"]["httpGet"] == {"path": health, "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == health
    env = {e["name"]: e for e in c["env"]}
    assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == service
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == prefix
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": f"hub.services.{service}.apiToken",
    }
    assert c["resources"]["limits"] and c["resources"]["requests"]
    one(rendered["large"], "Service", f"sciplat-{name}")


def test_alerts_and_workers_get_their_paths_from_the_ingress(rendered):
    docs = rendered["large"]
    main = one(docs, "Ingress", "sciplat")
    for name, path in (("alerts", "/services/api/alerts"), ("workers", "/services/api/notebooks")):
        ing = one(docs, "Ingress", f"sciplat-{name}")
        assert ing["spec"]["tls"] == main["spec"]["tls"]
        for rule in ing["spec"]["rules"]:
            (p,) = rule["http"]["paths"]
            assert p["path"] == path and p["pathType"] == "Prefix"
            assert p["backend"]["service"] == {"name": f"sciplat-{name}", "port": {"name": "http"}}
        assert [r["host"] for r in ing["spec"]["rules"]] == [
            r["host"] for r in main["spec"]["rules"]
        ]
    # streams: no buffering, hour-long reads
    annotations = one(docs, "Ingress", "sciplat-alerts")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    # the proxy still has everything else; no Ingress for api/portal (they stay behind the proxy)
    assert not find(docs, "Ingress", "sciplat-api") and not find(docs, "Ingress", "sciplat-portal")


def test_production_ingress_annotations_reach_the_component_ingresses(rendered):
    ing = one(rendered["production"], "Ingress", "sciplat-alerts")
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["spec"]["ingressClassName"] == "nginx"


def test_portal_mounts_the_channel_key_and_reaches_the_api_through_the_proxy(rendered):
    docs = rendered["minimal"]
    mounts = container(docs, "portal")["volumeMounts"]
    key = [m for m in mounts if m.get("subPath") == "portal-channel-secret"]
    assert key == [
        {
            "name": "settings",
            "mountPath": "/var/lib/sciplat/run/portal-channel-secret",
            "subPath": "portal-channel-secret",
            "readOnly": True,
        }
    ]
    # mounted after (inside) the data volume
    assert [m["mountPath"] for m in mounts].index("/var/lib/sciplat") < mounts.index(key[0])
    settings = rendered_settings(docs)
    # the portal calls http://<hub.ip>:<hub.port>/services/api: z2jh's proxy-public Service
    assert (settings.hub.ip, settings.hub.port) == ("proxy-public", 80)
    assert not any(m.get("subPath") for m in container(docs, "api")["volumeMounts"])


@pytest.mark.parametrize(
    "portal",
    [{"replicas": 2}, {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}],
)
def test_more_than_one_portal_is_refused(portal):
    with pytest.raises(helm_python.HelmRenderError, match=r"portal\.replicas: the portal keeps"):
        render({"ingress": {"hosts": ["x.example"]}, "portal": portal})


def test_disabled_components_render_nothing():
    values = {
        "ingress": {"hosts": ["x.example"]},
        "portal": {"enabled": False},
        "alerts": {"enabled": False},
    }
    docs = manifests(render(values))
    names = {d["metadata"]["name"] for d in docs}
    assert not {n for n in names if "portal" in n or "alerts" in n}
    for doc in docs:
        validate_manifest(doc)
    assert (
        json.loads(one(docs, "Secret", "sciplat-settings")["stringData"]["components.json"])[
            "portal"
        ]
        is False
    )


def test_channel_key_differs_per_install_and_never_enters_settings_json():
    a = one(manifests(render(values_of("minimal"))), "Secret", "sciplat-settings")["stringData"]
    b = one(manifests(render(values_of("minimal"))), "Secret", "sciplat-settings")["stringData"]
    assert a["portal-channel-secret"] != b["portal-channel-secret"]
    assert a["portal-channel-secret"] not in a["settings.json"]
