"""``sciplat bench spawn``: spawn-to-ready latency through the real hub, proxy and spawner.

A spawn is timed as its user waits for it: from the spawn request
(``POST /hub/api/users/<u>/server``, sent with the user's own token) to the first 200 from
``/user/<u>/api/status`` through the proxy (the lab answering its user). In between the bench
waits as the spawn page does, on the hub's progress event stream, so that it does not load the
hub with polling.

Phases (a warm-up spawn, reported but not counted, comes first):

- ``sequential``: new users one after another. Each is the user's first spawn, so it includes
  creating their Unix account and home (as root) - what a user waits for after first login.
- ``concurrent``: new users all at once (first spawns too).
- ``concurrent_again``: the same users at once again, their accounts already made - what
  returning users wait for.

The goal (p50 < 3 s, p95 < 5 s, no failures) is judged on the two first-spawn phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from sciplat.config import Settings
from sciplat.hub.accounts import remove_accounts
from sciplat.hub.platform import Platform

__all__ = ["GOAL", "bench_platform", "percentile", "run_spawn_bench", "spawn_and_wait"]

GOAL = {"p50_s": 3.0, "p95_s": 5.0, "failures": 0}
#: What a bench user's token may do: start, stop and reach their own server.
BENCH_TOKEN_SCOPES = ["servers!user", "access:servers!user"]


def percentile(values: list[float], q: float) -> float | None:
    """The *q*-th percentile (0-100), linear interpolation; None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def spawn_and_wait(
    client: httpx.AsyncClient,
    base: str,
    user: str,
    *,
    options: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> float:
    """Spawn *user*'s default lab and return seconds until it answers through the proxy.

    *client* carries a token that may start and reach *user*'s server.
    """
    start = time.perf_counter()
    r = await client.post(
        f"{base}/hub/api/users/{user}/server", json={"user_options": options or {}}
    )
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn of {user} refused: HTTP {r.status_code} {r.text[:300]}")
    try:
        async with asyncio.timeout(timeout):
            if r.status_code == 202:  # still starting: follow it as the spawn page does
                await _follow_progress(client, base, user)
            while True:
                status = await client.get(f"{base}/user/{user}/api/status")
                if status.status_code == 200:
                    return time.perf_counter() - start
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"{user}'s lab not ready after {timeout:.0f} s") from None


async def _follow_progress(client: httpx.AsyncClient, base: str, user: str) -> None:
    """Until the hub's progress stream of *user*'s spawn says ready; raise if it failed."""
    url = f"{base}/hub/api/users/{user}/server/progress"
    async with client.stream("GET", url, timeout=httpx.Timeout(10, read=None)) as stream:
        if stream.status_code != 200:  # 400: no longer pending (done, or failed just now)
            await stream.aread()
            info = await client.get(f"{base}/hub/api/users/{user}")
            if info.status_code == 200 and "" not in info.json().get("servers", {"": 1}):
                raise RuntimeError(f"spawn of {user} failed: {stream.text[:300]}")
            return
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise RuntimeError(f"spawn of {user} failed: {event.get('message')}")
            if event.get("ready"):
                return


async def _stop(client: httpx.AsyncClient, base: str, user: str) -> None:
    await client.delete(f"{base}/hub/api/users/{user}/server")
    for _ in range(300):
        info = await client.get(f"{base}/hub/api/users/{user}")
        if "" not in info.json().get("servers", {}):
            return
        await asyncio.sleep(0.1)


async def _user_tokens(admin: httpx.AsyncClient, base: str, users: list[str]) -> dict[str, str]:
    """Create *users* (if new) and a token of each that may start and reach their server."""
    r = await admin.post(f"{base}/hub/api/users", json={"usernames": users})
    if r.status_code not in (201, 409):
        raise RuntimeError(f"could not create bench users: HTTP {r.status_code} {r.text}")
    tokens = {}
    for user in users:
        r = await admin.post(
            f"{base}/hub/api/users/{user}/tokens",
            json={"note": "sciplat bench spawn", "scopes": BENCH_TOKEN_SCOPES, "expires_in": 3600},
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"no token for {user}: HTTP {r.status_code} {r.text[:300]}")
        tokens[user] = r.json()["token"]
    return tokens


