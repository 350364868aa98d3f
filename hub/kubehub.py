"""Hub and gateway configuration for the Kubernetes shape (the Helm chart's ``extraConfig``).

z2jh's ``jupyterhub_config.py`` sets up the proxy, the hub database, KubeSpawner's labels and
scheduling; then ``hub.extraConfig`` calls :func:`configure_kubernetes`, which makes the hub a
sciplat hub from the same ``settings.json`` the chart renders from ``values.sciplat`` (mounted
at ``/etc/sciplat``): SciplatSpawner with the ``kubernetes`` backend, groups -> roles and
scopes, the authenticator, named servers, culling and the lab environment for dask-gateway.

The dask-gateway chart's ``gateway.extraConfig`` calls :func:`configure_gateway`: the same
per-group options and limits as on one machine (:func:`sciplat.hub.gateway.options
.cluster_options`), mapped onto dask-gateway's Kubernetes backend, with the lab image as the
scheduler and worker image.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from traitlets.config import Config

from sciplat.config import KNOWN_SCOPES, Settings

__all__ = ["configure_gateway", "configure_kubernetes", "gateway_lab_environment"]

GiB = 2**30
log = logging.getLogger("sciplat.hub")
GATEWAY_PREFIX = "/services/dask-gateway"


def _read_settings(settings_dir: Path) -> Settings:
    return Settings.model_validate_json((settings_dir / "settings.json").read_text())


def _backend_config(c: Any, settings_dir: Path) -> Path:
    """kubernetes.json (the chart's ``labs:``) plus what z2jh put into ``c.KubeSpawner``."""
    traits = json.loads((settings_dir / "kubernetes.json").read_text())
    kube = c.KubeSpawner
    labels = {"hub.jupyter.org/network-access-hub": "true"}
    labels.update(kube.get("extra_labels") or {})
    traits.update(
        common_labels=dict(kube.get("common_labels") or {}),
        extra_labels=labels,
        namespace=kube.get("namespace") or os.environ.get("POD_NAMESPACE", "default"),
    )
    for name in ("scheduler_name", "priority_class_name", "image_pull_policy"):
        if kube.get(name):
            traits.setdefault(name, kube[name])
    if kube.get("image_pull_secrets"):
        traits["image_pull_secrets"] = sorted(
            {*traits.get("image_pull_secrets", []), *kube["image_pull_secrets"]}
        )
    if kube.get("tolerations"):
        traits["tolerations"] = [*kube["tolerations"], *traits.get("tolerations", [])]
    # The spawner keys its shared backend on backend_config, so pass one file path.
    path = Path(tempfile.gettempdir()) / "sciplat-kubernetes-backend.json"
    path.write_text(json.dumps(traits, indent=2, sort_keys=True))
    return path


def gateway_lab_environment(settings: Settings, release: str, namespace: str) -> dict[str, str]:
    """``DASK_GATEWAY__*`` for labs: API through the hub's proxy, schedulers via traefik."""
    traefik = f"traefik-{release}-dask-gateway.{namespace}"
    return {
        "DASK_GATEWAY__ADDRESS": f"http://proxy-public.{namespace}{GATEWAY_PREFIX}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{traefik}:80",
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"{settings.public_url}{GATEWAY_PREFIX}",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
        "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
    }


def configure_kubernetes(c: Any, settings_dir: str | os.PathLike[str] = "/etc/sciplat") -> None:
    """Make the z2jh hub in *c* a sciplat hub (called from ``hub.extraConfig``)."""
    from sciplat.hub import hubconfig
    from sciplat.hub.auth import configure_auth

    settings_dir = Path(settings_dir)
    settings = _read_settings(settings_dir)

    c.JupyterHub.spawner_class = "sciplat.hub.spawner.SciplatSpawner"
    c.JupyterHub.public_url = settings.public_url
    c.JupyterHub.template_vars = {"sciplat_public_url": settings.public_url}
    c.SciplatSpawner.settings_file = str(settings_dir / "settings.json")
    c.SciplatSpawner.backend = "kubernetes"
    c.SciplatSpawner.backend_config = {"config_file": str(_backend_config(c, settings_dir))}
    datasets = settings_dir / "datasets.json"
    if datasets.exists():
        c.SciplatSpawner.datasets = json.loads(datasets.read_text())
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = settings.hub.start_timeout
    c.Spawner.http_timeout = max(settings.hub.start_timeout // 4, 30)
    c.Spawner.server_token_scopes = [*hubconfig.LAB_TOKEN_BASE_SCOPES, *sorted(KNOWN_SCOPES)]
    c.Spawner.oauth_client_allowed_scopes = sorted(KNOWN_SCOPES)
    c.JupyterHub.allow_named_servers = True
    # SciplatSpawner limits running named servers per the groups' quotas (as on one machine).
    c.JupyterHub.named_server_limit_per_user = 0
    # Each poll of a running lab is one API call; 3000 labs at the default 30 s is 100/s.
    c.Spawner.poll_interval = 90
    # Activity writes are what loaded the RSP's hub database: report every 5 minutes.
    c.JupyterHub.last_activity_interval = 300
    c.JupyterHub.activity_resolution = 600

    # Groups -> roles and custom scopes, exactly as on one machine (minus the local CLI role).
    scratch = Config()
    hubconfig._configure_groups_and_roles(scratch, settings)
    c.JupyterHub.custom_scopes = scratch.JupyterHub.custom_scopes
    c.JupyterHub.load_groups = scratch.JupyterHub.load_groups
    roles = [r for r in scratch.JupyterHub.load_roles if r["name"] != hubconfig.CLI_SERVICE]
    c.JupyterHub.load_roles = [*(c.JupyterHub.get("load_roles") or []), *roles]

    configure_auth(c, settings)
    _configure_culler(c, settings)
    _withhold_unsafe_scopes(c, settings_dir)

    release = os.environ.get("HELM_RELEASE_NAME", "")
    namespace = os.environ.get("POD_NAMESPACE", "default")
    services = _deployed(c.JupyterHub.get("services") or [], settings_dir)
    _configure_portal(c, settings, settings_dir, services)
    for service in services:
        if service.get("name") == "dask-gateway" and not service.get("url") and release:
            service["url"] = f"http://traefik-{release}-dask-gateway.{namespace}"
    c.JupyterHub.services = services
    # singleuser.extraEnv lands on KubeSpawner, which SciplatSpawner is not: carry it over.
    if c.KubeSpawner.get("environment"):
        c.Spawner.environment.update(c.KubeSpawner["environment"])
    if release and any(s.get("name") == "dask-gateway" for s in services):
        c.Spawner.environment.update(gateway_lab_environment(settings, release, namespace))


def _withhold_unsafe_scopes(c: Any, settings_dir: Path) -> None:
    """Withhold ``custom:notebooks:exec`` unless the chart's ``policy.json`` allows it.

    On Kubernetes a notebook run is a child process of a service pod (its uid, its hub token,
    database password and S3 keys in reach), so granting the scope is the operator's explicit
    choice (``notebookExecution.allowInServicePods``), not a default.
    """
    path = settings_dir / "policy.json"
    policy = json.loads(path.read_text()) if path.exists() else {}
    if policy.get("notebook_exec", False):
        return
    scope = "custom:notebooks:exec"
    withheld = []
    for role in c.JupyterHub.get("load_roles") or []:
        if scope in role.get("scopes", []):
            role["scopes"] = [s for s in role["scopes"] if s != scope]
            withheld.append(role["name"])
    c.Spawner.server_token_scopes = [s for s in c.Spawner.server_token_scopes if s != scope]
    c.Spawner.oauth_client_allowed_scopes = [
        s for s in c.Spawner.oauth_client_allowed_scopes if s != scope
    ]
    if withheld:
        log.warning(
            "%s withheld from roles %s: notebook runs would share a service pod's uid and "
            "credentials; set notebookExecution.allowInServicePods to grant it",
            scope,
            ", ".join(withheld),
        )


def _deployed(services: list[dict[str, Any]], settings_dir: Path) -> list[dict[str, Any]]:
    """z2jh's ``hub.services`` minus sciplat components this release does not deploy.

    The jupyterhub values cannot follow ``portal.enabled``; the chart's ``components.json``
    does, so a disabled portal is neither registered nor offered to users.
    """
    path = settings_dir / "components.json"
    if not path.exists():
        return services
    components = json.loads(path.read_text())
    return [s for s in services if components.get(s.get("name"), True)]


def _configure_portal(
    c: Any, settings: Settings, settings_dir: Path, services: list[dict[str, Any]]
) -> None:
    """The portal behind the hub's OAuth login, exactly as on one machine.

    :func:`sciplat.services.portal.hubconf.configure` runs on a scratch configuration whose
    run directory holds the chart's channel key; its OAuth scopes, access role and lab
    environment are carried over onto z2jh's service entry (which has the URL and the token).
    """
    from sciplat.services.portal import hubconf as portal_hubconf

    portal = next((s for s in services if s.get("name") == portal_hubconf.SERVICE_NAME), None)
    if portal is None:
        return
    key = settings_dir / "portal-channel-secret"
    if not key.exists():
        raise FileNotFoundError(f"{key}: the chart's settings Secret has no portal channel key")
    scratch = Config()
    scratch.JupyterHub.services = []
    scratch.JupyterHub.load_roles = []
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp)})
        local.run_dir.mkdir(parents=True)
        (local.run_dir / "portal-channel-secret").write_text(key.read_text().strip())
        portal_hubconf.configure(scratch, local)
    (entry,) = scratch.JupyterHub.services
    for name in ("display", "oauth_no_confirm", "oauth_client_allowed_scopes"):
        portal[name] = entry[name]
    c.JupyterHub.load_roles = [
        *(c.JupyterHub.get("load_roles") or []),
        *scratch.JupyterHub.load_roles,
    ]
    c.Spawner.environment.update(scratch.Spawner.environment.get_value({}))


