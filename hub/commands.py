"""``sciplat up``, ``sciplat down``, ``sciplat status`` and ``sciplat bench spawn``."""

from __future__ import annotations

import json
import signal
import sys
import time

import click

from sciplat.config import Settings, load_settings

__all__ = ["config_option", "data_dir_option", "ephemeral_option", "json_option", "register"]


def _settings(config: str | None, data_dir: str | None, port: int | None) -> Settings:
    settings = load_settings(config, data_dir=data_dir)
    if port is not None:
        settings = settings.model_copy(
            update={"hub": settings.hub.model_copy(update={"port": port})}
        )
        settings = Settings.model_validate(settings.model_dump())
    return settings


def _running_settings(config: str | None, data_dir: str | None) -> Settings:
    """The settings `sciplat up` rendered for this data root (its ports), else the config's."""
    settings = _settings(config, data_dir, None)
    effective = settings.run_dir / "settings.json"
    if effective.exists():
        return Settings.model_validate_json(effective.read_text())
    return settings


config_option = click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False),
    help="sciplat.yaml (default: built-in defaults).",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Root of all state (default: /var/lib/sciplat as root).",
)
_port_opt = click.option("--port", type=int, help="Public port of the proxy (default 8000).")
#: The benches' choice between a throw-away platform and the running one.
ephemeral_option = click.option(
    "--ephemeral/--running",
    default=True,
    show_default=True,
    help="Start a throw-away platform in a temporary directory, or use the running one.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _say(message: str) -> None:
    click.echo(f"[sciplat] {message}", err=True)


@click.command("up")
@config_option
@data_dir_option
@_port_opt
@click.option(
    "--foreground",
    is_flag=True,
    help="Stay attached; Ctrl-C or SIGTERM stops the hub and proxy (for containers).",
)
@click.option("--no-data", is_flag=True, help="Do not build the data preview if it is missing.")
def up(
    config: str | None, data_dir: str | None, port: int | None, foreground: bool, no_data: bool
) -> None:
    """Start the platform: proxy and JupyterHub with SciplatSpawner, in the background."""
    from sciplat.hub.platform import Platform, PlatformError

    settings = _settings(config, data_dir, port)
    platform = Platform(settings)
    try:
        result = platform.start(say=_say, build_data=not no_data)
    except PlatformError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sciplat is up: {result.url}/")
    if result.admin_password:
        click.echo(f"first admin: {result.admin_user}  password: {result.admin_password}")
        click.echo("  (shown once; only its hash is stored)")
    elif result.admin_user:
        click.echo(f"admin user: {result.admin_user} (password set on first run)")
    click.echo(f"logs: {settings.run_dir}/hub.log, proxy.log; stop with `sciplat down`")
    if foreground:
        _wait_foreground(platform)


def _wait_foreground(platform) -> None:
    stop = False

    def handler(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop and platform.hub.pid() is not None:
        time.sleep(0.5)
    platform.stop(labs=False, say=_say)


@click.command("down")
@config_option
@data_dir_option
@click.option("--keep-labs", is_flag=True, help="Stop only the hub and proxy; labs keep running.")
def down(config: str | None, data_dir: str | None, keep_labs: bool) -> None:
    """Stop the labs, the hub and the proxy."""
    from sciplat.hub.platform import Platform

    Platform(_running_settings(config, data_dir)).stop(labs=not keep_labs, say=_say)
    click.echo("sciplat is down")


@click.command("status")
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config: str | None, data_dir: str | None, as_json: bool) -> None:
    """Is the platform running, and which labs."""
    from sciplat.hub.platform import Platform

    info = Platform(_running_settings(config, data_dir)).status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"url:    {info['url']}")
        for name in ("proxy", "hub"):
            pid = info[name]["pid"]
            state = f"running, pid {pid}" if pid else "stopped"
            if name == "hub" and info["healthy"]:
                state += " (healthy)"
            click.echo(f"{name + ':':<8}{state}")
        click.echo(f"labs:   {len(info['labs'])}")
        for lab in info["labs"]:
            click.echo(
                f"  {lab['user']}/{lab['server'] or '(default)'}: image={lab['image']} "
                f"size={lab['size']} ready={lab['ready']}"
            )
    if info["hub"]["pid"] is None:
        sys.exit(3)


@click.command("spawn")
@config_option
@data_dir_option
@click.option("--sequential", default=20, show_default=True, help="Spawns one after another.")
@click.option("--concurrent", default=10, show_default=True, help="Spawns started together.")
@ephemeral_option
@json_option
def bench_spawn(
    config: str | None,
    data_dir: str | None,
    sequential: int,
    concurrent: int,
    ephemeral: bool,
    as_json: bool,
) -> None:
    """Spawn-to-ready latency: p50/p95 of sequential and concurrent spawns."""
    from sciplat.hub.bench import run_spawn_bench

    settings = _running_settings(config, data_dir)
    result = run_spawn_bench(
        settings, sequential=sequential, concurrent=concurrent, ephemeral=ephemeral, say=_say
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for phase in ("sequential", "concurrent", "concurrent_again"):
            r = result[phase]
            click.echo(
                f"{phase:>16}: n={r['n']} p50={r['p50_s']} s p95={r['p95_s']} s "
                f"max={r['max_s']} s failures={r['failures']} load={r['load_average_1m']}"
            )
        click.echo(f"goal met: {result['meets_goal']} ({result['goal']})")


def register(cli: click.Group) -> None:
    from sciplat.cli import group

    cli.add_command(up)
    cli.add_command(down)
    cli.add_command(status)
    group("bench").add_command(bench_spawn)
