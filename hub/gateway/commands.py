"""``sciplat admin clusters list|scale|stop`` and ``sciplat bench dask``."""

from __future__ import annotations

import json
import sys

import click

from sciplat.config import load_settings
from sciplat.hub.commands import ephemeral_option, json_option

__all__ = ["register"]

_config_opt = click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False),
    help="sciplat.yaml (default: built-in defaults).",
)
_data_opt = click.option("--data-dir", type=click.Path(file_okay=False), help="Root of all state.")
_token_opt = click.option(
    "--token",
    envvar="SCIPLAT_ADMIN_TOKEN",
    help="A hub admin's token (default: the sciplat-cli service token of this machine).",
)


def _say(message: str) -> None:
    click.echo(f"[sciplat] {message}", err=True)


def _admin(config: str | None, data_dir: str | None, token: str | None):
    from sciplat.hub.gateway.admin import ClustersAdmin
    from sciplat.hub.gateway.server_config import PREFIX

    settings = load_settings(config, data_dir=data_dir)
    if token is None:
        cli_token = settings.hub_state_dir / "cli-token"
        if not cli_token.exists():
            raise click.ClickException(
                f"no token: {cli_token} does not exist (is the platform set up here?); "
                "pass --token with a hub admin's token"
            )
        token = cli_token.read_text().strip()
    return ClustersAdmin(f"http://127.0.0.1:{settings.hub.port}{PREFIX}", token)


def _run(fn):
    from sciplat.hub.gateway.admin import GatewayAdminError

    try:
        return fn()
    except GatewayAdminError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("clusters")
def clusters() -> None:
    """Every user's dask-gateway clusters."""


@clusters.command("list")
@_config_opt
@_data_opt
@_token_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clusters_list(config: str | None, data_dir: str | None, token: str | None, as_json: bool):
    """All active clusters: owner, workers, cores and memory, totals against the machine."""
    from sciplat.hub.gateway.admin import format_table

    with _admin(config, data_dir, token) as admin:
        snapshot = _run(admin.snapshot)
    click.echo(json.dumps(snapshot, indent=2) if as_json else format_table(snapshot))


@clusters.command("scale")
@_config_opt
@_data_opt
@_token_opt
@click.argument("name")
@click.argument("workers", type=click.IntRange(min=0))
def clusters_scale(
    config: str | None, data_dir: str | None, token: str | None, name: str, workers: int
):
    """Scale cluster NAME to WORKERS workers."""
    with _admin(config, data_dir, token) as admin:
        note = _run(lambda: admin.scale(name, workers))
    click.echo(note or f"cluster {name} scaling to {workers} worker(s)")


@clusters.command("stop")
@_config_opt
@_data_opt
@_token_opt
@click.argument("name", required=False)
@click.option("--user", help="Stop every cluster of this user.")
@click.option("--all", "stop_all", is_flag=True, help="Stop every cluster.")
def clusters_stop(
    config: str | None,
    data_dir: str | None,
    token: str | None,
    name: str | None,
    user: str | None,
    stop_all: bool,
):
    """Stop cluster NAME, or every cluster of --user, or --all."""
    if sum(bool(x) for x in (name, user, stop_all)) != 1:
        raise click.UsageError("give exactly one of NAME, --user or --all")
    with _admin(config, data_dir, token) as admin:
        if name:
            _run(lambda: admin.stop(name))
            stopped = [name]
        else:
            stopped = _run(lambda: admin.stop_where(user=user))
    click.echo(f"stopped {len(stopped)} cluster(s): {' '.join(stopped)}".rstrip(": "))


@click.command("dask")
@_config_opt
@_data_opt
@click.option("--clusters", default=3, show_default=True, help="Clusters to start (timed).")
@click.option("--workers", default=2, show_default=True, help="Workers to add one by one.")
@click.option("--tasks", default=2000, show_default=True, help="Tasks in the map-reduce.")
@ephemeral_option
@json_option
def bench_dask(
    config: str | None,
    data_dir: str | None,
    clusters: int,
    workers: int,
    tasks: int,
    ephemeral: bool,
    as_json: bool,
) -> None:
    """Cluster-ready time, per-worker time and map-reduce throughput of dask-gateway."""
    from sciplat.hub.gateway.bench import run_dask_bench

    if clusters < 1 or workers < 1 or tasks < 1:
        raise click.UsageError("--clusters, --workers and --tasks must be at least 1")
    settings = load_settings(config, data_dir=data_dir)
    result = run_dask_bench(
        settings, ephemeral=ephemeral, clusters=clusters, workers=workers, tasks=tasks, say=_say
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        mr = result["map_reduce"]
        click.echo(
            f"cluster ready: median {result['cluster_ready_s']['median']} s "
            f"(goal < {result['goal']['cluster_ready_s']} s)\n"
            f"worker start:  median {result['worker_s']['median']} s "
            f"(goal < {result['goal']['worker_s']} s)\n"
            f"map-reduce:    {mr['tasks']} tasks on {mr['workers']} workers, "
            f"{mr['tasks_per_s']} tasks/s"
        )
    sys.stdout.flush()


def register(cli: click.Group) -> None:
    from sciplat.cli import group

    group("admin").add_command(clusters)
    group("bench").add_command(bench_dask)
