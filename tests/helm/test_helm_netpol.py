"""Who reaches whom under the rendered NetworkPolicies, pair by pair (a policy evaluator, no CNI).

Every sciplat component is enabled (``large`` values). The pods carry the labels their makers
give them: z2jh (hub, proxy), SciplatSpawner's Kubernetes backend (labs), dask-gateway's chart
(traefik, API server, controller) and its Kubernetes backend (schedulers and workers), sciplat's
chart (services, PostgreSQL), plus an Ingress controller in ``ingress-nginx`` and strangers.
"""

from __future__ import annotations

import helm_python
import pytest
from chartdocs import find, values_of
from netpolicy import Address, Pod, allowed

from sciplat.helmchart import CHART_DIR

JH = {"app": "jupyterhub", "release": "sciplat"}
LAB = {**JH, "component": "singleuser-server", "hub.jupyter.org/network-access-hub": "true"}
DASK = {"app.kubernetes.io/name": "dask-gateway"}
CLUSTER = {**DASK, "gateway.dask.org/instance": "sciplat-dask-gateway"}


def sciplat_pod(component: str, ip: str) -> Pod:
    labels = {
        "app.kubernetes.io/name": "sciplat",
        "app.kubernetes.io/instance": "sciplat",
        "app.kubernetes.io/component": component,
        "hub.jupyter.org/network-access-hub": "true",
    }
    ports = {"postgresql": 5432} if component == "postgresql" else {"http": 8080}
    return Pod(component, labels, ip, ports)


PODS = {
    "lab-a": Pod("lab-a", LAB, "10.0.1.10", {"notebook-port": 8888}),
    "lab-b": Pod("lab-b", LAB, "10.0.1.11", {"notebook-port": 8888}),
    "proxy": Pod(
        "proxy",
        {
            **JH,
            "component": "proxy",
            "hub.jupyter.org/network-access-hub": "true",
            "hub.jupyter.org/network-access-singleuser": "true",
        },
        "10.0.2.1",
    ),
    "hub": Pod(
        "hub",
        {**JH, "component": "hub", "hub.jupyter.org/network-access-singleuser": "true"},
        "10.0.2.2",
    ),
    "traefik": Pod("traefik", {**DASK, "app.kubernetes.io/component": "traefik"}, "10.0.3.1"),
    "gateway": Pod("gateway", {**DASK, "app.kubernetes.io/component": "gateway"}, "10.0.3.2"),
    "controller": Pod(
        "controller", {**DASK, "app.kubernetes.io/component": "controller"}, "10.0.3.3"
    ),
    "scheduler": Pod(
        "scheduler",
        {
            **CLUSTER,
            "gateway.dask.org/cluster": "a",
            "app.kubernetes.io/component": "dask-scheduler",
        },
        "10.0.6.1",
    ),
    "worker": Pod(
        "worker",
        {**CLUSTER, "gateway.dask.org/cluster": "a", "app.kubernetes.io/component": "dask-worker"},
        "10.0.6.2",
    ),
    "worker-2": Pod(
        "worker-2",
        {**CLUSTER, "gateway.dask.org/cluster": "a", "app.kubernetes.io/component": "dask-worker"},
        "10.0.6.3",
    ),
    "ingress-controller": Pod(
        "ingress-controller",
        {"app.kubernetes.io/name": "ingress-nginx"},
        "10.0.8.1",
        namespace="ingress-nginx",
        namespace_labels={"kubernetes.io/metadata.name": "ingress-nginx"},
    ),
    "other": Pod("other", {"app": "something-else"}, "10.0.9.9"),
    "other-ns": Pod(
        "other-ns",
        {"app": "x"},
        "10.0.9.10",
        namespace="tenant",
        namespace_labels={"kubernetes.io/metadata.name": "tenant"},
    ),
    "dns": Pod(
        "dns",
        {"k8s-app": "kube-dns"},
        "10.96.0.10",
        namespace="kube-system",
        namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
    ),
}
for _i, _component in enumerate(("api", "portal", "workers", "alerts", "postgresql")):
    PODS[_component] = sciplat_pod(_component, f"10.0.5.{_i + 1}")
INTERNET = Address("internet", "93.184.216.34")
METADATA = Address("metadata", "169.254.169.254")
PRIVATE = Address("private", "192.168.1.20")

