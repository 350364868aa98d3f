"""A recorded Kubernetes API server on loopback: the one thing faked in the spawn tests.

It speaks the API's HTTP/JSON (what kubernetes_asyncio and KubeSpawner's reflectors send):
create/read/delete of pods, secrets and PVCs, list and **watch** of pods and events (one JSON
line per WatchEvent, replayed from the resourceVersion asked for), pod logs. A *recording* says
how the lab pod evolves once created: every ``step_seconds`` the next step sets the pod's
``status`` and publishes the Event objects that step produced - shaped as recorded from a real
cluster (``kubectl get events -o json``), uid, resourceVersion and all.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Step:
    """The pod's ``status`` at one step, and the events that appeared with it."""

    status: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def event(
    pod: str, reason: str, message: str, *, type_: str = "Normal", source: str = "kubelet"
) -> dict[str, Any]:
    """A core/v1 Event as the API server returns it (the fields a real one has)."""
    ts = "2026-11-21T10:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{pod}.{uuid.uuid4().hex[:16]}",
            "namespace": "sciplat",
            "uid": str(uuid.uuid4()),
            "creationTimestamp": ts,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod,
            "namespace": "sciplat",
            "uid": str(uuid.uuid4()),
        },
        "reason": reason,
        "message": message,
        "source": {"component": source},
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": type_,
        "eventTime": None,
        "reportingComponent": source,
        "reportingInstance": "",
    }


def _selected(obj: dict[str, Any], label_selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, label_selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class KubeAPI:
    """The server; ``recording`` drives the pod named *pod* once it is created."""

    def __init__(self, pod: str, recording: list[Step], step_seconds: float = 0.05) -> None:
        self.pod = pod
        self.recording = list(recording)
        self.step_seconds = step_seconds
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self._rv = itertools.count(1000)
        self._watchers: dict[str, list[asyncio.Queue]] = {"events": [], "pods": []}
        self._player: asyncio.Task | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- changes -------------------------------------------------------------------------------
    def _stamp(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def _notify(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        for queue in self._watchers[kind]:
            queue.put_nowait({"type": type_, "object": copy.deepcopy(obj)})

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Events happen (in the namespace, as the kubelet or scheduler would record them)."""
        for e in events:
            e = copy.deepcopy(e)
            self._stamp(e)
            self.events[e["metadata"]["name"]] = e
            self._notify("events", "ADDED", e)

    def _set_pod(self, pod: dict[str, Any], type_: str) -> None:
        self._stamp(pod)
        self._notify("pods", type_, pod)

    async def _play(self, pod: dict[str, Any]) -> None:
        while self.recording and self.objects.get(("pods", self.pod)) is pod:
            step = self.recording.pop(0) if len(self.recording) > 1 else self.recording[0]
            self.publish(step.events)
            step.events = []
            pod["status"] = step.status
            self._set_pod(pod, "MODIFIED")
            await asyncio.sleep(self.step_seconds)

    def delete_pod(self, name: str) -> None:
        """The pod goes away without the hub asking (eviction, an operator's kubectl)."""
        pod = self.objects.pop(("pods", name))
        self._set_pod(pod, "DELETED")

    # -- handlers ------------------------------------------------------------------------------
    async def _list_or_watch(self, request: web.Request, kind: str) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "True", "1")
        self.requests.append(f"{'watch' if watch else 'list'} {kind}")
        selector = request.query.get("labelSelector", "")
        if kind == "events":
            current = list(self.events.values())
        else:
            current = [o for (k, _), o in self.objects.items() if k == "pods"]
        current = [o for o in current if _selected(o, selector)]
        if not watch:
            return web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "metadata": {"resourceVersion": str(next(self._rv))},
                    "items": current,
                }
            )
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self._watchers[kind].append(queue)
        # as the API server does: first what changed after the resourceVersion asked for
        since = int(request.query.get("resourceVersion") or 0)
        for obj in current:
            if int(obj["metadata"]["resourceVersion"]) > since:
                queue.put_nowait({"type": "ADDED", "object": copy.deepcopy(obj)})
        sent: set[str] = set()
        timeout = float(request.query.get("timeoutSeconds", 30))
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                if item is None:  # server stopping
                    break
                if not _selected(item["object"], selector):
                    continue
                rv = item["object"]["metadata"]["resourceVersion"]
                if rv in sent:
                    continue
                sent.add(rv)
                await response.write(json.dumps(item).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers[kind].remove(queue)
        return response

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "pods")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, "events")

    def _created(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            body = await request.json()
            name = body["metadata"]["name"]
            self.requests.append(f"create {kind}")
            if (kind, name) in self.objects:
                return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
            body["metadata"].update(namespace=request.match_info["ns"], uid=str(uuid.uuid4()))
            self.objects[(kind, name)] = body
            if kind == "pods":
                body["status"] = {"phase": "Pending"}
                self._set_pod(body, "ADDED")
                if name == self.pod:
                    self._player = asyncio.create_task(self._play(body))
            return web.json_response(body, status=201)

        return handler

    def _deleted(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            self.requests.append(f"delete {kind}")
            obj = self.objects.pop((kind, name), None)
            if obj is None:
                return _status(404, "NotFound", f'{kind} "{name}" not found')
            if kind == "pods":
                self._set_pod(obj, "DELETED")
            return web.json_response({"kind": "Status", "status": "Success"})

        return handler

    async def _read_pod(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append("read pod")
        pod = self.objects.get(("pods", name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        return web.json_response(pod)

    async def _log(self, request: web.Request) -> web.Response:
        self.requests.append("read log")
        return web.Response(text=f"log of {request.query.get('container')}")

    async def _nodes(self, request: web.Request) -> web.Response:
        self.requests.append("list nodes")
        return _status(403, "Forbidden", "nodes is forbidden")

    # -- server --------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        base = "/api/v1/namespaces/{ns}"
        for kind in ("pods", "secrets", "persistentvolumeclaims"):
            app.router.add_post(f"{base}/{kind}", self._created(kind))
            app.router.add_delete(f"{base}/{kind}/{{name}}", self._deleted(kind))
        app.router.add_get(f"{base}/pods", self._pods)
        app.router.add_get(f"{base}/pods/{{name}}", self._read_pod)
        app.router.add_get(f"{base}/pods/{{name}}/log", self._log)
        app.router.add_get(f"{base}/events", self._events)
        app.router.add_get("/api/v1/nodes", self._nodes)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._player is not None:
            self._player.cancel()
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)
