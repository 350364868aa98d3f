"""``sciplat bench spawn``: spawn-to-ready latency through the real hub, proxy and spawner.

A warm-up spawn (reported, not counted) comes first. A spawn is timed from the REST
``POST /hub/api/users/<u>/server`` to the first 200 from
``/user/<u>/api/status`` through the proxy (the lab answering its user). Each spawn uses its
own user, so the first-login work (Unix account, home) is included.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sciplat.config import Settings
from sciplat.hub.platform import Platform

__all__ = ["percentile", "run_spawn_bench", "spawn_and_wait"]


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
    """Spawn *user*'s default lab and return seconds until it answers through the proxy."""
    start = time.perf_counter()
    r = await client.post(
        f"{base}/hub/api/users/{user}/server", json={"user_options": options or {}}
    )
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn of {user} refused: HTTP {r.status_code} {r.text[:300]}")
    deadline = start + timeout
    while time.perf_counter() < deadline:
        status = await client.get(f"{base}/user/{user}/api/status", follow_redirects=False)
        if status.status_code == 200:
            return time.perf_counter() - start
        info = await client.get(f"{base}/hub/api/users/{user}")
        server = info.json().get("servers", {}).get("")
        if server is None and status.status_code != 200:
            progress = await client.get(f"{base}/hub/api/users/{user}/server/progress")
            raise RuntimeError(f"spawn of {user} failed: {progress.text[-500:]}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{user}'s lab not ready after {timeout:.0f} s")


async def _stop(client: httpx.AsyncClient, base: str, user: str) -> None:
    await client.delete(f"{base}/hub/api/users/{user}/server")
    for _ in range(300):
        info = await client.get(f"{base}/hub/api/users/{user}")
        if "" not in info.json().get("servers", {}):
            return
        await asyncio.sleep(0.1)


async def _phase(platform: Platform, users: list[str], concurrent: bool) -> dict[str, Any]:
    base = platform.local_url
    headers = {"Authorization": f"token {platform.api_token()}"}
    times: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        r = await client.post(f"{base}/hub/api/users", json={"usernames": users})
        if r.status_code not in (201, 409):
            raise RuntimeError(f"could not create bench users: HTTP {r.status_code} {r.text}")

        async def one(user: str) -> None:
            try:
                times.append(await spawn_and_wait(client, base, user))
            except Exception as exc:  # counted, reported, never hidden
                errors.append(f"{user}: {exc}")

        if concurrent:
            await asyncio.gather(*(one(u) for u in users))
            await asyncio.gather(*(_stop(client, base, u) for u in users))
        else:
            for user in users:
                await one(user)
                await _stop(client, base, user)
    return {
        "n": len(users),
        "ok": len(times),
        "failures": len(errors),
        "p50_s": _round(percentile(times, 50)),
        "p95_s": _round(percentile(times, 95)),
        "max_s": _round(max(times) if times else None),
        "mean_s": _round(statistics.fmean(times) if times else None),
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


def run_spawn_bench(
    settings: Settings,
    *,
    sequential: int = 20,
    concurrent: int = 10,
    ephemeral: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run both phases; with *ephemeral*, on a throw-away platform that is removed after."""
    tmp: Path | None = None
    if ephemeral:
        tmp = Path(tempfile.mkdtemp(prefix="sciplat-bench-", dir="/var/tmp"))
        tmp.chmod(0o755)
        settings = ephemeral_settings(settings, tmp)
    platform = Platform(settings, log_level="WARN")
    tag = f"{os.getpid() % 10000:04d}"
    seq_users = [f"bench{tag}-s{i:02d}" for i in range(sequential)]
    con_users = [f"bench{tag}-c{i:02d}" for i in range(concurrent)]
    try:
        if ephemeral:
            say(f"starting a throw-away platform in {tmp}")
            platform.start(say=say, build_data=False)
        say("warm-up spawn (not counted: it may wait for the image's lab zygote)")
        warmup = asyncio.run(_phase(platform, [f"bench{tag}-w"], concurrent=False))
        say(f"{sequential} sequential spawns")
        seq = asyncio.run(_phase(platform, seq_users, concurrent=False))
        say(f"{concurrent} concurrent spawns")
        con = asyncio.run(_phase(platform, con_users, concurrent=True))
    finally:
        if ephemeral:
            platform.stop(say=say)
            _remove_accounts(platform.settings, [*seq_users, *con_users, f"bench{tag}-w"])
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "spawn",
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "warmup_s": warmup["max_s"],
        "sequential": seq,
        "concurrent": con,
        "goal": {"p50_s": 3.0, "p95_s": 5.0, "failures": 0},
    }


def _remove_accounts(settings: Settings, users: list[str]) -> None:
    if os.geteuid() != 0:
        return
    from sciplat.hub.accounts import AccountManager

    manager = AccountManager(settings.homes_dir)

    async def remove_all() -> None:
        for user in users:
            await manager.remove(user)

    asyncio.run(remove_all())
