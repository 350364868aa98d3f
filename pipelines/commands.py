"""``sciplat data build|info``: the simulated data preview from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["register"]


def _settings(data_dir: str | None, config_path: str | None):
    from sciplat.config import load_settings

    return load_settings(config_path, data_dir=data_dir)


def _dataset_root(data_dir: str | None, config_path: str | None) -> Path:
    return _settings(data_dir, config_path).dataset_dir


@click.group("data")
def data() -> None:
    """The simulated data preview (images in a Butler repo, catalogs in DuckDB)."""


@data.command("build")
@click.option(
    "--size",
    type=click.Choice(["tiny", "small", "large"]),
    default=None,
    help="tiny: CI (<1 min); small: the platform default (<5 min); large: 10M-row catalogs. "
    "Default: `dataset` in sciplat.yaml (small).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Root of sciplat's state.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--seed", type=int, default=42, show_default=True, help="Simulation seed.")
@click.option("--force", is_flag=True, help="Delete what is there and build anew.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build(
    size: str | None,
    data_dir: str | None,
    config_path: str | None,
    seed: int,
    force: bool,
    quiet: bool,
) -> None:
    """Build (or resume, or find) the data preview under <data-dir>/dataset."""
    from sciplat.pipelines.dataset import DatasetError, build_dataset, load_info

    settings = _settings(data_dir, config_path)
    root = settings.dataset_dir
    size = size or settings.dataset
    try:
        before = None if force else load_info(root)
        info = build_dataset(root, size=size, seed=seed, progress=not quiet, force=force)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    if before is not None:
        click.echo(
            f"data preview already built in {root} ({info.size}, seed {info.seed}, "
            f"{info.counts.get('dp1.Object', 0)} Objects, {info.counts.get('images', 0)} images)"
        )
    else:
        click.echo(
            f"built the {info.size} data preview in {root} in {info.build_seconds:.0f} s: "
            f"{info.counts.get('dp1.Object', 0)} Objects, {info.counts.get('images', 0)} images"
        )


@data.command("info")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Root of sciplat's state.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
def info(data_dir: str | None, config_path: str | None) -> None:
    """Print dataset.json of the data preview (exit 1 if there is none)."""
    from sciplat.pipelines.dataset import DatasetError, load_info

    root = _dataset_root(data_dir, config_path)
    try:
        found = load_info(root)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    if found is None:
        raise click.ClickException(
            f"no data preview in {root}: run `sciplat data build --size tiny|small|large`"
        )
    click.echo(json.dumps({"root": str(root), **found.model_dump()}, indent=2))


@click.command("data-build")
@click.option(
    "--size", type=click.Choice(["tiny", "small", "large"]), default="tiny", show_default=True
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench_data_build(size: str, seed: int, as_json: bool) -> None:
    """Time a from-scratch build of the data preview in a temporary directory."""
    import shutil
    import tempfile
    import time

    from sciplat.pipelines.dataset import DatasetError, build_dataset

    scratch = Path(tempfile.mkdtemp(prefix="sciplat-bench-data-"))
    try:
        wall, cpu = time.monotonic(), time.process_time()
        try:
            info = build_dataset(scratch / "dataset", size=size, seed=seed, progress=not as_json)
        except DatasetError as exc:
            raise click.ClickException(str(exc)) from exc
        result = {
            "size": size,
            "seed": seed,
            "wall_seconds": round(time.monotonic() - wall, 1),
            "parent_cpu_seconds": round(time.process_time() - cpu, 1),
            "objects": info.counts.get("dp1.Object", 0),
            "images": info.counts.get("images", 0),
            "counts": info.counts,
            "bytes": sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file()),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"{size}: {result['wall_seconds']} s, {result['objects']} Objects, "
            f"{result['images']} images, {result['bytes'] / 2**20:.0f} MiB"
        )


def register(cli: click.Group) -> None:
    from sciplat.cli import group

    cli.add_command(data)
    group("bench").add_command(bench_data_build)
