"""``sciplat bench notebooks``: cold runs, cached renders and bots running at once.

Three measurements against a live platform, as bot users (:class:`~.bots.BotClient`):

- **cold**: the bot's lab start, then each notebook run fresh (``via="lab"``: in a new kernel
  of that lab; ``via="service"``: through the execution service): the time the bot waited in
  all, the kernel start and the cells' execution;
- **cached**: a finished execution-service run's HTML fetched again and again, and the same run
  resubmitted (answered from the result cache): p50/p95 in milliseconds, goal < 50 ms;
- **concurrent**: N bots start the first notebook at the same moment (``via="lab"``: each
  spawns its lab and runs it there, the time includes the lab start; ``via="service"``: each
  submits it, runs beyond ``notebooks.max_concurrent`` queue): success rate, p50/p95, wall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sciplat.services.notebooks.bots import BotClient, NotebookReport, percentile

__all__ = ["CACHED_GOAL_MS", "run_notebook_bench"]

#: What a cached render should take (issue #8).
CACHED_GOAL_MS = 50.0


def _ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value, 2)


def _cold(report: NotebookReport) -> dict[str, Any]:
    execution = sum(c["seconds"] or 0 for c in report.cells)
    return {
        "notebook": report.notebook,
        "status": report.status,
        "total_seconds": round(report.seconds, 3),
        "kernel_start_seconds": report.kernel_seconds,
        "execution_seconds": round(execution, 3),
        "cells": len(report.cells),
        "error": report.error,
    }


def _concurrent_run(bot: BotClient, notebook: Path, root: Path, via: str) -> NotebookReport:
    """One bot's run in the concurrent measurement; via the lab, its lab start counts too."""
    started = time.monotonic()
    if via == "lab":
        try:
            bot.spawn_lab()
        except Exception as exc:
            return NotebookReport(
                bot.name, str(notebook.relative_to(root)), "refused",
                time.monotonic() - started, via=via,
                error={"index": None, "ename": type(exc).__name__, "evalue": str(exc)},
            )  # fmt: skip
    report = bot.run(notebook, root, via=via)
    report.seconds = time.monotonic() - started
    return report


def run_notebook_bench(
    url: str,
    admin_token: str,
    notebooks: list[Path],
    root: Path,
    *,
    bots: int = 4,
    renders: int = 50,
    spawn: bool = False,
    prefix: str = "bot-notebooks",
    via: str = "lab",
    lab_options: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the platform at *url*; the first of *notebooks* is the cached and concurrent
    one (it must succeed)."""
    result: dict[str, Any] = {"url": url, "via": via, "cold": [], "cached": {}, "concurrent": {}}
    spawn = spawn or via == "lab"
    lead = BotClient(url, admin_token, f"{prefix}-bench", lab_options=lab_options)
    try:
        if spawn:
            result["lab_start_seconds"] = round(lead.spawn_lab(), 3)
            say(f"lab of {lead.name} ready in {result['lab_start_seconds']:.1f} s")
        for path in notebooks:
            report = lead.run(path, root, via=via)
            result["cold"].append(_cold(report))
            say(f"cold {report.notebook}: {report.status} in {report.seconds:.2f} s")
        first = notebooks[0]
        job = lead.wait(lead.submit(first, root, fresh=False), 1800)
        if job["status"] != "succeeded":
            raise RuntimeError(f"{first.relative_to(root)} did not succeed: {job['error']}")
        html_ms, resubmit_ms = [], []
        for _ in range(renders):
            t0 = time.perf_counter()
            lead.api.get(f"/jobs/{job['id']}/html").raise_for_status()
            html_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            again = lead.submit(first, root, fresh=False)
            resubmit_ms.append((time.perf_counter() - t0) * 1000)
            if not again.get("cached"):
                raise RuntimeError(f"a resubmitted {first.name} was not answered from the cache")
        result["cached"] = {
            "notebook": str(first.relative_to(root)),
            "renders": renders,
            "html_ms_p50": _ms(html_ms, 50),
            "html_ms_p95": _ms(html_ms, 95),
            "resubmit_ms_p50": _ms(resubmit_ms, 50),
            "resubmit_ms_p95": _ms(resubmit_ms, 95),
            "goal_ms": CACHED_GOAL_MS,
            "goal_met": max(_ms(html_ms, 95) or 0, _ms(resubmit_ms, 95) or 0) < CACHED_GOAL_MS,
        }
        say(f"cached render p95 {result['cached']['html_ms_p95']} ms")
    finally:
        if spawn:
            lead.stop_lab()
        lead.close()
    clients = [
        BotClient(url, admin_token, f"{prefix}-{i}", lab_options=lab_options) for i in range(bots)
    ]
    try:
        say(f"{bots} bots run {first.relative_to(root)} at once via {via}")
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(bots, 1)) as pool:
            reports = list(pool.map(lambda b: _concurrent_run(b, first, root, via), clients))
        wall = time.monotonic() - t0
    finally:
        for bot in clients:
            if via == "lab":
                bot.stop_lab()
            bot.close()
    seconds = [r.seconds for r in reports]
    result["concurrent"] = {
        "bots": bots,
        "notebook": str(first.relative_to(root)),
        "success_rate": sum(r.ok for r in reports) / max(len(reports), 1),
        "p50_seconds": round(percentile(seconds, 50) or 0, 2),
        "p95_seconds": round(percentile(seconds, 95) or 0, 2),
        "wall_seconds": round(wall, 2),
        "failures": [r.error for r in reports if not r.ok],
    }
    return result
