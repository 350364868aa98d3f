"""Local dask-gateway backends: clusters as local processes, safely.

:class:`SciplatLocalBackend` runs schedulers and workers as the requesting user's Unix account
(sciplat runs as root). It replaces dask-gateway-server 2026.3's ``setup_working_directory``,
which chowns ``/`` to the cluster user (``paths.extend(path)`` walks the path string character
by character), with one that changes the owner of exactly the files it created.
:class:`SciplatUnsafeLocalBackend` runs clusters as sciplat's own uid: single-uid development
mode only, and it says so loudly.

Both start schedulers and workers as plain child processes that outlive a gateway restart
(upstream's asyncio subprocesses are killed when the gateway exits), and add, through
:class:`SciplatBackendMixin`: per-user limits across clusters (running
clusters, cores, memory), dashboards that require the owner's (or an admin's) hub
authentication instead of being proxied to anyone who knows the URL (dask-gateway#570), an
admin listing of every user's clusters and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from pwd import getpwuid
from typing import Any

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.local import (
    LocalBackend,
    LocalClusterConfig,
    UnsafeLocalBackend,
    getpwnam,
    is_running,
)
from dask_gateway_server.traitlets import MemoryLimit, Type
from dask_gateway_server.utils import timestamp
from traitlets import Bool, Float, Integer, Unicode

from sciplat.hub.gateway import adminapi, dashboard
from sciplat.hub.gateway.auth import error_header_middleware
from sciplat.hub.gateway.forkserver import SERVER_MODULE
from sciplat.hub.zygote import Zygote

__all__ = [
    "SciplatBackendMixin",
    "SciplatClusterConfig",
    "SciplatLocalBackend",
    "SciplatUnsafeLocalBackend",
    "Usage",
]

_CLUSTER_NAME = re.compile(r"^[0-9a-f]{16,64}$")


class SciplatClusterConfig(LocalClusterConfig):
    """A cluster's configuration, plus the per-user limits it was created under."""

    image = Unicode("", help="Name of the image (environment) the cluster runs.", config=True)
    user_max_cores = Float(
        None,
        allow_none=True,
        min=0.0,
        help="Cores the user may use across all their clusters (group quota dask_cores). "
        "None means no limit.",
        config=True,
    )
    user_max_memory = MemoryLimit(
        None,
        allow_none=True,
        min=0,
        help="Memory the user may use across all their clusters (group quota dask_memory). "
        "None means no limit.",
        config=True,
    )
    user_max_clusters = Integer(
        0, min=0, help="Running clusters the user may have; 0 means no limit.", config=True
    )


class Usage:
    """Cores, memory and workers a set of clusters holds (schedulers included)."""

    def __init__(self) -> None:
        self.clusters = 0
        self.workers = 0
        self.cores = 0.0
        self.memory = 0

    def add(self, config: Any, workers: int) -> None:
        """Count one cluster of *config* with *workers* workers."""
        self.clusters += 1
        self.workers += workers
        self.cores += config.get("scheduler_cores", 1) + workers * config.get("worker_cores", 1)
        self.memory += config.get("scheduler_memory", 0) + workers * config.get("worker_memory", 0)

    def add_cluster(self, cluster: Any) -> None:
        """Count a backend cluster record with its active workers."""
        self.add(cluster.config, len(cluster.active_workers()))


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:g} GiB"