async def _phase(platform: Platform, users: list[str], concurrent: bool) -> dict[str, Any]:
    base = platform.local_url
    times: list[float] = []
    errors: list[str] = []
    admin_headers = {"Authorization": f"token {platform.api_token()}"}
    async with contextlib.AsyncExitStack() as stack:
        admin = await stack.enter_async_context(
            httpx.AsyncClient(headers=admin_headers, timeout=60)
        )
        tokens = await _user_tokens(admin, base, users)
        clients = {
            user: await stack.enter_async_context(
                httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=60)
            )
            for user, token in tokens.items()
        }

        async def one(user: str) -> None:
            try:
                times.append(await spawn_and_wait(clients[user], base, user))
            except Exception as exc:  # counted, reported, never hidden
                errors.append(f"{user}: {exc}")

        if concurrent:
            await asyncio.gather(*(one(u) for u in users))
            await asyncio.gather(*(_stop(admin, base, u) for u in users))
        else:
            for user in users:
                await one(user)
                await _stop(admin, base, user)
    return {
        "n": len(users),
        "ok": len(times),
        "failures": len(errors),
        "p50_s": _round(percentile(times, 50)),
        "p95_s": _round(percentile(times, 95)),
        "max_s": _round(max(times) if times else None),
        "mean_s": _round(statistics.fmean(times) if times else None),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "errors": errors[:10],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ephemeral_settings(settings: Settings, data_dir: Path) -> Settings:
    """*settings* moved to *data_dir* with free ports and no culling (for benches and tests)."""
    data = settings.model_dump(mode="json")
    data["data_dir"] = str(data_dir)
    data["hub"]["port"] = _free_port()
    data["hub"]["public_url"] = ""
    data["hub"]["cull"]["enabled"] = False
    data["ports"] = {name: _free_port() for name in data["ports"]}
    return Settings.model_validate(data)


@contextlib.contextmanager
def bench_platform(
    settings: Settings,
    *,
    ephemeral: bool,
    name: str,
    accounts: list[str],
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[Platform]:
    """The platform a bench runs on. With *ephemeral*, a throw-away one in a new temporary
    directory, stopped and removed afterwards together with the Unix accounts named in
    *accounts* (a list the bench may still extend); else the running one, left as it is."""
    tmp: Path | None = None
    if ephemeral:
        tmp = Path(tempfile.mkdtemp(prefix=f"sciplat-bench-{name}-", dir="/var/tmp"))
        tmp.chmod(0o755)
        settings = ephemeral_settings(settings, tmp)
    platform = Platform(settings, log_level="WARN")
    try:
        if ephemeral:
            say(f"starting a throw-away platform in {tmp}")
            platform.start(say=say, build_data=False)
        yield platform
    finally:
        if ephemeral:
            platform.stop(say=say)
            remove_accounts(settings.homes_dir, accounts)
            shutil.rmtree(tmp, ignore_errors=True)


def run_spawn_bench(
    settings: Settings,
    *,
    sequential: int = 20,
    concurrent: int = 10,
    ephemeral: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run every phase; with *ephemeral*, on a throw-away platform that is removed after."""
    tag = f"{os.getpid() % 10000:04d}"
    warm_users = [f"bench{tag}-w"]
    seq_users = [f"bench{tag}-s{i:02d}" for i in range(sequential)]
    con_users = [f"bench{tag}-c{i:02d}" for i in range(concurrent)]
    accounts = [*warm_users, *seq_users, *con_users]
    with bench_platform(
        settings, ephemeral=ephemeral, name="spawn", accounts=accounts, say=say
    ) as platform:
        say("warm-up spawn (not counted: it may wait for the image's lab zygote)")
        warmup = asyncio.run(_phase(platform, warm_users, concurrent=False))
        say(f"{sequential} sequential first spawns (new users: account and home included)")
        seq = asyncio.run(_phase(platform, seq_users, concurrent=False))
        say(f"{concurrent} concurrent first spawns (new users)")
        con = asyncio.run(_phase(platform, con_users, concurrent=True))
        say(f"the same {concurrent} users at once again (accounts exist)")
        again = asyncio.run(_phase(platform, con_users, concurrent=True))
    first = (seq, con)
    return {
        "benchmark": "spawn",
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "warmup_s": warmup["max_s"],
        "sequential": seq,
        "concurrent": con,
        "concurrent_again": again,
        "goal": GOAL,
        "meets_goal": all(
            p["failures"] == 0
            and p["p50_s"] is not None
            and p["p50_s"] < GOAL["p50_s"]
            and p["p95_s"] < GOAL["p95_s"]
            for p in first
            if p["n"]
        ),
    }
