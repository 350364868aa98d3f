"""SciplatSpawner's Kubernetes backend: the manifests it builds and how a start fails.

No cluster runs here. The manifests are built with KubeSpawner's own object builders and
checked field by field and against the Kubernetes JSON schemas (kubernetes-validate, strict).
Only the API boundary is faked (:class:`FakeCoreV1Api` stands in for kubernetes_asyncio's
``CoreV1Api``: the same method names and arguments, real model objects, real ApiException).
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace as NS
from typing import Any

import pytest
from kubernetes_asyncio.client import (
    CoreV1Event,
    V1ContainerState,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Node,
    V1NodeList,
    V1NodeSpec,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodStatus,
)
from kubernetes_asyncio.client.exceptions import ApiException

from sciplat.config import Settings
from sciplat.helmchart import validate_manifest
from sciplat.hub.backends import LabSpec, backend_class
from sciplat.hub.backends.kubernetes import KubernetesBackend, manifest, parse_quantity
from sciplat.hub.errors import LabStartError, OptionsError, SciplatSpawnError
from sciplat.hub.options import validate_options
from sciplat.hub.spawner import SciplatSpawner
from sciplat.images.catalog import ImageCatalog

GiB = 2**30
SETTINGS = Settings.model_validate(
    {
        "data_dir": "/var/lib/sciplat",
        "hub": {"default_groups": ["users"], "public_url": "https://dac.example.org"},
        "sizes": [
            {"name": "small", "cpu": 1, "memory": "4Gi"},
            {"name": "medium", "cpu": 2, "memory": "8Gi"},
            {"name": "large", "cpu": 4, "memory": "16Gi"},
        ],
        "images": [
            {
                "name": "recommended",
                "tag": "recommended",
                "container_image": "ghcr.io/sciplat/lab:recommended",
            },
            {
                "name": "w_2026_47",
                "tag": "weekly",
                "container_image": "ghcr.io/sciplat/lab:w_2026_47",
            },
            {"name": "noimage", "tag": "experimental"},
        ],
        "groups": {
            "users": {
                "scopes": ["custom:tap:read"],
                "quotas": {"max_size": "medium", "disk": "10Gi"},
            },
            "staff": {"scopes": ["custom:tap:read"], "quotas": {"max_size": None, "disk": "100Gi"}},
            "survey": {"scopes": ["custom:tap:read"], "quotas": {"max_size": "small"}},
        },
    }
)
CATALOG = ImageCatalog(SETTINGS.images)
GROUP_VOLUMES = {
    "staff": {"volume": {"persistentVolumeClaim": {"claimName": "group-staff"}}, "gid": 30001},
    "survey": {
        "volume": {"nfs": {"server": "nfs.example.org", "path": "/survey"}},
        "gid": 30002,
        "readOnly": True,
    },
}
COMMON = {"app": "jupyterhub", "release": "sciplat"}


def make_backend(api: Any = None, **traits: Any) -> KubernetesBackend:
    return KubernetesBackend(
        namespace="sciplat",
        api_factory=lambda: api,
        group_volumes=GROUP_VOLUMES,
        common_labels=COMMON,
        poll_interval=0.001,
        max_poll_interval=0.001,
        **traits,
    )


def make_spec(
    options: dict[str, Any],
    groups: list[str],
    *,
    user_id: int = 7,
    name: str = "alice",
    server: str = "",
) -> LabSpec:
    validated = validate_options(options, SETTINGS, CATALOG, groups)
    quota_disk = max(SETTINGS.groups[g].quotas.disk for g in groups)
    return LabSpec(
        username=name,
        server_name=server,
        options=validated,
        env={
            "JUPYTERHUB_API_TOKEN": "secret-token",
            "JPY_API_TOKEN": "secret-token",
            "PATH": "/opt/host/bin",
            "JUPYTER_PATH": "/opt/host/share",
            "JUPYTER_CONFIG_PATH": "/opt/host/etc",
            "SCIPLAT_IMAGE": validated.image.name,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:51234/user/{name}/",
        },
        args=["--MappingKernelManager.default_kernel_name=lsst"],
        discovery={"version": 1, "hub_url": "https://dac.example.org"},
        reset_dirs=[".cache", ".local"],
        port=51234,
        extra={"user_id": user_id, "groups": groups, "disk": quota_disk},
    )


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


def env_of(pod: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(pod)["env"]}


CASES = [
    ({"size": "small"}, ["users"], "recommended", 1, 4 * GiB, []),
    ({"size": "medium", "image": "w_2026_47"}, ["users"], "w_2026_47", 2, 8 * GiB, []),
    ({"size": "large"}, ["staff"], "recommended", 4, 16 * GiB, ["staff"]),
    (
        {"size": "medium", "image": "w_2026_47"},
        ["users", "staff", "survey"],
        "w_2026_47",
        2,
        8 * GiB,
        ["staff", "survey"],
    ),
]


@pytest.mark.parametrize(("options", "groups", "image", "cpu", "memory", "shared"), CASES)
def test_pod_manifest_per_size_image_and_group(options, groups, image, cpu, memory, shared):
    backend = make_backend()
    spec = make_spec(options, groups, user_id=42)
    pod = manifest(backend.build_pod(spec))
    validate_manifest(pod)

    c = container(pod)
    assert c["image"] == CATALOG.get(image).container_image
    assert parse_quantity(c["resources"]["limits"]["cpu"]) == cpu
    assert parse_quantity(c["resources"]["limits"]["memory"]) == memory
    assert parse_quantity(c["resources"]["requests"]["cpu"]) == pytest.approx(cpu * 0.25)
    assert parse_quantity(c["resources"]["requests"]["memory"]) == memory
    # The user's own uid/gid (offset + hub user id), never root, no capabilities.
    assert c["securityContext"]["runAsUser"] == c["securityContext"]["runAsGroup"] == 100042
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    psc = pod["spec"]["securityContext"]
    assert psc["fsGroup"] == 100042 and psc["runAsNonRoot"] is True
    gids = {GROUP_VOLUMES[g]["gid"] for g in shared}
    assert set(psc.get("supplementalGroups", [])) == gids
    assert pod["spec"]["automountServiceAccountToken"] is False

    # Home PVC, the lab secret, and exactly the member groups' shared volumes.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "home-alice"
    assert volumes["lab-secret"]["secret"]["secretName"] == "lab-alice-lab"
    assert {n for n in volumes if n.startswith("group-")} == {f"group-{g}" for g in shared}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["home"]["mountPath"] == "/home/alice"
    for g in shared:
        assert mounts[f"group-{g}"]["mountPath"] == f"/groups/{g}"
        assert mounts[f"group-{g}"]["readOnly"] is bool(GROUP_VOLUMES[g].get("readOnly"))

    # Discovery document and token come from the lab's Secret; host paths are dropped.
    env = env_of(pod)
    assert env["SCIPLAT_DISCOVERY"] == "/etc/sciplat/lab/discovery.json"
    for key in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "ACCESS_TOKEN"):
        assert env[key] == {"secretKeyRef": {"name": "lab-alice-lab", "key": "token"}}
    assert "secret-token" not in json.dumps(pod)
    assert not {"PATH", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"} & set(env)
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:8888/user/alice/"
    assert env["HOME"] == "/home/alice" and env["SCIPLAT_IMAGE"] == image
    assert c["args"] == [
        "python",
        "-m",
        "jupyterhub.singleuser",
        "--MappingKernelManager.default_kernel_name=lsst",
    ]
    # Labels the network policies select labs by.
    labels = pod["metadata"]["labels"]
    assert labels["component"] == "singleuser-server"
    assert labels["app"] == "jupyterhub" and labels["release"] == "sciplat"
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    # Home preparation (reset) runs as the user too.
    init = pod["spec"]["initContainers"][0]
    assert init["securityContext"]["runAsUser"] == 100042
    assert init["image"] == c["image"]


def test_pvc_sized_from_disk_quota_and_secret_carries_token_and_discovery():
    backend = make_backend()
    spec = make_spec({"reset": True}, ["staff"])
    pvc = manifest(backend.build_pvc(spec))
    validate_manifest(pvc)
    assert pvc["metadata"]["name"] == "home-alice"
    assert parse_quantity(pvc["spec"]["resources"]["requests"]["storage"]) == 100 * GiB
    secret = manifest(backend.build_secret(spec))
    validate_manifest(secret)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["token"] == "secret-token"
    assert json.loads(data["discovery.json"])["hub_url"] == "https://dac.example.org"
    assert json.loads(data["labprep.json"]) == {
        "home": "/home/alice",
        "reset": [".cache", ".local"],
    }


def test_named_server_nfs_home_and_uid_map():
    backend = make_backend(
        home_storage="nfs",
        uid_map={"alice": 5012},
        home_nfs={"server": "nfs.example.org", "path": "/export/home"},
    )
    spec = make_spec({}, ["users"], server="gpu")
    assert backend.build_pvc(spec) is None
    pod = manifest(backend.build_pod(spec))
    validate_manifest(pod)
    assert pod["metadata"]["name"] != "lab-alice" and "gpu" in pod["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["home"]["nfs"] == {"server": "nfs.example.org", "path": "/export/home"}
    assert {m["name"]: m for m in container(pod)["volumeMounts"]}["home"]["subPath"] == "alice"
    assert container(pod)["securityContext"]["runAsUser"] == 5012


def test_image_without_container_image_and_unknown_uid_are_refused():
    backend = make_backend()
    with pytest.raises(SciplatSpawnError, match="no container image"):
        backend.build_pod(make_spec({"image": "noimage"}, ["users"]))
    spec = make_spec({}, ["users"])
    spec.extra.pop("user_id")
    with pytest.raises(SciplatSpawnError) as info:
        backend.build_pod(spec)
    assert "no uid is known for you" in info.value.jupyterhub_message
    assert "lacks user_id" in str(info.value)  # the operator's log says why


FORGED = [
    ({"size": "large"}, "above your quota"),
    ({"size": "huge"}, "Unknown size 'huge'"),
    ({"image": "ghcr.io/evil/miner:latest"}, "Unknown image"),
    ({"image": ["recommended"]}, "Image must be a name"),
    ({"privileged": True}, "Unknown spawn option"),
    ({"reset": "maybe"}, "Reset must be true or false"),
]


@pytest.mark.parametrize(("forged", "message"), FORGED)
def test_forged_options_refused_exactly_as_on_the_local_backend(tmp_path, forged, message):
    """Both backends get options only through SciplatSpawner's one validation path."""
    sfile = tmp_path / "settings.json"
    sfile.write_text(SETTINGS.model_dump_json())
    user = NS(name="alice", groups=[NS(name="users")], admin=False, id=7)
    errors = {}
    for backend in ("local", "kubernetes"):
        spawner = SciplatSpawner(user=user, backend=backend, settings_file=str(sfile))
        with pytest.raises(OptionsError) as info:
            spawner._apply_options(spawner, forged)
        assert spawner.lab_options is None
        errors[backend] = (str(info.value), info.value.status_code)
    assert errors["local"] == errors["kubernetes"]
    assert message in errors["kubernetes"][0] and errors["kubernetes"][1] == 400


