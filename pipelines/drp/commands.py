"""``sciplat data release`` (run and publish the mini data release) and ``sciplat bench drp``."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

__all__ = ["register"]


def _bands(value: str | None) -> list[str] | None:
    return [b.strip() for b in value.split(",") if b.strip()] if value else None


@click.command("release")
@click.option("--bands", help="Comma-separated bands (default: all the data preview has).")
@click.option("--region", help="RA,DEC,RADIUS in degrees: only the patches it overlaps.")
@click.option("--cluster", "workers", type=int, default=0, help="Dask workers (0: in-process).")
@click.option("--output-run", help="RUN collection (default: SimCam/runs/drp/<UTC time>).")
@click.option(
    "--publish/--no-publish",
    default=True,
    show_default=True,
    help="Replace the catalogs (Object, Source, ForcedSource) with the results.",
)
@click.option("--postgres-url", help="Also load the tables into this PostgreSQL (writer URL).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Root of sciplat's state.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bars.")
def release(
    bands: str | None,
    region: str | None,
    workers: int,
    output_run: str | None,
    publish: bool,
    postgres_url: str | None,
    data_dir: str | None,
    config_path: str | None,
    quiet: bool,
) -> None:
    """Run the data release pipeline on the data preview and publish its catalogs and coadds."""
    from sciplat.config import load_settings
    from sciplat.pipelines.cli import _client, echo_result
    from sciplat.pipelines.drp.release import ReleaseError, publish_release, run_release

    settings = load_settings(config_path, data_dir=data_dir)
    root = settings.dataset_dir
    if not (root / "butler" / "butler.yaml").exists():
        raise click.ClickException(f"no data preview in {root}: run `sciplat data build` first")
    if postgres_url is None and settings.catalog.backend == "postgres":
        mydb = getattr(settings, "mydb", None)
        postgres_url = getattr(mydb, "writer_url", "") or settings.catalog.url
    with _client(workers) as client:
        try:
            result = run_release(
                root / "butler",
                bands=_bands(bands),
                region=region,
                output_run=output_run,
                client=client,
                progress=not quiet,
            )
        except ReleaseError as exc:
            raise click.ClickException(str(exc)) from exc
    echo_result(result)
    if publish:
        say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
        try:
            counts = publish_release(root, result.output_run, postgres_url=postgres_url, say=say)
        except ReleaseError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            "published: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + " (restart the API service, or wait for it to reopen the catalog, to see them)"
        )
    if result.failed:
        raise SystemExit(1)


@click.command("drp")
@click.option("--data-dir", type=click.Path(), help="Data preview to use (built tiny if absent).")
@click.option("--workers", default="1,2", show_default=True, help="Worker counts to measure.")
@click.option("--bands", help="Comma-separated bands (default: all).")
@click.option("--json", "as_json", is_flag=True)
def bench_drp(data_dir: str | None, workers: str, bands: str | None, as_json: bool) -> None:
    """DRP throughput (detector-visits per minute) and per-step times, 1..N workers.

    One worker runs in this process; more use a dask cluster (the platform's gateway, else a
    LocalCluster). Each run starts from a fresh copy of the raw data's Butler repo.
    """
    from sciplat.pipelines.cli import _client
    from sciplat.pipelines.dataset import build_dataset
    from sciplat.pipelines.drp.release import copy_repo, run_release

    counts = [int(w) for w in workers.split(",") if w.strip()]
    work = Path(tempfile.mkdtemp(prefix="sciplat-bench-drp-"))
    runs = []
    try:
        root = Path(data_dir) / "dataset" if data_dir else work / "dataset"
        build_dataset(root, size="tiny", seed=42, progress=not as_json)
        for count in counts:
            repo = work / f"butler-{count}"
            copy_repo(root / "butler", repo)
            with _client(count if count > 1 else 0) as client:
                start = time.perf_counter()
                result = run_release(
                    repo,
                    bands=_bands(bands),
                    output_run=f"bench/drp-{count}",
                    client=client,
                    progress=not as_json,
                )
                wall = time.perf_counter() - start
            detector_visits = len(result.seconds_by_task.get("calibrate", []))
            runs.append(
                {
                    "workers": count,
                    "detector_visits": detector_visits,
                    "quanta": result.succeeded,
                    "failed_quanta": len(result.failed),
                    "wall_seconds": round(wall, 1),
                    "detector_visits_per_minute": round(detector_visits / wall * 60, 2),
                    "core_seconds": round(sum(sum(v) for v in result.seconds_by_task.values()), 1),
                    "per_step_seconds": {
                        k: round(sum(v), 1) for k, v in result.seconds_by_task.items()
                    },
                    "per_step_median_seconds": {
                        k: round(statistics.median(v), 2) for k, v in result.seconds_by_task.items()
                    },
                    "load_average": [round(x, 1) for x in os.getloadavg()],
                }
            )
            shutil.rmtree(repo, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "benchmark": "drp",
        "data": "tiny (1k x 1k detectors)",
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for r in runs:
        click.echo(
            f"{r['workers']} worker(s): {r['detector_visits']} detector-visits in "
            f"{r['wall_seconds']} s = {r['detector_visits_per_minute']} per minute "
            f"({r['core_seconds']} core-seconds; load {r['load_average'][0]})"
        )


@click.command("publish-apdb")
@click.argument("apdb_config", type=click.Path(exists=True, dir_okay=False))
@click.option("--postgres-url", help="Also load the tables into this PostgreSQL (writer URL).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Root of sciplat's state.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
def publish_apdb_command(
    apdb_config: str, postgres_url: str | None, data_dir: str | None, config_path: str | None
) -> None:
    """Replace dp1.DiaSource/DiaObject with what prompt processing stored in an APDB
    (APDB_CONFIG: its apdb.yaml, made by `sciplat pipeline run prompt --apdb DIR`)."""
    from sciplat.config import load_settings
    from sciplat.pipelines.drp.dia import publish_apdb
    from sciplat.pipelines.drp.release import ReleaseError

    settings = load_settings(config_path, data_dir=data_dir)
    try:
        counts = publish_apdb(
            settings.dataset_dir,
            apdb_config,
            postgres_url=postgres_url,
            say=lambda msg: click.echo(msg, err=True),
        )
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("published: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))


def register(cli: click.Group) -> None:
    from sciplat.cli import group
    from sciplat.pipelines.commands import data

    data.add_command(release)
    data.add_command(publish_apdb_command)
    group("bench").add_command(bench_drp)
