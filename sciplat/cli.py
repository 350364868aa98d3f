"""The ``sciplat`` command.

Each area contributes its commands from its own module (listed in :data:`COMMAND_MODULES`): a
module defines ``register(cli: click.Group) -> None`` and adds commands or subcommands of the
shared ``bench``/``admin``/``check`` groups (:func:`group`). Modules are imported when the
command line is parsed, so a broken area names itself in the error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from sciplat.config import Settings, load_settings

#: Modules that add commands. Keep sorted; one line per area.
COMMAND_MODULES: list[str] = [
    "sciplat.helmchart",
    "sciplat.hub.commands",
    "sciplat.hub.gateway.commands",
    "sciplat.pipelines.cli",
    "sciplat.pipelines.commands",
    "sciplat.pipelines.drp.commands",
    "sciplat.services.commands",
    "sciplat.services.images.commands",
    "sciplat.services.mydb.commands",
    "sciplat.services.notebooks.commands",
    "sciplat.services.portal.commands",
    "sciplat.services.tap.commands",
    "sciplat.services.workspace.commands",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sciplat")
def cli() -> None:
    """sciplat: an open, deployable science platform."""


@cli.group()
def bench() -> None:
    """Benchmarks (JSON out with --json)."""


@cli.group()
def admin() -> None:
    """Operator commands."""


@cli.group()
def check() -> None:
    """Checks that run against a live platform (bots)."""


@cli.group()
def config() -> None:
    """Inspect the configuration schema."""


@config.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of sciplat.yaml."""
    click.echo(json.dumps(Settings.model_json_schema(), indent=2))


@config.command("show")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
def config_show(config_path: str | None) -> None:
    """Print the effective configuration (defaults filled in)."""
    settings = load_settings(config_path)
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


_GROUPS = {"bench": bench, "admin": admin, "check": check, "config": config}


def group(name: str) -> click.Group:
    """One of the shared command groups (``bench``, ``admin``, ``check``, ``config``)."""
    return _GROUPS[name]


def echo_progress(message: str) -> None:
    """A benchmark's progress, on stderr: stdout stays the report."""
    click.echo(f"... {message}", err=True)


def with_load_average(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The report ``run()`` makes, with the machine's load average before and after (the
    figures depend on what else the machine runs: they are kept together)."""
    before = os.getloadavg()
    report = run()
    report["load_average"] = {
        "before": [round(v, 2) for v in before],
        "after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    return report


def _load_areas() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(cli)


def main() -> None:
    _load_areas()
    sys.exit(cli.main(prog_name="sciplat", standalone_mode=True))