def _configure_culler(c: Any, settings: Settings) -> None:
    from sciplat.hub.hubconfig import CULLER_SCOPES, CULLER_SERVICE

    cull = settings.hub.cull
    if not cull.enabled:
        return
    command = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        "--url=http://localhost:8081/hub/api",
        f"--timeout={cull.timeout}",
        f"--cull-every={cull.every}",
    ]
    if cull.max_age:
        command.append(f"--max-age={cull.max_age}")
    services = c.JupyterHub.get("services") or []
    services.append({"name": CULLER_SERVICE, "command": command, "display": False})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = [
        *(c.JupyterHub.get("load_roles") or []),
        {"name": CULLER_SERVICE, "scopes": CULLER_SCOPES, "services": [CULLER_SERVICE]},
    ]


def configure_gateway(c: Any, settings: Settings | None = None) -> None:
    """dask-gateway's Kubernetes backend with sciplat's per-group options and limits.

    *settings* defaults to ``$SCIPLAT_SETTINGS_JSON`` (the chart passes the settings Secret).
    """
    from dask_gateway_server.options import Options

    from sciplat.hub.gateway.options import cluster_options
    from sciplat.hub.options import effective_quota

    if settings is None:
        settings = Settings.model_validate_json(os.environ["SCIPLAT_SETTINGS_JSON"])
    gw = settings.gateway
    local_options = cluster_options(settings)
    recommended = next(i for i in settings.images if i.tag == "recommended")

    def container_image(name: str) -> str:
        image = settings.image(name)
        if not image.container_image:
            raise ValueError(f"image {name!r} has no container image for Kubernetes")
        return image.container_image

    def kube_handler(options: Any, user: Any) -> dict[str, Any]:
        quota = effective_quota(settings, user.groups, admin=user.admin)
        memory = int(options.worker_memory * GiB)
        return {
            "image": container_image(options.image),
            "worker_cores": options.worker_cores,
            "worker_cores_limit": options.worker_cores,
            "worker_threads": options.worker_cores,
            "worker_memory": memory,
            "worker_memory_limit": memory,
            "scheduler_cores": 1,
            "scheduler_cores_limit": 1,
            "scheduler_memory": gw.scheduler_memory,
            "scheduler_memory_limit": gw.scheduler_memory,
            "idle_timeout": float(options.idle_timeout),
            "cluster_max_cores": float(quota.dask_cores),
            "cluster_max_memory": quota.dask_memory,
            "cluster_max_workers": quota.dask_workers,
        }

    def for_user(user: Any) -> Options:
        options = local_options(user)
        if not options.fields:  # no quota: keep the refusing handler and its message
            return options
        return Options(*options.fields, handler=kube_handler)

    c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
    c.Backend.cluster_options = for_user
    c.KubeClusterConfig.image = recommended.container_image
    c.KubeClusterConfig.idle_timeout = float(gw.idle_timeout)
    pod_security = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    }
    container_security = {
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    }
    c.KubeClusterConfig.scheduler_extra_pod_config = pod_security
    c.KubeClusterConfig.worker_extra_pod_config = pod_security
    c.KubeClusterConfig.scheduler_extra_container_config = container_security
    c.KubeClusterConfig.worker_extra_container_config = container_security