def test_backend_is_registered_and_reads_the_chart_file(tmp_path):
    assert backend_class("kubernetes") is KubernetesBackend
    path = tmp_path / "kubernetes.json"
    path.write_text(json.dumps({"uid_offset": 200000, "home_capacity": "5Gi"}))
    backend = KubernetesBackend(config_file=str(path))
    assert backend.uid_offset == 200000 and backend.home_capacity == "5Gi"
    path.write_text(json.dumps({"uid_ofset": 1}))
    with pytest.raises(ValueError, match="uid_ofset"):
        KubernetesBackend(config_file=str(path))


# -- the API boundary ---------------------------------------------------------------------------
def waiting(reason: str, message: str = "") -> V1ContainerStatus:
    return V1ContainerStatus(
        name="notebook",
        image="x",
        image_id="",
        ready=False,
        restart_count=0,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason, message=message)),
    )


class FakeCoreV1Api:
    """kubernetes_asyncio's CoreV1Api methods the backend calls, backed by a dict."""

    def __init__(
        self,
        statuses: list[V1PodStatus],
        *,
        events: list[CoreV1Event] = (),
        nodes: list[tuple[str, str]] | None = None,
        log: str = "",
    ) -> None:
        self.statuses = list(statuses)
        self.events = list(events)
        self.nodes = nodes
        self.log = log
        self.objects: dict[tuple[str, str], Any] = {}
        self.calls: list[str] = []

    def _create(self, kind: str, body: Any) -> Any:
        key = (kind, body.metadata.name)
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.objects[key] = body
        return body

    async def list_node(self):
        self.calls.append("list_node")
        if self.nodes is None:
            raise ApiException(status=403, reason="Forbidden")
        return V1NodeList(
            items=[
                V1Node(
                    metadata=V1ObjectMeta(name=f"n{i}", labels={}),
                    spec=V1NodeSpec(),
                    status=V1NodeStatus(allocatable={"cpu": cpu, "memory": mem}),
                )
                for i, (cpu, mem) in enumerate(self.nodes)
            ]
        )

    async def create_namespaced_persistent_volume_claim(self, namespace, body):
        self.calls.append("create_pvc")
        return self._create("pvc", body)

    async def create_namespaced_secret(self, namespace, body):
        self.calls.append("create_secret")
        return self._create("secret", body)

    async def create_namespaced_pod(self, namespace, body):
        self.calls.append("create_pod")
        return self._create("pod", body)

    async def read_namespaced_pod(self, name, namespace):
        pod = self.objects.get(("pod", name))
        if pod is None:
            raise ApiException(status=404, reason="NotFound")
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return V1Pod(metadata=pod.metadata, spec=pod.spec, status=status)

    async def list_namespaced_event(self, namespace, field_selector):
        name = field_selector.split("=", 1)[1]
        return NS(items=[e for e in self.events if e.involved_object.name == name])

    async def read_namespaced_pod_log(self, name, namespace, container, tail_lines):
        return f"[{container}] {self.log}"

    async def delete_namespaced_pod(self, name, namespace, grace_period_seconds=None):
        self.calls.append(f"delete_pod:{grace_period_seconds}")
        if self.objects.pop(("pod", name), None) is None:
            raise ApiException(status=404, reason="NotFound")

    async def delete_namespaced_secret(self, name, namespace):
        self.calls.append("delete_secret")
        if self.objects.pop(("secret", name), None) is None:
            raise ApiException(status=404, reason="NotFound")


