"""The Kubernetes backend: labs as pods, built with KubeSpawner's own object builders.

What the spawner validated (image from the catalogue, size within the user's quota, reset) is
turned into a pod (:func:`kubespawner.objects.make_pod`), a per-user home PVC
(:func:`kubespawner.objects.make_pvc`) and a per-lab Secret holding the lab's token and
discovery document. The pod runs as the user's own uid/gid, non-root, with no capabilities.

UID mapping: ``uid = gid = uid_offset + <hub user id>`` (the hub's database id never changes
for a user), unless :attr:`KubernetesBackend.uid_map` names the user (e.g. uids from LDAP) or
the spawner passes ``LabSpec.extra["uid"]``. Group shared volumes carry their own gid, added as
a supplemental group of members only.

Progress events relay the pod's real state (scheduling, image pulls, the scheduler's message),
and a start fails at once with the cause when the image cannot be pulled, when the size fits
on no node, or when the lab container dies - never with a bare timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubespawner.objects import make_pod, make_pvc
from kubespawner.slugs import multi_slug, safe_slug
from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Float, Integer, List, Set, Unicode, default

from sciplat.hub.backends import LabSpec, ProgressFn, SpawnerBackend
from sciplat.hub.errors import LabStartError, SciplatSpawnError

__all__ = ["IMAGE_PULL_FATAL", "KubernetesBackend", "PodEvent", "manifest", "parse_quantity"]

#: Container waiting reasons after which waiting longer cannot help.
IMAGE_PULL_FATAL = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
#: Registry answers inside an ErrImagePull message that mean the image does not exist.
IMAGE_MISSING_HINTS = (
    "not found",
    "manifest unknown",
    "repository does not exist",
    "pull access denied",
    "unauthorized",
    "403 forbidden",
)
CONTAINER_FATAL = frozenset(
    {"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
SECRET_MOUNT = "/etc/sciplat/lab"
_UNITS = {
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "m": 1e-3,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``"3800m"``, ``"16Gi"``, ``"2"``) as a number."""
    text = str(value).strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * _UNITS[suffix]
    return float(text)


