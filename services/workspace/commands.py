"""Operator commands for workspaces: ``sciplat admin quota list|set`` (disk, MyDB rows/bytes)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sciplat.cli import group
from sciplat.config import load_settings, parse_bytes

__all__ = ["register"]


def register(cli: click.Group) -> None:
    @group("admin").group("quota")
    def quota() -> None:
        """Workspace disk use and quotas."""

    @quota.command("list")
    @click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="JSON out")
    def quota_list(config_path: Path | None, as_json: bool) -> None:
        """Disk use of every home and group directory against its quota."""
        from sciplat.services.workspace.quota import group_quota, measure, user_quota

        settings = load_settings(config_path)
        rows = []
        if settings.homes_dir.is_dir():
            for home in sorted(settings.homes_dir.iterdir()):
                if home.is_dir():
                    # Group membership lives in the hub; the default groups' quota applies here.
                    limit = user_quota(settings, settings.hub.default_groups, home.name)
                    rows.append(
                        {"kind": "user", "name": home.name, "used": measure(home), "quota": limit}
                    )
        for name in sorted(settings.groups):
            path = settings.groups_dir / name
            rows.append(
                {
                    "kind": "group",
                    "name": name,
                    "used": measure(path) if path.is_dir() else 0,
                    "quota": group_quota(settings, name),
                }
            )
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        click.echo(f"{'kind':6} {'name':24} {'used':>12} {'quota':>12} {'use':>6}")
        for row in rows:
            share = row["used"] / row["quota"] if row["quota"] else 0
            click.echo(
                f"{row['kind']:6} {row['name']:24} {_human(row['used']):>12} "
                f"{_human(row['quota']):>12} {share:6.1%}"
            )

    @quota.command("set")
    @click.argument("kind", type=click.Choice(["user", "group"]))
    @click.argument("name")
    @click.argument("size")
    @click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path))
    @click.option(
        "--resource",
        type=click.Choice(["disk", "mydb_rows", "mydb_bytes"]),
        default="disk",
        show_default=True,
        help="Workspace disk bytes, or the MyDB schema's rows or stored bytes.",
    )
    def quota_set(kind: str, name: str, size: str, config_path: Path | None, resource: str) -> None:
        """Grant a user or group SIZE (e.g. 50G; rows for mydb_rows, e.g. 50000000); 'default'
        returns to the group setting."""
        from sciplat.services.workspace.quota import set_override

        settings = load_settings(config_path)
        if kind == "group" and name not in settings.groups:
            raise click.BadParameter(f"unknown group {name!r} (known: {sorted(settings.groups)})")
        try:
            if size == "default":
                value = None
            elif resource == "mydb_rows":
                value = int(size)
                if value < 0:
                    raise ValueError(f"a row count cannot be negative: {size}")
            else:
                value = parse_bytes(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        set_override(settings, f"{kind}s", name, value, resource)
        shown = "group default" if value is None else _human(value)
        if value is not None and resource == "mydb_rows":
            shown = f"{value} rows"
        click.echo(f"{kind} {name} {resource}: {shown}")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