def event(reason: str, message: str, name: str = "lab-alice") -> CoreV1Event:
    from kubernetes_asyncio.client import V1ObjectReference

    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"e-{reason}"),
        reason=reason,
        message=message,
        involved_object=V1ObjectReference(name=name),
    )


async def run_start(backend: KubernetesBackend, spec: LabSpec) -> tuple[list[dict], list[str]]:
    states, messages = [], []
    async for state in backend.start(spec, lambda p, m: messages.append(m)):
        states.append(dict(state))
    return states, messages


PENDING = V1PodStatus(phase="Pending")
RUNNING = V1PodStatus(phase="Running", pod_ip="10.1.2.3")


async def test_start_relays_events_and_returns_the_pod_address():
    api = FakeCoreV1Api(
        [PENDING, PENDING, RUNNING],
        nodes=[("4", "16Gi")],
        events=[
            event("Scheduled", "Successfully assigned sciplat/lab-alice to node-1"),
            event("Pulling", 'Pulling image "ghcr.io/sciplat/lab:recommended"'),
        ],
    )
    backend = make_backend(api)
    states, messages = await run_start(backend, make_spec({}, ["users"]))
    assert states[-1]["url"] == "http://10.1.2.3:8888"
    assert states[0]["pod"] == "lab-alice" and states[0]["secret"] == "lab-alice-lab"
    assert any("Successfully assigned" in m for m in messages)
    assert any("Pulling image" in m for m in messages)
    assert api.calls[:4] == ["list_node", "create_pvc", "create_secret", "create_pod"]
    assert await backend.poll(states[-1]) is None
    await backend.stop(states[-1], now=True)
    assert "delete_pod:0" in api.calls and "delete_secret" in api.calls
    assert await backend.poll(states[-1]) == 0


