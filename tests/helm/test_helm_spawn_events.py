"""Lab starts on Kubernetes against a recorded API server: progress and the real failure reason.

Only the Kubernetes API is faked (:mod:`kubeapi`, an HTTP server on loopback replaying recorded
pod states and Event objects). Everything above it is real: kubernetes_asyncio's client and
watch, KubeSpawner's ``EventReflector`` (one shared watch on pod events, as the backend uses in
the hub), the backend configured from the chart's rendered ``kubernetes.json``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from chartdocs import find, one, values_of
from kubeapi import KubeAPI, Step, event

from sciplat.helmchart import manifests, render, rendered_settings
from sciplat.hub.backends import LabSpec
from sciplat.hub.backends.kubernetes import KubernetesBackend
from sciplat.hub.errors import SciplatSpawnError
from sciplat.hub.options import validate_options
from sciplat.images.catalog import ImageCatalog

pytestmark = pytest.mark.integration

POD = "lab-alice"
WEEKLY = "ghcr.io/sciplat/lab:w_2026_47"
VALUES = {
    "sciplat": {
        "images": [
            {
                "name": "recommended",
                "tag": "recommended",
                "container_image": "ghcr.io/sciplat/lab:recommended",
            },
            {"name": "w_2026_47", "tag": "weekly", "container_image": WEEKLY},
        ]
    }
}


def chart(values: dict[str, Any]) -> tuple[list[dict], Any]:
    base = values_of("minimal")
    docs = manifests(render({**base, **values}))
    return docs, rendered_settings(docs)


DOCS, SETTINGS = chart(VALUES)
PENDING = {"phase": "Pending"}
RUNNING = {"phase": "Running", "podIP": "10.1.2.3"}


def unschedulable(message: str) -> dict[str, Any]:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": "2026-11-21T10:00:00Z",
    }
    return {"phase": "Pending", "conditions": [condition]}


def spec(options: dict[str, Any] | None = None) -> LabSpec:
    validated = validate_options(options or {}, SETTINGS, ImageCatalog(SETTINGS.images), ["users"])
    return LabSpec(
        username="alice",
        server_name="",
        options=validated,
        env={"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:1/"},
        args=[],
        discovery={"version": 1},
        reset_dirs=[],
        port=8888,
        extra={"user_id": 7, "groups": ["users"], "disk": 10 * 2**30},
    )


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch):
    """Start a recorded API server; yields a function making (server, backend) for a recording."""
    made: list[tuple[KubeAPI, KubernetesBackend]] = []

    async def make(recording: list[Step], docs: list[dict] = DOCS, **traits: Any):
        api = KubeAPI(POD, recording)
        url = await api.start()
        kubeconfig = tmp_path / f"kubeconfig-{len(made)}"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "rec", "cluster": {"server": url}}],
                    "users": [{"name": "hub", "user": {"token": "hub-token"}}],
                    "contexts": [{"name": "rec", "context": {"cluster": "rec", "user": "hub"}}],
                    "current-context": "rec",
                }
            )
        )
        # $KUBECONFIG as the client read it at import
        monkeypatch.setattr(
            "kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
        # the backend's settings exactly as the chart renders them for the hub
        traits_file = tmp_path / f"kubernetes-{len(made)}.json"
        data = one(docs, "Secret", "sciplat-settings")["stringData"]["kubernetes.json"]
        traits_file.write_text(data)
        backend = KubernetesBackend(
            config_file=str(traits_file),
            namespace="sciplat",
            k8s_api_host=url,
            poll_interval=0.05,
            max_poll_interval=0.05,
        )
        for name, value in traits.items():  # the chart's file wins over constructor values
            setattr(backend, name, value)
        made.append((api, backend))
        return api, backend

    yield make
    for api, backend in made:
        await backend.close()
        await api.stop()


async def start(backend: KubernetesBackend, lab: LabSpec) -> tuple[list[dict], list[str]]:
    states, messages = [], []
    async for state in backend.start(lab, lambda p, m: messages.append(m)):
        states.append(dict(state))
    return states, messages


def scheduled() -> dict:
    return event(
        POD,
        "Scheduled",
        "Successfully assigned sciplat/lab-alice to user-node-3",
        source="default-scheduler",
    )


async def test_missing_image_fails_with_the_registry_answer_and_events_come_from_one_watch(
    cluster,
):
    pull_error = (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{WEEKLY}": '
        f'failed to resolve reference "{WEEKLY}": {WEEKLY}: not found'
    )
    init_waiting = {
        "name": "prepare-home",
        "image": WEEKLY,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": pull_error}},
    }
    recording = [
        Step(PENDING, [scheduled()]),
        Step(PENDING, [event(POD, "Pulling", f'Pulling image "{WEEKLY}"')]),
        Step(PENDING),
        Step(
            {**PENDING, "initContainerStatuses": [init_waiting]},
            [
                event(
                    POD, "Failed", f'Failed to pull image "{WEEKLY}": {pull_error}', type_="Warning"
                ),
                event(POD, "Failed", "Error: ErrImagePull", type_="Warning"),
            ],
        ),
    ]
    api, backend = await cluster(recording)
    messages: list[str] = []
    with pytest.raises(SciplatSpawnError) as info:
        async for _ in backend.start(spec({"image": "w_2026_47"}), lambda p, m: messages.append(m)):
            pass
    assert info.value.reason == "image-pull"
    assert f"Image 'w_2026_47' ({WEEKLY}) could not be pulled: ErrImagePull" in str(info.value)
    assert f"{WEEKLY}: not found" in str(info.value)
    # the kubelet's and scheduler's own words reached the progress page
    assert "[Scheduled] Successfully assigned sciplat/lab-alice to user-node-3" in messages
    assert f'[Pulling] Pulling image "{WEEKLY}"' in messages
    # pod states and events came from KubeSpawner's reflectors: a watch each, not one read
    # and one list per status check (at most one read: a pod the watch has not shown yet)
    assert "watch events" in api.requests and "watch pods" in api.requests
    assert api.requests.count("read pod") <= 1
    assert api.requests.count("list events") <= 2
    assert set(backend._reflectors) == {"pods", "events"}


async def test_unschedulable_lab_fails_with_the_scheduler_message(cluster):
    why = (
        "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are "
        "available: 3 No preemption victims found for incoming pod."
    )
    failed = event(POD, "FailedScheduling", why, type_="Warning", source="default-scheduler")
    api, backend = await cluster(
        [Step(unschedulable(why), [failed]), Step(unschedulable(why))],
        unschedulable_timeout=0.3,
    )
    states, messages = [], []
    with pytest.raises(SciplatSpawnError) as info:
        async for state in backend.start(spec({"size": "medium"}), lambda p, m: messages.append(m)):
            states.append(state)
    assert info.value.reason == "unschedulable"
    assert f"No node can take your lab (medium): {why}" in str(info.value)
    assert f"[FailedScheduling] {why}" in messages
    assert states and states[-1]["pod"] == POD  # state kept: the pod can be cleaned up
    assert "list nodes" in api.requests  # no largestNode: the nodes were asked (403: skipped)


async def test_autoscaler_scale_up_keeps_the_start_waiting(cluster):
    why = "0/2 nodes are available: 2 Insufficient cpu."
    scale_up = event(
        POD,
        "TriggeredScaleUp",
        "pod triggered scale-up: [{user-pool 2->3 (max: 20)}]",
        source="cluster-autoscaler",
    )
    # unschedulable for ~1.5 s (30 reads), three times the timeout: only the autoscaler's
    # event keeps the start alive until the new node takes the pod
    recording = [
        Step(unschedulable(why), [event(POD, "FailedScheduling", why, type_="Warning"), scale_up]),
        *[Step(unschedulable(why)) for _ in range(30)],
        Step(PENDING, [scheduled()]),
        Step(RUNNING, [event(POD, "Started", "Started container notebook")]),
    ]
    _, backend = await cluster(recording, unschedulable_timeout=0.5)
    states, messages = await start(backend, spec())
    assert states[-1]["url"] == "http://10.1.2.3:8888"
    assert any("[TriggeredScaleUp] pod triggered scale-up" in m for m in messages)


async def test_events_of_an_earlier_pod_with_the_same_name_are_not_shown(cluster):
    api, backend = await cluster(
        [Step(PENDING, [scheduled()]), Step(RUNNING, [event(POD, "Started", "Started")])]
    )
    api.publish(
        [
            event(POD, "Killing", "Stopping container notebook"),
            event(POD, "Evicted", "The node was low on resource: memory.", type_="Warning"),
        ]
    )
    states, messages = await start(backend, spec())
    assert states[-1]["url"].endswith(":8888")
    assert not [m for m in messages if "Stopping container" in m or "low on resource" in m]
    assert "[Scheduled] Successfully assigned sciplat/lab-alice to user-node-3" in messages


async def test_largest_node_from_values_refuses_a_size_at_spawn_without_asking_for_nodes(cluster):
    docs, _ = chart({**VALUES, "labs": {"largestNode": {"cpu": 4, "memory": "16Gi"}}})
    assert json.loads(one(docs, "Secret", "sciplat-settings")["stringData"]["kubernetes.json"])[
        "max_node_resources"
    ] == {"cpu": 4, "memory": "16Gi"}
    assert not find(docs, "ClusterRole")  # the declared shape needs no node-reader role
    api, backend = await cluster([Step(RUNNING)], docs=docs)
    # the chart refuses sizes above largestNode at render; a hub whose settings were changed
    # behind the chart's back (or a pool scaled down) is caught at spawn, before any object
    backend.max_node_resources = {"cpu": 1.5, "memory": "6Gi"}
    with pytest.raises(SciplatSpawnError) as info:
        await start(backend, spec({"size": "medium"}))
    assert info.value.reason == "unschedulable" and info.value.status_code == 400
    assert "Size 'medium' (2 CPU, 8 GiB) does not fit on any node of this cluster" in str(
        info.value
    )
    assert "(largest: 1.5 CPU, 6 GiB)" in str(info.value)
    assert api.requests == []  # refused before any API call: no node list, no pod
    states, _ = await start(backend, spec({"size": "small"}))
    assert states[-1]["url"].endswith(":8888")
    assert "list nodes" not in api.requests


async def test_polls_of_running_labs_cost_no_api_call_and_see_a_vanished_pod(cluster):
    api, backend = await cluster([Step(PENDING, [scheduled()]), Step(RUNNING)])
    states, _ = await start(backend, spec())
    api.requests.clear()
    for _ in range(5):
        assert await backend.poll(states[-1]) is None  # running
    assert api.requests == []  # from the watch: 3000 labs polled cost the API server nothing
    api.delete_pod(POD)  # evicted, or deleted by an operator
    for _ in range(100):
        if await backend.poll(states[-1]) == 0:
            break
        await asyncio.sleep(0.02)
    assert await backend.poll(states[-1]) == 0
    await backend.stop(states[-1], now=True)  # the pod is gone already: stop still succeeds
    assert "delete secrets" in api.requests