class SciplatBackendMixin(LocalBackend):
    """What sciplat adds to dask-gateway's local backends (see the module docstring)."""

    cluster_config_class = Type(
        "sciplat.hub.gateway.backend.SciplatClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use.",
        config=True,
    )

    homes_dir = Unicode(
        "",
        help="Directory of the users' homes (``<data>/home``); a cluster's $HOME is "
        "``<homes_dir>/<user>`` when that exists.",
        config=True,
    )

    restart_grace = Float(
        60.0,
        min=0.0,
        help="""Seconds a running cluster loaded from the database at start-up may go without a
        heartbeat (on top of ``cluster_heartbeat_timeout``), so clusters that outlived a
        gateway restart have time to reach the new gateway before they are declared dead.""",
        config=True,
    )

    fork_servers = Bool(
        True,
        help="""Fork schedulers and workers from a server per image environment that has
        imported dask already (``sciplat.hub.gateway.forkserver``); saves the imports (about
        1.5 s) at every process start. Off: start each as a new process.""",
        config=True,
    )

    # -- set-up: our routes next to dask-gateway's own ------------------------------------
    async def setup(self, app: Any) -> None:
        #: Clusters wanting more workers than the user's quotas allowed when last reconciled.
        self._held_back: set[str] = set()
        #: Fork servers by the Python of their image environment.
        self._fork_servers: dict[Path, Zygote] = {}
        self._warming: set[asyncio.Future] = set()
        await super().setup(app)
        if self.fork_servers:  # the default environment's, ready before the first cluster
            self._fork_server(Path(sys.prefix) / "bin" / "python")
        grace_until = timestamp() + int(self.restart_grace * 1000)
        survivors = [c for c in self.db.active_clusters() if c.status == JobStatus.RUNNING]
        for cluster in survivors:
            cluster.last_heartbeat = grace_until
        if survivors:
            self.log.info("%d cluster(s) kept running across the restart", len(survivors))
        app.middlewares.append(error_header_middleware)
        dashboards = dashboard.install(app, self)
        adminapi.install(app, self, dashboards)

    # -- per-user limits ------------------------------------------------------------------
    def usage(self, username: str | None = None, *, exclude: str | None = None) -> Usage:
        """What the active clusters of *username* (everyone when None) hold right now."""
        usage = Usage()
        for cluster in self.db.list_clusters(username=username):
            if cluster.name != exclude:
                usage.add_cluster(cluster)
        return usage

    async def start_cluster(self, user: Any, cluster_options: dict) -> str:
        options, config = await self.process_cluster_options(user, cluster_options)
        limit = config.user_max_clusters
        running = self.db.list_clusters(username=user.name)
        if limit and len(running) >= limit:
            raise PublicException(
                f"You already have {len(running)} running cluster(s); the limit is {limit} "
                "per user (gateway.max_clusters_per_user). Stop one with "
                "cluster.shutdown() or gateway.stop_cluster(name) first."
            )
        self._check_user_resources(user.name, config.to_dict(), workers=0)
        await self.prepare_user(user.name)
        cluster = self.db.create_cluster(user.name, options, config.to_dict())
        self.log.info("Created cluster %s for user %s", cluster.name, user.name)
        self.queue.put(cluster)
        return cluster.name

    async def prepare_user(self, username: str) -> None:
        """Make sure *username* can run processes (a Unix account when clusters run as users)."""

    def _check_user_resources(
        self, username: str, config: dict, *, workers: int, exclude: str | None = None
    ) -> None:
        """Refuse (PublicException naming the limit) if *workers* more would exceed a quota."""
        usage = self.usage(username, exclude=exclude)
        usage.add(config, workers)
        max_cores = config.get("user_max_cores")
        max_memory = config.get("user_max_memory")
        if max_cores is not None and usage.cores > max_cores:
            raise PublicException(
                f"This would use {usage.cores:g} cores across your clusters (schedulers "
                f"included); your quota dask_cores is {max_cores:g} cores."
            )
        if max_memory is not None and usage.memory > max_memory:
            raise PublicException(
                f"This would use {_gib(usage.memory)} across your clusters (schedulers "
                f"included); your quota dask_memory is {_gib(max_memory)}."
            )

    async def forward_message_to_scheduler(self, cluster: Any, msg: dict) -> None:
        if msg.get("op") == "scale":
            internal = self.db.get_cluster(cluster.name)
            self._check_user_resources(
                cluster.username,
                dict(internal.config),
                workers=msg["count"],
                exclude=cluster.name,
            )
        await super().forward_message_to_scheduler(cluster, msg)

    async def _check_cluster_scale(self, cluster: Any) -> None:
        # Adaptive scaling asks through heartbeats: create only the workers the user's
        # quotas across all their clusters still allow.
        active = len(cluster.active_workers())
        if cluster.count > active:
            allowed = self._workers_allowed(cluster)
            if allowed < cluster.count - active:
                if cluster.name not in self._held_back:  # once, not at every heartbeat
                    self.log.warning(
                        "Cluster %s of %s wants %d workers; the user's quotas allow %d more",
                        cluster.name,
                        cluster.username,
                        cluster.count,
                        allowed,
                    )
                self._held_back.add(cluster.name)
                if allowed <= 0:
                    return
                original = cluster.count
                cluster.count = active + allowed
                try:
                    await super()._check_cluster_scale(cluster)
                finally:
                    cluster.count = original
                return
        self._held_back.discard(cluster.name)
        await super()._check_cluster_scale(cluster)

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        await super().on_cluster_heartbeat(cluster_name, msg)
        # Upstream reconciles a cluster only when its wanted count changes; one held back by the
        # quotas keeps asking for the same count, so it would never get the workers another
        # cluster's end frees. Reconcile it again at each heartbeat while it is held back.
        if cluster_name in self._held_back:
            cluster = self.db.get_cluster(cluster_name)
            if cluster is None or cluster.target > JobStatus.RUNNING:
                self._held_back.discard(cluster_name)
            else:
                self.queue.put(cluster)

    def _workers_allowed(self, cluster: Any) -> int:
        config = cluster.config
        usage = self.usage(cluster.username)
        allowed = cluster.count
        cores, memory = config.get("worker_cores", 1), config.get("worker_memory", 1)
        if (limit := config.get("user_max_cores")) is not None:
            allowed = min(allowed, int((limit - usage.cores) // cores))
        if (limit := config.get("user_max_memory")) is not None:
            allowed = min(allowed, int((limit - usage.memory) // memory))
        return max(allowed, 0)

    # -- dashboards go through our authenticating handler, not straight to the scheduler --
    async def _check_cluster_proxied(self, cluster: Any) -> None:
        if not cluster.added_to_proxies:
            self.log.info("Adding cluster %s scheduler route to the proxy", cluster.name)
            await self.proxy.add_route(
                kind="SNI", sni=cluster.name, target=cluster.scheduler_address
            )
            cluster.added_to_proxies = True

    # -- processes -----------------------------------------------------------------------
    # Upstream starts schedulers and workers with asyncio subprocesses, whose transports kill
    # the child when they are closed - so every cluster died with the gateway, whatever
    # stop_clusters_on_shutdown said. Plain Popen children outlive a gateway restart; we reap
    # the ones that exit while we run, so a dead worker is not mistaken for a zombie alive.
    async def start_process(self, cluster: Any, cmd: list[str], env: dict, name: str) -> int:
        workdir = cluster.state["workdir"]
        log_path = os.path.join(self.get_logs_directory(workdir), name + ".log")
        pid = await self._fork_process(cluster, cmd, env, log_path)
        if pid is not None:
            return pid
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(log_path, flags, 0o644)
        try:
            proc = subprocess.Popen(
                cmd,
                preexec_fn=self.make_preexec_fn(cluster),
                start_new_session=True,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(fd)
        self._children()[proc.pid] = proc
        return proc.pid

    def _fork_server(self, python: Path) -> Zygote:
        """The fork server of the environment of *python*, starting (in the background)."""
        server = self._fork_servers.get(python)
        if server is None:
            name = "forkserver-" + "-".join(python.parent.parent.parts[1:]) + ".log"
            log_path = Path(self.clusters_directory).parent / name
            server = Zygote(python, log_path, self.log, module=SERVER_MODULE)
            self._fork_servers[python] = server
            warming = asyncio.ensure_future(server.ready())
            self._warming.add(warming)
            warming.add_done_callback(self._warming.discard)
        return server

    async def _fork_process(
        self, cluster: Any, cmd: list[str], env: dict, log_path: str
    ) -> int | None:
        """Fork ``dask scheduler|worker`` from its environment's fork server; None when there
        is none (then the caller starts the process directly)."""
        if not self.fork_servers or len(cmd) < 2 or cmd[1] not in ("scheduler", "worker"):
            return None
        if Path(cmd[0]).name != "dask":
            return None
        server = self._fork_server(Path(cmd[0]).with_name("python"))
        if not await server.ready():
            return None
        user, uid, gid = self.process_owner(cluster)
        request = {
            "user": user,
            "uid": uid,
            "gid": gid,
            "cwd": cluster.state["workdir"],
            "env": env,
            "log": os.devnull,  # the child opens its log once it is the cluster's user
            "dask_log": log_path,
            "args": cmd[1:],
        }
        return await server.fork(request)

    def process_owner(self, cluster: Any) -> tuple[str, int, int]:
        """User name, uid and gid the processes of *cluster* run as."""
        raise NotImplementedError

    def _children(self) -> dict[int, subprocess.Popen]:
        if not hasattr(self, "_popen_children"):
            self._popen_children: dict[int, subprocess.Popen] = {}
        return self._popen_children

    def _reap(self) -> None:
        children = self._children()
        for pid, proc in list(children.items()):
            if proc.poll() is not None:
                del children[pid]

    def _check_status(self, o: Any) -> bool:
        self._reap()
        return super()._check_status(o)

    async def stop_process(self, pid: int) -> None:
        steps = [
            (signal.SIGINT, self.sigint_timeout),
            (signal.SIGTERM, self.sigterm_timeout),
            (signal.SIGKILL, self.sigkill_timeout),
        ]
        for sig, timeout in steps:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._reap()
                if not is_running(pid):
                    return
                await asyncio.sleep(0.1)
        self._reap()
        if is_running(pid):
            self.log.warning("Failed to stop process %d", pid)

    def get_env(self, cluster: Any) -> dict[str, str]:
        env = super().get_env(cluster)
        workdir = cluster.state.get("workdir")
        if workdir:
            env["DASK_TEMPORARY_DIRECTORY"] = workdir
        if self.homes_dir and (home := Path(self.homes_dir) / cluster.username).is_dir():
            env["HOME"] = str(home)
        return env

    def cluster_directory(self, cluster: Any) -> Path:
        if not self.clusters_directory:
            raise RuntimeError("c.LocalBackend.clusters_directory must be set")
        if not _CLUSTER_NAME.match(cluster.name):
            raise RuntimeError(f"unexpected cluster name {cluster.name!r}")
        return Path(self.clusters_directory) / cluster.name

    def setup_working_directory(self, cluster: Any) -> str:
        """Create the cluster's directory (0700) with its TLS files and logs directory, and
        give exactly those to the cluster's user."""
        base = Path(self.clusters_directory)
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o711)  # users reach their own cluster directory, cannot list others
        workdir = self.cluster_directory(cluster)
        certsdir = Path(self.get_certs_directory(str(workdir)))
        logsdir = Path(self.get_logs_directory(str(workdir)))
        created: list[Path] = []
        for path in (workdir, certsdir, logsdir):
            os.mkdir(path, 0o700)
            created.append(path)
        cert_path, key_path = self._get_tls_paths(str(workdir))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as fh:
                fh.write(data)
            created.append(Path(path))
        self.set_file_permissions(created, cluster.username)
        self.log.debug("Working directory %s for cluster %s created", workdir, cluster.name)
        return str(workdir)


class SciplatLocalBackend(SciplatBackendMixin, LocalBackend):
    """Clusters run as the requesting user's Unix account (sciplat runs as root)."""

    def process_owner(self, cluster: Any) -> tuple[str, int, int]:
        entry = getpwnam(cluster.username)
        return cluster.username, entry.pw_uid, entry.pw_gid

    def set_file_permissions(self, paths: list, username: str) -> None:
        entry = getpwnam(username)
        for path in paths:
            path = Path(path)
            if not path.is_absolute() or Path(self.clusters_directory) not in path.parents:
                raise RuntimeError(f"refusing to chown {path}: not inside a cluster directory")
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    async def prepare_user(self, username: str) -> None:
        from sciplat.hub.accounts import AccountManager
        from sciplat.hub.errors import SciplatSpawnError

        try:
            await AccountManager(Path(self.homes_dir)).ensure(username)
        except SciplatSpawnError as exc:
            self.log.error("No Unix account for %s: %s", username, exc)
            raise PublicException(f"Cannot run a cluster as {username!r}: {exc}") from exc
        getpwnam.cache_clear()

    async def do_setup(self) -> None:
        await super().do_setup()
        if os.geteuid() != 0:
            raise RuntimeError(
                "SciplatLocalBackend runs clusters as the users' Unix accounts and needs root; "
                "use gateway.backend: unsafe-local for single-uid development"
            )
        _check_traversable(Path(self.clusters_directory))


class SciplatUnsafeLocalBackend(SciplatBackendMixin, UnsafeLocalBackend):
    """Clusters run as sciplat's own uid: no separation between users. Development only."""

    def process_owner(self, cluster: Any) -> tuple[str, int, int]:
        return getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid()

    async def do_setup(self) -> None:
        await super().do_setup()
        self.log.warning(
            "!!! dask-gateway is running every user's clusters as uid %d with NO separation "
            "between users (single-uid development mode). Run sciplat as root for the "
            "per-user LocalBackend. !!!",
            os.geteuid(),
        )


def _check_traversable(directory: Path) -> None:
    """Every ancestor of the clusters directory must let other users through (o+x)."""
    for parent in [directory, *directory.parents]:
        if not parent.exists():
            continue
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise RuntimeError(
                f"{parent} is not searchable by other users (mode "
                f"{stat.filemode(os.stat(parent).st_mode)}); clusters run as the users' "
                f"accounts could not reach {directory}. chmod o+x {parent} or move "
                "data_dir."
            )