async def test_returning_user_keeps_home_and_secret_is_replaced():
    api = FakeCoreV1Api([RUNNING], nodes=[("4", "16Gi")])
    backend = make_backend(api)
    spec = make_spec({}, ["users"])
    await run_start(backend, spec)
    api.objects.pop(("pod", "lab-alice"))
    api.calls.clear()
    await run_start(backend, spec)  # PVC exists (409 is fine), secret made anew
    # only verbs z2jh's hub Role grants (get/list/watch/create/delete): no update
    assert api.calls == [
        "list_node",
        "create_pvc",
        "create_secret",
        "delete_secret",
        "create_secret",
        "create_pod",
    ]


async def test_missing_image_fails_at_once_with_the_registry_message():
    api = FakeCoreV1Api(
        [
            PENDING,
            V1PodStatus(
                phase="Pending",
                container_statuses=[
                    waiting(
                        "ErrImagePull",
                        'failed to pull "ghcr.io/sciplat/lab:w_2026_47": manifest unknown',
                    )
                ],
            ),
        ],
        nodes=[("4", "16Gi")],
    )
    backend = make_backend(api)
    with pytest.raises(SciplatSpawnError) as info:
        await run_start(backend, make_spec({"image": "w_2026_47"}, ["users"]))
    assert info.value.reason == "image-pull"
    assert "manifest unknown" in str(info.value) and "w_2026_47" in str(info.value)