SERVICES = ("api", "portal", "workers", "alerts")
EXPECTED = [
    # labs never reach each other, on any port
    ("lab-a", "lab-b", 8888, False),
    ("lab-a", "lab-b", 22, False),
    # labs reach every service, the hub, the proxy, DNS and the internet ...
    *[("lab-a", s, 8080, True) for s in SERVICES],
    ("lab-a", "hub", 8081, True),
    ("lab-a", "proxy", 8000, True),
    ("lab-a", "dns", 53, True),
    ("lab-a", INTERNET, 443, True),
    # ... and dask clusters only through traefik (dask/helm-chart#445)
    ("lab-a", "traefik", 8000, True),
    ("lab-a", "scheduler", 8786, False),
    ("lab-a", "worker", 40000, False),
    # never the database, the cloud metadata server or private networks
    ("lab-a", "postgresql", 5432, False),
    ("lab-a", METADATA, 80, False),
    ("lab-a", PRIVATE, 443, False),
    # into labs: only the hub and the proxy
    ("proxy", "lab-a", 8888, True),
    ("hub", "lab-a", 8888, True),
    *[(s, "lab-a", 8888, False) for s in (*SERVICES, "worker", "scheduler", "other", "traefik")],
    # the proxy routes /services/{api,portal}; alerts and workers get theirs from the Ingress
    *[("proxy", s, 8080, True) for s in SERVICES],
    ("ingress-controller", "alerts", 8080, True),
    ("ingress-controller", "workers", 8080, True),
    ("ingress-controller", "api", 8080, False),  # through the proxy, not around it
    ("ingress-controller", "portal", 8080, False),
    ("ingress-controller", "postgresql", 5432, False),
    *[("other", s, 8080, False) for s in SERVICES],
    *[("other-ns", s, 8080, False) for s in SERVICES],
    # the portal calls the API service (through the proxy, or directly)
    ("portal", "api", 8080, True),
    ("portal", "proxy", 8000, True),
    # dask: traefik -> scheduler (client TLS, dashboard); gateway/controller -> scheduler;
    # schedulers and workers among themselves on any port
    ("traefik", "scheduler", 8786, True),
    ("traefik", "scheduler", 8787, True),
    ("traefik", "worker", 40000, False),
    ("gateway", "scheduler", 8788, True),
    ("controller", "scheduler", 8788, True),
    ("scheduler", "worker", 40000, True),
    ("worker", "scheduler", 8786, True),
    ("worker", "worker-2", 40001, True),
    ("other", "scheduler", 8786, False),
    ("other", "worker", 40000, False),
    ("other-ns", "worker", 40000, False),
    # dask pods run user code: services yes (with a token), the database no
    ("worker", "api", 8080, True),
    ("worker", "postgresql", 5432, False),
    # the database: the hub and sciplat's services only
    *[(s, "postgresql", 5432, True) for s in (*SERVICES, "hub")],
    ("other", "postgresql", 5432, False),
    ("proxy", "postgresql", 5432, False),
]


@pytest.fixture(scope="module")
def policies(rendered) -> list[dict]:
    return find(rendered["large"], "NetworkPolicy")


@pytest.mark.parametrize(
    ("src", "dst", "port", "ok"),
    EXPECTED,
    ids=[f"{s}->{d if isinstance(d, str) else d.name}:{p}" for s, d, p, _ in EXPECTED],
)
def test_who_reaches_whom(policies, src, dst, port, ok):
    target = PODS[dst] if isinstance(dst, str) else dst
    assert allowed(policies, PODS[src], target, port) is ok


def test_every_service_pod_is_selected_by_a_policy(policies):
    """A pod no policy selects is open to everyone: none of ours may be."""
    from netpolicy import _selected

    for name in (*SERVICES, "postgresql", "lab-a", "scheduler", "worker"):
        assert any(_selected(p, PODS[name]) for p in policies), name


def test_ingress_controller_peers_are_configurable(rendered):
    values = values_of("large")
    values["networkPolicy"] = {
        "ingressControllerPeers": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}
        ]
    }
    from sciplat.helmchart import manifests, render

    policies = find(manifests(render(values)), "NetworkPolicy")
    traefik_ingress = Pod(
        "t",
        {"app": "traefik"},
        "10.0.8.2",
        namespace="traefik",
        namespace_labels={"kubernetes.io/metadata.name": "traefik"},
    )
    assert allowed(policies, traefik_ingress, PODS["alerts"], 8080)
    assert not allowed(policies, PODS["ingress-controller"], PODS["alerts"], 8080)


def test_z2jh_policies_let_hub_and_proxy_reach_the_gateway_and_services():
    """dask/helm-chart#445: z2jh's own policies drop hub/proxy -> traefik unless allowed."""
    values = values_of("minimal")
    with helm_python.Chart.load(CHART_DIR) as chart:
        jh = chart.merge_values(values)["jupyterhub"]
    z2jh = [
        {
            "metadata": {},
            "spec": {
                "podSelector": {"matchLabels": PODS[n].labels},
                "policyTypes": ["Egress"],
                "egress": rules,
            },
        }
        for n, rules in (
            ("hub", jh["hub"]["networkPolicy"]["egress"]),
            ("proxy", jh["proxy"]["chp"]["networkPolicy"]["egress"]),
        )
    ]
    assert allowed(z2jh, PODS["hub"], PODS["traefik"], 8000)
    assert allowed(z2jh, PODS["proxy"], PODS["traefik"], 8000)
    for service in SERVICES:
        assert allowed(z2jh, PODS["proxy"], PODS[service], 8080)
    assert not allowed(z2jh, PODS["proxy"], PODS["postgresql"], 5432)
    assert jh["singleuser"]["networkPolicy"]["enabled"] is False  # ours replaces it
    assert jh["hub"]["db"]["type"] == "postgres"
    assert "configure_kubernetes" in jh["hub"]["extraConfig"]["10-sciplat"]