def manifest(obj: Any) -> Any:
    """A kubernetes_asyncio model (V1Pod, ...) as the JSON-able dict the API server receives."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, list | tuple):
        return [manifest(o) for o in obj]
    if isinstance(obj, dict):
        return {k: manifest(v) for k, v in obj.items()}
    if hasattr(obj, "openapi_types"):
        return {
            obj.attribute_map[attr]: manifest(getattr(obj, attr))
            for attr in obj.openapi_types
            if getattr(obj, attr) is not None
        }
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _gib(n: float) -> str:
    return f"{n / 2**30:g} GiB"


@dataclass(frozen=True)
class _Response:
    """What ``ApiClient.deserialize`` reads from a response: its body."""

    data: str


@dataclass(frozen=True)
class PodEvent:
    """The fields of a Kubernetes Event the backend reads (from a watch's raw JSON)."""

    uid: str
    reason: str
    message: str
    type: str = "Normal"
    last_timestamp: str = ""

    @classmethod
    def from_dict(cls, event: dict[str, Any]) -> PodEvent:
        return cls(
            uid=event["metadata"].get("uid", ""),
            reason=event.get("reason") or "",
            message=event.get("message") or "",
            type=event.get("type") or "Normal",
            last_timestamp=event.get("lastTimestamp") or event.get("eventTime") or "",
        )


def _event_uid(event: Any) -> str | None:
    return getattr(event, "uid", None) or getattr(getattr(event, "metadata", None), "uid", None)


def _event_key(event: Any) -> str:
    """One event: its uid (events repeat with a count), else its reason and message."""
    return _event_uid(event) or f"{event.reason}:{event.message}"


class KubernetesBackend(SpawnerBackend):
    """Labs as Kubernetes pods (one per user and server) with a per-user home PVC."""

    namespace = Unicode(
        help="""Namespace of the lab pods; default ``$POD_NAMESPACE`` (set in the hub pod by
        the chart), else ``default``.""",
    ).tag(config=True)

    @default("namespace")
    def _default_namespace(self) -> str:
        return os.environ.get("POD_NAMESPACE", "default")

    uid_offset = Integer(
        100000,
        help="""uid (and primary gid) of a user is ``uid_offset + <hub user id>``.

        Choose a range no image user and no NFS export uses. Example::

            c.KubernetesBackend.uid_offset = 200000
        """,
    ).tag(config=True)

    uid_map = Dict(
        help="""Explicit ``username -> uid`` (e.g. from LDAP); wins over ``uid_offset``.""",
    ).tag(config=True)

    port = Integer(8888, help="Port the lab listens on inside its pod.").tag(config=True)

    cmd = List(
        Unicode(),
        ["python", "-m", "jupyterhub.singleuser"],
        help="Command starting the lab inside the image (before the spawner's arguments).",
    ).tag(config=True)

    host_env_keys = Set(
        Unicode(),
        {"PATH", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"},
        help="""Environment entries describing the hub's own machine, dropped from the lab's
        environment (the image sets its own).""",
    ).tag(config=True)

    home_mount_path = Unicode(
        "/home/{username}", help="Where the home volume is mounted; ``{username}`` is expanded."
    ).tag(config=True)

    home_storage = Unicode(
        "pvc",
        help="""``pvc``: one PersistentVolumeClaim per user (``home-<user>``), sized from the
        user's disk quota. ``nfs``: a subdirectory ``<user>`` of :attr:`home_nfs`.""",
    ).tag(config=True)

    home_capacity = Unicode(
        "10Gi", help="PVC size when the spawner does not pass the user's disk quota."
    ).tag(config=True)

    storage_class = Unicode(
        None, allow_none=True, help="StorageClass of home PVCs (None: the cluster default)."
    ).tag(config=True)

    storage_access_modes = List(
        Unicode(), ["ReadWriteOnce"], help="Access modes of home PVCs."
    ).tag(config=True)

    home_nfs = Dict(
        help="""NFS export of homes for ``home_storage = "nfs"``:
        ``{"server": "nfs.example.org", "path": "/export/home"}``.""",
    ).tag(config=True)

    group_volumes = Dict(
        help="""Shared volumes of groups: ``{group: {"volume": <k8s volume source>, "gid": int,
        "mountPath": "/groups/<group>", "readOnly": false}}``. Mounted only into labs of
        members; ``gid`` becomes a supplemental group of the lab so members can write.

        Example::

            c.KubernetesBackend.group_volumes = {
                "staff": {"volume": {"persistentVolumeClaim": {"claimName": "group-staff"}},
                          "gid": 30001},
            }
        """,
    ).tag(config=True)

    extra_volumes = List(Dict(), help="Volumes every lab gets (e.g. the data preview).").tag(
        config=True
    )
    extra_volume_mounts = List(Dict(), help="Mounts of :attr:`extra_volumes`.").tag(config=True)

    common_labels = Dict(
        help="""Labels on every object (the chart passes z2jh's: app, release, ...).""",
    ).tag(config=True)

    extra_labels = Dict(
        {"hub.jupyter.org/network-access-hub": "true"},
        help="""Labels on lab pods only; network policies select labs by these.""",
    ).tag(config=True)

    component_label = Unicode("singleuser-server", help="Value of the ``component`` label.").tag(
        config=True
    )

    image_pull_policy = Unicode("IfNotPresent", help="Pull policy of lab images.").tag(config=True)
    image_pull_secrets = List(help="Names of Secrets for private registries.").tag(config=True)
    node_selector = Dict(help="Node labels lab pods require.").tag(config=True)
    tolerations = List(Dict(), help="Tolerations of lab pods.").tag(config=True)
    priority_class_name = Unicode("", help="PriorityClass of lab pods.").tag(config=True)
    scheduler_name = Unicode("", help="Scheduler of lab pods (z2jh's user-scheduler).").tag(
        config=True
    )

    cpu_guarantee_fraction = Float(
        0.25, help="CPU request as a fraction of the size's CPU limit (labs are mostly idle)."
    ).tag(config=True)
    mem_guarantee_fraction = Float(
        1.0, help="Memory request as a fraction of the limit (1.0: never overcommit memory)."
    ).tag(config=True)

    check_node_fit = Bool(
        True,
        help="""Refuse a size no node could ever hold (needs ``list nodes``; skipped with a
        warning when the hub may not list nodes).""",
    ).tag(config=True)

    max_node_resources = Dict(
        help="""Allocatable CPU and memory of the largest node labs may run on, e.g.
        ``{"cpu": 16, "memory": "64Gi"}`` (the chart's ``labs.largestNode``). When set, a size
        whose CPU or memory limit exceeds it is refused at spawn without asking the API server
        (no ``list nodes`` permission needed, one API call less per spawn), and an autoscaled
        pool whose nodes are not up yet is judged by the node shape it will add. Empty: the
        nodes are listed (:attr:`check_node_fit`).

        Example::

            c.KubernetesBackend.max_node_resources = {"cpu": 16, "memory": "64Gi"}
        """,
    ).tag(config=True)

    unschedulable_timeout = Float(
        120.0,
        help="""Seconds a pod may stay unschedulable (with no cluster-autoscaler scale-up under
        way) before the start fails with the scheduler's reason.""",
    ).tag(config=True)

    poll_interval = Float(
        1.0,
        help="""Seconds before the first pod status read during a start; later reads back off
        by 1.5x up to :attr:`max_poll_interval` (each starting lab costs API calls).""",
    ).tag(config=True)
    max_poll_interval = Float(
        5.0, help="Longest pause between pod status reads during a start."
    ).tag(config=True)
    stop_grace_seconds = Integer(5, help="Grace period of a stopping lab.").tag(config=True)

    k8s_api_host = Unicode(
        "",
        help="""Address of the Kubernetes API server; empty: the in-cluster configuration (or
        ``$KUBECONFIG``), as KubeSpawner's ``k8s_api_host``.""",
    ).tag(config=True)

    watch_pods = Bool(
        True,
        help="""Read lab pods' status from KubeSpawner's ``PodReflector`` (one watch on lab
        pods in the namespace) instead of one API read per status check of a starting lab and
        per poll of a running one. Not used with :attr:`api_factory`.""",
    ).tag(config=True)

    watch_events = Bool(
        True,
        help="""Follow lab pods' events with KubeSpawner's ``EventReflector``: one watch on pod
        events in the namespace, shared by every start, instead of listing a starting pod's
        events at each status read (each list is an API call; thousands of starting labs make
        that the control plane's load). Not used with :attr:`api_factory`.""",
    ).tag(config=True)

    api_factory = AnyTrait(
        help="""Callable returning a ``kubernetes_asyncio.client.CoreV1Api``-like object.
        Default: in-cluster configuration. Tests pass a fake of the API boundary.""",
    ).tag(config=True)

    config_file = Unicode(
        "",
        help="""JSON file of trait values (``{"uid_offset": 200000, ...}``), applied after the
        constructor's; the Helm chart writes it from ``values.labs``. Unknown names fail.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api: Any = None
        self._reflectors: dict[str, Any] = {}
        self._reflector_lock = asyncio.Lock()
        if self.config_file:
            self._load_config_file(self.config_file)

    def _load_config_file(self, path: str) -> None:
        values = json.loads(Path(path).read_text())
        configurable = self.class_traits(config=True)
        unknown = sorted(set(values) - set(configurable) - {"config_file"})
        if unknown:
            raise ValueError(f"{path}: unknown KubernetesBackend settings {unknown}")
        for name, value in values.items():
            setattr(self, name, value)

    # -- API -----------------------------------------------------------------------------------
    async def api(self) -> Any:
        if self._api is None:
            factory: Callable[[], Any] | None = self.api_factory
            if factory is None:
                from kubespawner.clients import load_config, shared_client

                load_config(host=self.k8s_api_host or None)
                self._api = shared_client("CoreV1Api")
            else:
                self._api = factory()
        return self._api

    async def _reflector(self, kind: str) -> Any:
        """KubeSpawner's reflector (``pods`` or ``events``) for :attr:`namespace`, started once
        and shared by every start and poll; None when the API is read instead (the watch is
        off, a test API, or it could not start - then everything still works, with one API
        call per read)."""
        enabled = self.watch_pods if kind == "pods" else self.watch_events
        if not enabled or self.api_factory is not None:
            return None
        async with self._reflector_lock:
            if kind not in self._reflectors:
                from kubespawner.spawner import EventReflector, PodReflector

                await self.api()  # loads the client configuration the reflector uses
                if kind == "pods":
                    reflector = PodReflector(
                        parent=self,
                        namespace=self.namespace,
                        labels={**self.common_labels, "component": self.component_label},
                        omit_namespace=False,
                        on_failure=lambda: self._reflector_failed("pods"),
                    )
                else:
                    reflector = EventReflector(
                        parent=self,
                        namespace=self.namespace,
                        fields={"involvedObject.kind": "Pod"},
                        omit_namespace=False,
                        on_failure=lambda: self._reflector_failed("events"),
                    )
                try:
                    await reflector.start()
                except Exception as exc:
                    self.log.warning("Cannot watch %s (%s); reading them instead", kind, exc)
                    self._reflector_failed(kind)
                    return None
                self._reflectors[kind] = reflector
            return self._reflectors[kind]

    async def event_reflector(self) -> Any:
        """The shared watch on pod events (None: events are listed)."""
        return await self._reflector("events")

    def _reflector_failed(self, kind: str) -> None:
        self.log.error("The %s watch gave up; reading them from the API from now on", kind)
        self._reflectors.pop(kind, None)
        if kind == "pods":
            self.watch_pods = False
        else:
            self.watch_events = False

    async def _read_pod(
        self, api: Any, name: str, namespace: str | None = None, uid: str | None = None
    ) -> Any:
        """Pod *name* as a V1Pod: from the shared pod watch, else read (one API call).

        A pod the watch has not seen (just created, or gone), or an earlier pod of the same
        name the watch still holds (*uid* differs), is read, so a 404 still means gone and
        nothing is missed while the watch catches up.
        """
        namespace = namespace or self.namespace
        reflector = await self._reflector("pods")
        raw = reflector.pods.get(f"{namespace}/{name}") if reflector is not None else None
        if raw is not None and uid and raw["metadata"].get("uid") != uid:
            raw = None
        if raw is None:
            return await api.read_namespaced_pod(name, namespace)
        return api.api_client.deserialize(_Response(json.dumps(raw)), "V1Pod")

    async def close(self) -> None:
        """Stop the shared watches (hub shutdown, tests)."""
        for reflector in list(self._reflectors.values()):
            await reflector.stop()
        self._reflectors.clear()

    # -- names and identity --------------------------------------------------------------------
    def pod_name(self, spec: LabSpec) -> str:
        return (
            multi_slug(["lab", spec.username, spec.server_name])
            if spec.server_name
            else f"lab-{safe_slug(spec.username, max_length=50)}"
        )

    def pvc_name(self, username: str) -> str:
        return f"home-{safe_slug(username, max_length=50)}"

    def uid_for(self, spec: LabSpec) -> int:
        """The user's uid (== primary gid); see the module docstring for the mapping."""
        if spec.username in self.uid_map:
            return int(self.uid_map[spec.username])
        if "uid" in spec.extra:
            return int(spec.extra["uid"])
        if "user_id" in spec.extra:
            return self.uid_offset + int(spec.extra["user_id"])
        raise SciplatSpawnError(
            "Cannot start your lab: no uid is known for you (the hub passed no user id).",
            reason="uid",
            status_code=500,
            log_message=f"LabSpec.extra of {spec.username!r} lacks user_id/uid and uid_map "
            "has no entry",
        )

    def _labels(self, spec: LabSpec) -> dict[str, str]:
        return {
            **self.common_labels,
            "component": self.component_label,
            "hub.jupyter.org/username": safe_slug(spec.username, max_length=63),
            "hub.jupyter.org/servername": safe_slug(spec.server_name or "default", max_length=63),
        }

    # -- manifests -----------------------------------------------------------------------------
    def home_path(self, spec: LabSpec) -> str:
        return self.home_mount_path.format(username=safe_slug(spec.username, max_length=50))

    def build_pvc(self, spec: LabSpec) -> Any:
        """The user's home PVC (None with NFS homes), sized from their disk quota."""
        if self.home_storage != "pvc":
            return None
        disk = spec.extra.get("disk")
        capacity = f"{int(disk) // 2**20}Mi" if disk else self.home_capacity
        labels = {
            **self.common_labels,
            "component": "lab-home",
            "hub.jupyter.org/username": safe_slug(spec.username, max_length=63),
        }
        return make_pvc(
            name=self.pvc_name(spec.username),
            storage_class=self.storage_class,
            access_modes=list(self.storage_access_modes),
            selector=None,
            storage=capacity,
            labels=labels,
            annotations={"hub.jupyter.org/username": spec.username},
        )

    def build_secret(self, spec: LabSpec) -> Any:
        """The lab's token, discovery document and home-preparation request."""
        from kubernetes_asyncio.client import V1ObjectMeta, V1Secret

        token = spec.env.get("JUPYTERHUB_API_TOKEN", "")
        labprep = {
            "home": self.home_path(spec),
            "reset": list(spec.reset_dirs) if spec.options.reset else [],
        }
        data = {
            "token": token,
            "discovery.json": json.dumps(spec.discovery, indent=2),
            "labprep.json": json.dumps(labprep),
        }
        return V1Secret(
            api_version="v1",
            kind="Secret",
            type="Opaque",
            metadata=V1ObjectMeta(name=f"{self.pod_name(spec)}-lab", labels=self._labels(spec)),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        )

    def _volumes(self, spec: LabSpec, groups: list[str]) -> tuple[list, list, list[int]]:
        name = self.pod_name(spec)
        home = self.home_path(spec)
        if self.home_storage == "nfs":
            if not self.home_nfs.get("server"):
                raise SciplatSpawnError(
                    "NFS homes are configured without a server.", reason="config", status_code=500
                )
            home_volume = {
                "name": "home",
                "nfs": {"server": self.home_nfs["server"], "path": self.home_nfs.get("path", "/")},
            }
            home_mount = {
                "name": "home",
                "mountPath": home,
                "subPath": safe_slug(spec.username, max_length=50),
            }
        else:
            home_volume = {
                "name": "home",
                "persistentVolumeClaim": {"claimName": self.pvc_name(spec.username)},
            }
            home_mount = {"name": "home", "mountPath": home}
        volumes = [
            home_volume,
            {"name": "lab-secret", "secret": {"secretName": f"{name}-lab", "defaultMode": 0o440}},
            *self.extra_volumes,
        ]
        mounts = [
            home_mount,
            {"name": "lab-secret", "mountPath": SECRET_MOUNT, "readOnly": True},
            *self.extra_volume_mounts,
        ]
        gids: list[int] = []
        for group in sorted(set(groups)):
            entry = self.group_volumes.get(group)
            if not entry:
                continue
            vol_name = f"group-{safe_slug(group, max_length=40)}"
            volumes.append({"name": vol_name, **entry["volume"]})
            mounts.append(
                {
                    "name": vol_name,
                    "mountPath": entry.get("mountPath", f"/groups/{group}"),
                    "readOnly": bool(entry.get("readOnly", False)),
                }
            )
            if entry.get("gid") is not None:
                gids.append(int(entry["gid"]))
        return volumes, mounts, gids

    def _env(self, spec: LabSpec, home: str) -> dict[str, Any]:
        token = spec.env.get("JUPYTERHUB_API_TOKEN")
        # Every entry holding the token (JupyterHub also sets JPY_API_TOKEN) comes from the
        # lab's Secret, so the token never appears in the pod spec.
        token_keys = {k for k, v in spec.env.items() if token and v == token}
        env: dict[str, Any] = {
            k: v for k, v in spec.env.items() if k not in self.host_env_keys | token_keys
        }
        if "JUPYTERHUB_SERVICE_URL" in env:  # bind on the pod's address, at the pod's port
            url = urlsplit(env["JUPYTERHUB_SERVICE_URL"])
            env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(
                (url.scheme, f"0.0.0.0:{self.port}", url.path, url.query, url.fragment)
            )
        secret = f"{self.pod_name(spec)}-lab"
        for key in sorted({"JUPYTERHUB_API_TOKEN", "ACCESS_TOKEN", *token_keys}):
            env[key] = {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}},
            }
        username = spec.username
        env.update(
            HOME=home,
            USER=username,
            LOGNAME=username,
            SCIPLAT_DISCOVERY=f"{SECRET_MOUNT}/discovery.json",
        )
        return env

    def build_pod(self, spec: LabSpec) -> Any:
        """The lab pod for *spec* (validated options), as a kubernetes_asyncio V1Pod."""
        image = spec.options.image
        if not image.container_image:
            raise SciplatSpawnError(
                f"Image {image.name!r} has no container image configured for Kubernetes "
                "(images[].container_image).",
                reason="config",
                status_code=500,
            )
        size = spec.options.size
        uid = self.uid_for(spec)
        groups = list(spec.extra.get("groups", []))
        volumes, mounts, gids = self._volumes(spec, groups)
        home = self.home_path(spec)
        security = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        container_security = {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
        init = {
            "name": "prepare-home",
            "image": image.container_image,
            "imagePullPolicy": self.image_pull_policy,
            "command": ["sh", "-c", f"python -m sciplat.hub.labprep < {SECRET_MOUNT}/labprep.json"],
            "securityContext": {
                "runAsUser": uid,
                "runAsGroup": uid,
                "allowPrivilegeEscalation": False,
                **container_security,
            },
            "volumeMounts": [m for m in mounts if m["name"] in ("home", "lab-secret")],
            "resources": {
                "limits": {"cpu": "500m", "memory": "256Mi"},
                "requests": {"cpu": "50m", "memory": "64Mi"},
            },
        }
        return make_pod(
            name=self.pod_name(spec),
            cmd=[*self.cmd, *spec.args],
            port=self.port,
            image=image.container_image,
            image_pull_policy=self.image_pull_policy,
            image_pull_secrets=list(self.image_pull_secrets) or None,
            node_selector=dict(self.node_selector) or None,
            uid=uid,
            gid=uid,
            fs_gid=uid,
            supplemental_gids=gids or None,
            allow_privilege_escalation=False,
            pod_security_context=security,
            container_security_context=container_security,
            env=self._env(spec, home),
            working_dir=home,
            volumes=volumes,
            volume_mounts=mounts,
            labels={**self._labels(spec), **self.extra_labels},
            annotations={
                "hub.jupyter.org/username": spec.username,
                "sciplat.org/image": image.name,
                "sciplat.org/size": size.name,
            },
            cpu_limit=size.cpu,
            cpu_guarantee=round(size.cpu * self.cpu_guarantee_fraction, 3),
            mem_limit=size.memory,
            mem_guarantee=int(size.memory * self.mem_guarantee_fraction),
            init_containers=[init],
            tolerations=list(self.tolerations) or None,
            priority_class_name=self.priority_class_name or None,
            scheduler_name=self.scheduler_name or None,
        )

    # -- start ---------------------------------------------------------------------------------
    async def start(self, spec: LabSpec, progress: ProgressFn) -> AsyncIterator[dict[str, Any]]:
        api = await self.api()
        pod = self.build_pod(spec)  # refuses unusable configuration before touching the API
        name = pod.metadata.name
        state: dict[str, Any] = {
            "backend": "kubernetes",
            "namespace": self.namespace,
            "pod": name,
            "secret": f"{name}-lab",
            "uid": self.uid_for(spec),
        }
        progress(10, "Checking that your lab size fits the cluster")
        await self._check_fit(api, spec)

        pvc = self.build_pvc(spec)
        if pvc is not None:
            progress(15, f"Preparing your home volume {pvc.metadata.name}")
            await self._ensure(api.create_namespaced_persistent_volume_claim, pvc)
            state["pvc"] = pvc.metadata.name
        secret = self.build_secret(spec)
        try:
            await api.create_namespaced_secret(self.namespace, secret)
        except Exception as exc:  # a leftover of an earlier start: z2jh's Role has no update
            if getattr(exc, "status", None) != 409:
                raise
            await self._delete_quietly(api.delete_namespaced_secret, state["secret"])
            await api.create_namespaced_secret(self.namespace, secret)
        yield dict(state)

        progress(20, f"Creating pod {name} from image {spec.options.image.container_image}")
        # events of an earlier pod of the same name are not this start's (KubeSpawner's
        # _last_event marker does the same)
        stale = {k for k in map(_event_uid, await self._events(api, name)) if k}
        uid = await self._create_pod(api, pod)
        yield dict(state)

        pod_ip = await self._wait_running(api, name, spec, progress, stale, uid)
        progress(90, "Your lab is running; connecting it to the hub")
        state["url"] = f"http://{pod_ip}:{self.port}"
        yield state

    def _largest_node(self) -> tuple[float, float] | None:
        """(cpu, memory bytes) of :attr:`max_node_resources`, or None when not set."""
        cpu = parse_quantity(self.max_node_resources.get("cpu") or 0)
        memory = parse_quantity(self.max_node_resources.get("memory") or 0)
        return (cpu, memory) if cpu or memory else None

    def _refuse_size(self, size: Any, cpu: float, memory: float) -> SciplatSpawnError:
        return SciplatSpawnError(
            f"Size {size.name!r} ({size.cpu:g} CPU, {_gib(size.memory)}) does not fit on any "
            f"node of this cluster (largest: {cpu:g} CPU, {_gib(memory)}). "
            "Choose a smaller size.",
            reason="unschedulable",
            status_code=400,
        )

    async def _check_fit(self, api: Any, spec: LabSpec) -> None:
        size = spec.options.size
        largest = self._largest_node()
        if largest is not None:  # the declared node shape: no API call
            cpu, memory = largest
            if (cpu and size.cpu > cpu) or (memory and size.memory > memory):
                raise self._refuse_size(size, cpu, memory)
            return
        if not self.check_node_fit:
            return
        try:
            nodes = (await api.list_node()).items
        except Exception as exc:  # RBAC may not allow it; the scheduler still reports
            if getattr(exc, "status", None) in (401, 403):
                self.log.warning("May not list nodes (%s); node-fit check skipped", exc)
                return
            raise
        best_cpu = best_mem = 0.0
        for node in nodes:
            labels = node.metadata.labels or {}
            if any(labels.get(k) != v for k, v in self.node_selector.items()):
                continue
            if getattr(node.spec, "unschedulable", False):
                continue
            alloc = node.status.allocatable or {}
            cpu, mem = parse_quantity(alloc.get("cpu", 0)), parse_quantity(alloc.get("memory", 0))
            if (
                cpu >= size.cpu * self.cpu_guarantee_fraction
                and mem >= size.memory * self.mem_guarantee_fraction
            ):
                return
            best_cpu, best_mem = max(best_cpu, cpu), max(best_mem, mem)
        if not nodes:
            return  # an autoscaled pool may be empty; let the scheduler decide
        raise self._refuse_size(size, best_cpu, best_mem)

    async def _ensure(self, create: Callable, body: Any) -> None:
        try:
            await create(self.namespace, body)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:  # 409: exists (a returning user's home)
                raise

    async def _create_pod(self, api: Any, pod: Any) -> str | None:
        """Create *pod* (its uid is returned); a leftover pod of the same name (hub lost its
        state) is replaced."""
        name = pod.metadata.name
        for _ in range(2):
            try:
                created = await api.create_namespaced_pod(self.namespace, pod)
                return getattr(getattr(created, "metadata", None), "uid", None)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise
            self.log.warning("Replacing leftover pod %s", name)
            await self._delete_quietly(api.delete_namespaced_pod, name, grace=0)
            for _ in range(60):
                try:
                    await api.read_namespaced_pod(name, self.namespace)
                except Exception as exc:
                    if getattr(exc, "status", None) == 404:
                        break
                    raise
                await asyncio.sleep(self.poll_interval)
        raise SciplatSpawnError(
            f"A previous pod {name} is still being deleted; try again.",
            reason="busy",
            status_code=409,
        )

    async def _delete_quietly(self, delete: Callable, name: str, grace: int | None = None) -> None:
        kwargs = {} if grace is None else {"grace_period_seconds": grace}
        try:
            await delete(name, self.namespace, **kwargs)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise

    async def _wait_running(
        self,
        api: Any,
        name: str,
        spec: LabSpec,
        progress: ProgressFn,
        stale: set[str] = frozenset(),  # type: ignore[assignment]
        uid: str | None = None,
    ) -> str:
        """Wait for the pod (the one with *uid*, when known) to run; raise with the real cause
        when it cannot."""
        seen: set[str] = set(stale)
        percent = 25
        unschedulable_since: float | None = None
        interval = self.poll_interval
        image = spec.options.image
        while True:
            pod = await self._read_pod(api, name, uid=uid)
            events = await self._events(api, name)
            events = [e for e in events if _event_key(e) not in stale]
            for event in events:
                key = _event_key(event)
                if key not in seen:
                    seen.add(key)
                    percent = min(percent + 5, 85)
                    progress(percent, f"[{event.reason}] {event.message}")
            status = pod.status
            if status.phase == "Running" and status.pod_ip:
                return status.pod_ip
            if status.phase in ("Failed", "Succeeded"):
                raise LabStartError(
                    f"Your lab pod ended during start-up ({status.reason or status.phase}: "
                    f"{status.message or 'no message'}).",
                    log_tail=await self._log_tail(api, name),
                )
            for cs in status.container_statuses or []:
                self._check_waiting(cs, image)
            await self._check_init(api, status, name, image)
            scheduled = next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)
            if (
                scheduled is not None
                and scheduled.status == "False"
                and scheduled.reason == "Unschedulable"
            ):
                scaling = any(e.reason == "TriggeredScaleUp" for e in events)
                unschedulable_since = unschedulable_since or time.monotonic()
                if (
                    not scaling
                    and time.monotonic() - unschedulable_since > self.unschedulable_timeout
                ):
                    raise SciplatSpawnError(
                        f"No node can take your lab ({spec.options.size.name}): "
                        f"{scheduled.message}",
                        reason="unschedulable",
                        status_code=503,
                    )
            else:
                unschedulable_since = None
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll_interval)

    def _check_waiting(self, cs: Any, image: Any) -> None:
        """Raise the real cause when a container waits for something that will not come."""
        waiting = cs.state.waiting if cs.state else None
        if waiting is None:
            return
        message = waiting.message or ""
        if waiting.reason in IMAGE_PULL_FATAL or (
            waiting.reason == "ErrImagePull"
            and any(h in message.lower() for h in IMAGE_MISSING_HINTS)
        ):
            raise SciplatSpawnError(
                f"Image {image.name!r} ({image.container_image}) could not be pulled: "
                f"{waiting.reason}: {message}",
                reason="image-pull",
                status_code=502,
            )
        if waiting.reason in CONTAINER_FATAL:
            raise LabStartError(f"Your lab could not start ({waiting.reason}: {message}).")

    async def _check_init(self, api: Any, status: Any, name: str, image: Any) -> None:
        for cs in status.init_container_statuses or []:
            term = cs.state.terminated if cs.state else None
            waiting = cs.state.waiting if cs.state else None
            if (term is not None and term.exit_code) or (
                waiting is not None and waiting.reason == "CrashLoopBackOff"
            ):
                raise LabStartError(
                    "Preparing your home directory failed.",
                    log_tail=await self._log_tail(api, name, container=cs.name),
                )
            self._check_waiting(cs, image)

    async def _events(self, api: Any, name: str) -> list[Any]:
        """Events of pod *name*, oldest first: from the shared watch, else listed."""
        reflector = await self.event_reflector()
        if reflector is not None:
            return [
                PodEvent.from_dict(e)
                for e in reflector.events
                if e["involvedObject"].get("name") == name
            ]
        try:
            result = await api.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name}"
            )
        except Exception as exc:  # events are a nicety; never fail a start over them
            self.log.debug("Could not read events of %s: %s", name, exc)
            return []
        return sorted(result.items or [], key=lambda e: str(e.last_timestamp or ""))

    async def _log_tail(self, api: Any, name: str, container: str = "notebook") -> str:
        try:
            return await api.read_namespaced_pod_log(
                name, self.namespace, container=container, tail_lines=self.log_tail_lines
            )
        except Exception as exc:
            return f"(log not available: {exc})"

    # -- poll / stop ---------------------------------------------------------------------------
    async def poll(self, state: dict[str, Any]) -> int | None:
        if not state.get("pod"):
            return 0
        api = await self.api()
        try:
            pod = await self._read_pod(api, state["pod"], state.get("namespace"))
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return 0
            raise
        if pod.metadata.deletion_timestamp is not None:
            return 0
        return {"Succeeded": 0, "Failed": 1}.get(pod.status.phase)

    async def stop(self, state: dict[str, Any], *, now: bool = False) -> None:
        api = await self.api()
        if state.get("pod"):
            await self._delete_quietly(
                api.delete_namespaced_pod, state["pod"], grace=0 if now else self.stop_grace_seconds
            )
        if state.get("secret"):
            await self._delete_quietly(api.delete_namespaced_secret, state["secret"])
