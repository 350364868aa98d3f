"""CLI of the image services: ``sciplat bench images`` and ``sciplat admin build-hips``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from sciplat.cli import group

__all__ = ["register"]


def _dataset_dir(config_path: Path | None, dataset: Path | None) -> Path:
    if dataset is not None:
        return dataset
    from sciplat.config import load_settings

    return load_settings(config_path).dataset_dir


def _dataset_options(command: Callable) -> Callable:
    """``--config`` and ``--dataset``: which data preview a command works on."""
    command = click.option(
        "--dataset",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Data preview root (default: the configured one).",
    )(command)
    return click.option("--config", "config_path", type=click.Path(exists=True, path_type=Path))(
        command
    )


def register(cli: click.Group) -> None:
    @group("bench").command("images")
    @_dataset_options
    @click.option("--url", help="Measure a running platform at this URL instead.")
    @click.option("--token", envvar="SCIPLAT_TOKEN", help="Hub token for --url.")
    @click.option("--seconds", type=float, default=5.0, show_default=True, help="Per load level.")
    @click.option("--repeats", type=int, default=30, show_default=True, help="Latency samples.")
    @click.option(
        "--vs-dachs", is_flag=True, help="Also run GAVO DaCHS' cone search on the same rows."
    )
    @click.option("--json", "as_json", is_flag=True, help="JSON out.")
    def bench_images(
        config_path: Path | None,
        dataset: Path | None,
        url: str | None,
        token: str | None,
        seconds: float,
        repeats: int,
        vs_dachs: bool,
        as_json: bool,
    ) -> None:
        """SIA latency, cone search at 1/4/8 clients, SODA cutouts, HiPS tiles/s."""
        from sciplat.services.images.bench import run_bench

        def say(message: str) -> None:
            click.echo(f"... {message}", err=True)

        report = run_bench(
            dataset=_dataset_dir(config_path, dataset) if url is None else dataset,
            url=url,
            token=token,
            seconds=seconds,
            repeats=repeats,
            vs_dachs=vs_dachs,
            say=say,
        )
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        click.echo(f"SIA query            p50 {report['sia_query']['p50_ms']} ms")
        for size in (100, 1000):
            stats = report[f"soda_cutout_{size}x{size}"]
            click.echo(f"SODA {size}x{size:<13} p50 {stats['p50_ms']} ms")
        for row in report["cone_search"]:
            click.echo(f"cone, {row['clients']} clients      {row['req_per_s']} req/s")
        for row in report.get("dachs", {}).get("cone_search", []):
            ratio = report["cone_search_vs_dachs"].get(str(row["clients"]), {})
            click.echo(
                f"DaCHS cone, {row['clients']} clients {row['req_per_s']} req/s "
                f"(ours/DaCHS {ratio.get('throughput')})"
            )
        if isinstance(report["hips_tiles"], list):
            for row in report["hips_tiles"]:
                click.echo(f"HiPS, {row['clients']} clients      {row['req_per_s']} tiles/s")

    @group("admin").command("build-hips")
    @_dataset_options
    @click.option("--band", "bands", multiple=True, help="Only these bands (repeatable).")
    @click.option("--binning", type=int, default=2, show_default=True, help="Pixels per bin.")
    def build_hips_command(
        config_path: Path | None, dataset: Path | None, bands: tuple[str, ...], binning: int
    ) -> None:
        """(Re)build the HiPS surveys of the data preview (one per band)."""
        from sciplat.services.hips.build import build_hips

        root = _dataset_dir(config_path, dataset)
        built = build_hips(
            root,
            bands=list(bands) or None,
            binning=binning,
            progress=lambda message: click.echo(f"... {message}", err=True),
        )
        for path in built:
            click.echo(str(path))
