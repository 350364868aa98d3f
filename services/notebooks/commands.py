"""``sciplat check notebooks`` (bots) and ``sciplat bench notebooks`` (timings)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from sciplat.cli import group

__all__ = ["register"]

#: The notebook ``sciplat bench notebooks`` times by default (short, runs anywhere).
DEFAULT_BENCH_NOTEBOOK = "templates/platform-check"


def _root() -> Path:
    import sciplat.notebooks

    return Path(sciplat.notebooks.__file__).resolve().parent


def _common(f):
    f = click.option("--bot-prefix", default="bot-notebooks", show_default=True,
                     help="Bot users are <prefix>-<n> (hub users and, as root, Unix "
                     "accounts).")(f)  # fmt: skip
    f = click.option("--lab-size", help="Size of the bots' labs (a name from sciplat.yaml "
                     "sizes; default: the platform's default).")(f)  # fmt: skip
    f = click.option("--url", default="http://127.0.0.1:8000", show_default=True,
                     help="Public URL of the platform (the hub's proxy).")(f)  # fmt: skip
    f = click.option("--admin-token", envvar="SCIPLAT_ADMIN_TOKEN", required=True,
                     help="Hub token with admin:users and tokens scopes "
                     "($SCIPLAT_ADMIN_TOKEN); makes bot users and their tokens.")(f)  # fmt: skip
    return f


def _via(f):
    return click.option(
        "--via",
        type=click.Choice(["lab", "service"]),
        default="lab",
        show_default=True,
        help="lab: spawn each bot's lab and run the cells in a kernel of it (REST + kernel "
        "websocket, like mobu); service: submit to the notebooks execution service.",
    )(f)


def register(cli: click.Group) -> None:
    @group("check").command("notebooks")
    @_common
    @click.option("--bots", default=1, show_default=True, help="Bot users running at once.")
    @click.option(
        "--jobs",
        default=1,
        show_default=True,
        help="Notebooks each bot runs at once (the service queues beyond "
        "notebooks.max_concurrent).",
    )
    @_via
    @click.option(
        "--spawn/--no-spawn",
        default=False,
        help="With --via service: also spawn each bot's lab, check it serves, and stop it at "
        "the end (--via lab always does).",
    )
    @click.option("--only", multiple=True, help="Run only notebooks whose path contains this.")
    @click.option(
        "--timeout",
        default=1800.0,
        show_default=True,
        help="Seconds to wait for each notebook's run.",
    )
    @click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the JSON report (per-cell timings, failures) to this file.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    def check_notebooks(
        url, admin_token, bot_prefix, lab_size, bots, jobs, via, spawn, only, timeout,
        report_path, as_json,
    ) -> None:  # fmt: skip
        """Run every notebook in notebooks/ as bot users (in their labs' kernels, or through the
        execution service); per-cell timings and failures; exit 1 on any failure."""
        from sciplat.services.notebooks.bots import BotClient, collect_notebooks, run_all

        root = _root()
        notebooks = [
            p for p in collect_notebooks(root) if not only or any(o in str(p) for o in only)
        ]
        if not notebooks:
            raise click.ClickException(f"no notebook under {root} matches {list(only)}")
        spawn = spawn or via == "lab"
        click.echo(f"{len(notebooks)} notebooks x {bots} bot(s) on {url} via {via}", err=True)
        started = time.monotonic()
        options = {"size": lab_size} if lab_size else {}
        clients = [
            BotClient(url, admin_token, f"{bot_prefix}-{i}", lab_options=options)
            for i in range(bots)
        ]
        spawn_seconds: dict[str, float] = {}
        spawn_errors: dict[str, str] = {}
        reports = []
        try:
            if spawn:
                for bot in clients:
                    try:
                        spawn_seconds[bot.name] = round(bot.spawn_lab(), 3)
                        status = bot.lab_status()
                        if status != 200:
                            raise RuntimeError(f"its lab answers HTTP {status} to the bot")
                    except Exception as exc:
                        spawn_errors[bot.name] = f"{type(exc).__name__}: {exc}"
                        click.echo(f"FAIL {bot.name}: lab: {spawn_errors[bot.name]}", err=True)
                    else:
                        click.echo(
                            f"ok   {bot.name}: lab ready in {spawn_seconds[bot.name]:.1f} s",
                            err=True,
                        )

            def show(report):
                mark = "ok  " if report.ok else "FAIL"
                click.echo(
                    f"{mark} {report.bot} {report.notebook} {report.status} {report.seconds:.1f} s",
                    err=True,
                )
                if not report.ok and report.error:
                    where = report.error.get("index")
                    click.echo(
                        f"     cell {where}: {report.error.get('ename')}: "
                        f"{report.error.get('evalue')}",
                        err=True,
                    )
                    for line in (report.error.get("traceback") or "").splitlines()[-4:]:
                        click.echo(f"     | {line}", err=True)

            # A bot whose lab did not start has nowhere to run (its failure is reported).
            runners = [b for b in clients if via != "lab" or b.name not in spawn_errors]
            reports = run_all(
                runners, notebooks, root, jobs=jobs, timeout=timeout, via=via, progress=show
            )
        finally:
            for bot in clients:
                if spawn:
                    bot.stop_lab()
                bot.close()
        failed = [r for r in reports if not r.ok]
        report = {
            "url": url,
            "via": via,
            "bots": bots,
            "jobs": jobs,
            "wall_seconds": round(time.monotonic() - started, 3),
            "spawn_seconds": spawn_seconds,
            "spawn_errors": spawn_errors,
            "notebooks": [r.__dict__ for r in reports],
            "failed": len(failed) + len(spawn_errors),
        }
        if report_path:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=2, default=str))
        if as_json:
            click.echo(json.dumps(report, indent=2, default=str))
        else:
            for r in reports:
                cells = ", ".join(f"{c['index']}:{c['seconds']}" for c in r.cells)
                click.echo(
                    f"{r.notebook:55} {r.status:10} kernel {r.kernel_seconds} s; cells [{cells}]"
                )
            click.echo(
                f"{len(reports) - len(failed)} passed, {len(failed)} failed"
                + (f", {len(spawn_errors)} lab(s) failed" if spawn_errors else "")
            )
        sys.exit(1 if report["failed"] else 0)

    @group("bench").command("notebooks")
    @_common
    @click.option("--bots", default=4, show_default=True, help="Concurrent bots.")
    @click.option("--renders", default=50, show_default=True, help="Cached renders to time.")
    @click.option("--notebook", "names", multiple=True, default=[DEFAULT_BENCH_NOTEBOOK],
                  show_default=True, help="Notebook(s) under notebooks/ (no .ipynb) for the cold "
                  "runs; the first is also the cached and the concurrent one.")  # fmt: skip
    @click.option(
        "--all", "every", is_flag=True, help="Cold-run every notebook (after --notebook)."
    )
    @_via
    @click.option(
        "--spawn/--no-spawn",
        default=False,
        help="With --via service: also time the bench bot's lab start (--via lab always does).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def bench_notebooks(
        url, admin_token, bot_prefix, lab_size, bots, renders, names, every, via, spawn, as_json
    ) -> None:
        """Cold run time, cached render latency, and N bots running notebooks at once."""
        from sciplat.services.notebooks.bench import run_notebook_bench
        from sciplat.services.notebooks.bots import collect_notebooks

        root = _root()
        paths = [root / f"{n}.ipynb" for n in names]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise click.ClickException(f"no such notebook: {', '.join(missing)}")
        if every:
            paths += [p for p in collect_notebooks(root) if p not in paths]
        try:
            result = run_notebook_bench(
                url, admin_token, paths, root, bots=bots, renders=renders, spawn=spawn,
                prefix=bot_prefix, via=via, lab_options={"size": lab_size} if lab_size else None,
                say=lambda m: click.echo(m, err=True),
            )  # fmt: skip
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        if as_json:
            click.echo(json.dumps(result, indent=2, default=str))
        else:
            for c in result["cold"]:
                click.echo(
                    f"cold {c['notebook']:45} {c['status']:10} {c['total_seconds']:7.1f} s "
                    f"(kernel {c['kernel_start_seconds']} s, cells {c['execution_seconds']} s)"
                )
            cached, conc = result["cached"], result["concurrent"]
            click.echo(
                f"cached html p50/p95 {cached['html_ms_p50']}/{cached['html_ms_p95']} ms, "
                f"resubmit {cached['resubmit_ms_p50']}/{cached['resubmit_ms_p95']} ms "
                f"(goal < {cached['goal_ms']:g} ms)"
            )
            click.echo(
                f"{conc['bots']} bots at once: success {conc['success_rate']:.0%}, "
                f"p50 {conc['p50_seconds']} s, p95 {conc['p95_seconds']} s, "
                f"wall {conc['wall_seconds']} s"
            )
        if os.environ.get("CI") and result["concurrent"]["success_rate"] < 1:
            sys.exit(1)
