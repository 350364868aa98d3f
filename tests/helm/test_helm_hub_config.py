"""What the chart's extraConfig does inside the hub and the gateway pods (no cluster needed).

The hub side runs :func:`configure_kubernetes` on a traitlets Config laid out as z2jh's own
``jupyterhub_config.py`` leaves it, with the settings the chart rendered; the gateway side
runs :func:`configure_gateway` and drives the resulting per-user options the way
dask-gateway does (``parse_options`` then ``get_configuration``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from chartdocs import one
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from traitlets.config import Config

from sciplat.helmchart import rendered_settings
from sciplat.hub.backends.kubernetes import KubernetesBackend
from sciplat.hub.kubehub import configure_gateway, configure_kubernetes

GiB = 2**30


def settings_dir(docs: list[dict], path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    data = one(docs, "Secret", "sciplat-settings")["stringData"]
    for key in (
        "settings.json",
        "kubernetes.json",
        "datasets.json",
        "components.json",
        "policy.json",
        "portal-channel-secret",
    ):
        (path / key).write_text(data[key])
    return path


def z2jh_config() -> Config:
    """What z2jh's jupyterhub_config.py has set when hub.extraConfig runs."""
    c = Config()
    c.KubeSpawner.common_labels = {
        "app": "jupyterhub",
        "release": "sciplat",
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    c.KubeSpawner.extra_labels = {"hub.jupyter.org/network-access-hub": "true"}
    c.KubeSpawner.namespace = "sciplat"
    c.KubeSpawner.scheduler_name = "user-scheduler"
    c.KubeSpawner.priority_class_name = "sciplat-default-priority"
    c.KubeSpawner.image_pull_secrets = ["regcred"]
    c.KubeSpawner.environment = {"EXTRA": "from singleuser.extraEnv"}
    c.JupyterHub.services = [
        {"name": "api", "url": "http://sciplat-api:8080", "api_token": "t1"},
        {"name": "portal", "url": "http://sciplat-portal:8080", "api_token": "t3"},
        {"name": "dask-gateway", "display": False, "api_token": "t2"},
    ]
    c.JupyterHub.load_roles = []
    return c


def test_hub_becomes_a_sciplat_hub(rendered, tmp_path, monkeypatch):
    monkeypatch.setenv("HELM_RELEASE_NAME", "sciplat")
    monkeypatch.setenv("POD_NAMESPACE", "sciplat")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    sdir = settings_dir(rendered["large"], tmp_path)
    production = one(rendered["production"], "Secret", "sciplat-settings")["stringData"]
    (sdir / "datasets.json").write_text(production["datasets.json"])
    c = z2jh_config()
    configure_kubernetes(c, sdir)

    assert c.JupyterHub.spawner_class == "sciplat.hub.spawner.SciplatSpawner"
    assert c.SciplatSpawner.backend == "kubernetes"
    assert c.SciplatSpawner.settings_file == str(sdir / "settings.json")
    assert c.Spawner.start_timeout == 600
    assert c.Spawner.poll_interval == 90 and c.JupyterHub.last_activity_interval == 300
    assert c.JupyterHub.public_url == "https://dac.example.org"
    # the discovery document lists the object-store Butler repository
    assert c.SciplatSpawner.datasets == {
        "dp-small": {"size": "small", "butler_repo": "s3://butler/dp1"}
    }

    # The backend sees the chart's labs: section plus z2jh's labels and scheduling.
    backend = KubernetesBackend(**c.SciplatSpawner.backend_config)
    assert backend.home_storage == "nfs"
    assert backend.home_nfs == {"server": "nfs.dac.example.org", "path": "/export/home"}
    assert backend.group_volumes["survey"]["readOnly"] is True
    assert backend.common_labels["release"] == "sciplat"
    assert backend.scheduler_name == "user-scheduler"
    assert backend.priority_class_name == "sciplat-default-priority"
    assert backend.image_pull_secrets == ["regcred"]
    assert backend.namespace == "sciplat"

    # Groups -> roles with their scopes, z2jh's services kept, the gateway wired.
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["group-staff"]["groups"] == ["staff"]
    assert "access:services!service=dask-gateway" in roles["group-users"]["scopes"]
    assert "sciplat-cli" not in roles
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["api"]["url"] == "http://sciplat-api:8080"
    assert services["dask-gateway"]["url"] == "http://traefik-sciplat-dask-gateway.sciplat"
    assert "idle-culler" in services and "idle-culler" in roles
    env = c.Spawner.environment.get_value({})  # a lazy update, as traitlets applies it
    assert env["EXTRA"] == "from singleuser.extraEnv"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://traefik-sciplat-dask-gateway.sciplat:80"
    assert env["DASK_GATEWAY__PUBLIC_ADDRESS"] == "https://dac.example.org/services/dask-gateway"
    assert "custom:tap:read" in c.JupyterHub.custom_scopes
    assert c.JupyterHub.authenticator_class  # native sign-up on the large values


def gateway_user(*groups: str) -> NS:
    return NS(name="alice", groups=set(groups), admin=False)


def test_gateway_options_follow_group_quotas_with_the_lab_image(rendered):
    settings = rendered_settings(rendered["large"])
    c = Config()
    configure_gateway(c, settings)
    assert c.DaskGateway.backend_class.endswith("kubernetes.KubeBackend")
    assert c.KubeClusterConfig.image == "ghcr.io/sciplat/lab:recommended"

    options = c.Backend.cluster_options(gateway_user("staff"))
    assert [f.field for f in options.fields] == [
        "image",
        "worker_cores",
        "worker_memory",
        "idle_timeout",
    ]
    user = gateway_user("staff")
    parsed = options.parse_options({"image": "w_2026_47", "worker_cores": 4, "worker_memory": 16})
    conf = options.get_configuration(parsed, user)
    assert conf["image"] == "ghcr.io/sciplat/lab:w_2026_47"
    assert conf["cluster_max_cores"] == 64 and conf["cluster_max_workers"] == 32
    assert conf["cluster_max_memory"] == 256 * GiB
    assert conf["worker_memory"] == conf["worker_memory_limit"] == 16 * GiB
    cluster = KubeClusterConfig(**conf)  # the Kubernetes backend accepts every key
    assert cluster.image == "ghcr.io/sciplat/lab:w_2026_47"
    assert cluster.worker_cores_limit == 4

    small = c.Backend.cluster_options(gateway_user("users"))
    with pytest.raises(ValueError, match="above your limit"):
        small.parse_options({"worker_cores": 16})
    with pytest.raises(ValueError, match="unknown image"):
        small.parse_options({"image": "evil/miner"})


def test_gateway_refuses_users_without_quota(rendered):
    c = Config()
    configure_gateway(c, rendered_settings(rendered["large"]))
    options = c.Backend.cluster_options(gateway_user())
    with pytest.raises(ValueError, match="no batch-compute quota"):
        options.get_configuration({}, gateway_user())


def test_gateway_reads_settings_from_the_environment(rendered, monkeypatch):
    data = one(rendered["minimal"], "Secret", "sciplat-settings")["stringData"]
    monkeypatch.setenv("SCIPLAT_SETTINGS_JSON", data["settings.json"])
    c = Config()
    configure_gateway(c)
    assert (
        c.KubeClusterConfig.image
        == json.loads(data["settings.json"])["images"][0]["container_image"]
    )


def test_portal_is_registered_behind_the_hub_oauth_as_on_one_machine(rendered, tmp_path):
    from sciplat.services.portal.channels import ChannelSigner
    from sciplat.services.portal.hubconf import TOKEN_SCOPES

    docs = rendered["large"]
    sdir = settings_dir(docs, tmp_path)
    c = z2jh_config()
    configure_kubernetes(c, sdir)
    portal = {s["name"]: s for s in c.JupyterHub.services}["portal"]
    # z2jh's entry keeps its URL and token; the OAuth client gets the portal's scopes
    assert portal["url"] == "http://sciplat-portal:8080" and portal["api_token"] == "t3"
    assert portal["oauth_client_allowed_scopes"] == TOKEN_SCOPES
    assert portal["oauth_no_confirm"] is True and "command" not in portal
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["portal-access"]["scopes"] == ["access:services!service=portal"]
    assert sorted(roles["portal-access"]["groups"]) == ["staff", "users"]  # not "survey"
    env = c.Spawner.environment.get_value({})
    assert env["FIREFLY_URL"] == "https://dac.example.org/services/portal"
    # a lab's channel is signed with the key the portal pod mounts from the same Secret
    channel = env["FIREFLY_CHANNEL"](NS(user=NS(name="alice")))
    key = one(docs, "Secret", "sciplat-settings")["stringData"]["portal-channel-secret"]
    assert len(key) >= 32
    assert ChannelSigner(key).user_of(channel) == "alice"
    assert ChannelSigner("another key").user_of(channel) is None


def test_components_the_release_does_not_deploy_are_not_registered(rendered, tmp_path):
    sdir = settings_dir(rendered["minimal"], tmp_path)
    (sdir / "components.json").write_text(
        json.dumps({"api": True, "portal": False, "workers": False, "alerts": True})
    )
    c = z2jh_config()
    configure_kubernetes(c, sdir)
    assert [s["name"] for s in c.JupyterHub.services if s["name"] != "idle-culler"] == [
        "api",
        "dask-gateway",
    ]
    assert "portal-access" not in {r["name"] for r in c.JupyterHub.load_roles}
    assert "FIREFLY_URL" not in c.Spawner.environment.get_value({})


def test_notebook_execution_is_withheld_unless_the_operator_accepts_the_risk(
    rendered, tmp_path, caplog
):
    scope = "custom:notebooks:exec"
    # defaults: every group would hold it (as on one machine) ...
    minimal = settings_dir(rendered["minimal"], tmp_path / "minimal")
    assert any(scope in g.scopes for g in rendered_settings(rendered["minimal"]).groups.values())
    c = z2jh_config()
    with caplog.at_level("WARNING", logger="sciplat.hub"):
        configure_kubernetes(c, minimal)
    # ... but on Kubernetes no role, lab token or OAuth client gets it
    for role in c.JupyterHub.load_roles:
        assert scope not in role.get("scopes", []), role["name"]
    assert scope not in c.Spawner.server_token_scopes
    assert scope not in c.Spawner.oauth_client_allowed_scopes
    assert "custom:tap:read" in c.Spawner.server_token_scopes
    assert "notebookExecution.allowInServicePods" in caplog.text

    # large-values accepts it explicitly: the groups' scopes stand
    large = settings_dir(rendered["large"], tmp_path / "large")
    c = z2jh_config()
    configure_kubernetes(c, large)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert scope in roles["group-users"]["scopes"]
    assert scope not in roles["group-survey"]["scopes"]  # the group never had it
    assert scope in c.Spawner.server_token_scopes