async def test_image_pull_backoff_is_fatal():
    api = FakeCoreV1Api(
        [
            V1PodStatus(
                phase="Pending",
                container_statuses=[waiting("ImagePullBackOff", "Back-off pulling image")],
            )
        ],
        nodes=[("4", "16Gi")],
    )
    with pytest.raises(SciplatSpawnError, match="could not be pulled: ImagePullBackOff"):
        await run_start(make_backend(api), make_spec({}, ["users"]))


async def test_size_no_node_can_hold_is_refused_before_any_pod():
    api = FakeCoreV1Api([RUNNING], nodes=[("2", "8Gi"), ("3800m", "15Gi")])
    with pytest.raises(SciplatSpawnError) as info:
        await run_start(
            make_backend(api, cpu_guarantee_fraction=1.0), make_spec({"size": "large"}, ["staff"])
        )
    assert info.value.reason == "unschedulable"
    assert "'large' (4 CPU, 16 GiB) does not fit on any node" in str(info.value)
    assert "largest: 3.8 CPU, 15 GiB" in str(info.value)
    assert "create_pod" not in api.calls


async def test_node_check_skipped_without_rbac_and_unschedulable_reports_the_scheduler():
    unschedulable = V1PodStatus(
        phase="Pending",
        conditions=[
            V1PodCondition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/3 nodes are available: 3 Insufficient memory.",
            )
        ],
    )
    api = FakeCoreV1Api([unschedulable], nodes=None)
    backend = make_backend(api, unschedulable_timeout=0)
    with pytest.raises(SciplatSpawnError) as info:
        await run_start(backend, make_spec({}, ["users"]))
    assert info.value.reason == "unschedulable"
    assert "3 Insufficient memory" in str(info.value)


async def test_unschedulable_waits_while_the_autoscaler_adds_a_node():
    unschedulable = V1PodStatus(
        phase="Pending",
        conditions=[
            V1PodCondition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/1 nodes are available: 1 Insufficient cpu.",
            )
        ],
    )
    api = FakeCoreV1Api(
        [unschedulable, unschedulable, RUNNING],
        nodes=[("4", "16Gi")],
        events=[event("TriggeredScaleUp", "pod triggered scale-up")],
    )
    states, messages = await run_start(
        make_backend(api, unschedulable_timeout=0), make_spec({}, ["users"])
    )
    assert states[-1]["url"].endswith(":8888")
    assert any("scale-up" in m for m in messages)


async def test_failed_home_preparation_shows_its_log():
    init = V1ContainerStatus(
        name="prepare-home",
        image="x",
        image_id="",
        ready=False,
        restart_count=0,
        state=V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=1)),
    )
    api = FakeCoreV1Api(
        [V1PodStatus(phase="Pending", init_container_statuses=[init])],
        nodes=[("4", "16Gi")],
        log="No space left on device",
    )
    with pytest.raises(LabStartError) as info:
        await run_start(make_backend(api), make_spec({"reset": True}, ["users"]))
    assert "[prepare-home] No space left on device" in str(info.value)


async def test_lab_crash_and_failed_pod_carry_the_cause():
    api = FakeCoreV1Api(
        [
            V1PodStatus(
                phase="Pending",
                container_statuses=[
                    waiting("CrashLoopBackOff", "back-off 10s restarting failed container")
                ],
            )
        ],
        nodes=[("4", "16Gi")],
    )
    with pytest.raises(LabStartError, match="CrashLoopBackOff"):
        await run_start(make_backend(api), make_spec({}, ["users"]))
    api = FakeCoreV1Api(
        [
            V1PodStatus(
                phase="Failed", reason="Evicted", message="The node was low on resource: memory."
            )
        ],
        nodes=[("4", "16Gi")],
        log="Killed",
    )
    with pytest.raises(LabStartError) as info:
        await run_start(make_backend(api), make_spec({}, ["users"]))
    assert "Evicted: The node was low on resource: memory." in str(info.value)
    assert "[notebook] Killed" in str(info.value)


def test_parse_quantity():
    assert parse_quantity("3800m") == pytest.approx(3.8)
    assert parse_quantity("16Gi") == 16 * GiB
    assert parse_quantity("1.5G") == 1.5e9
    assert parse_quantity(2) == 2
