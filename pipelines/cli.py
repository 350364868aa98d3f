"""``sciplat pipeline run`` and ``sciplat bench prompt``."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

__all__ = ["register"]

LSST_DETECTORS = 189
LSST_BUDGET_SECONDS = 60.0


def _repo(repo: str | None, data_dir: str | None, config_path: str | None) -> Path:
    if repo:
        return Path(repo)
    from sciplat.config import load_settings

    return load_settings(config_path, data_dir=data_dir).dataset_dir / "butler"


def _parse_config(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for item in items:
        label, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key:
            raise click.BadParameter(f"{item!r}: expected LABEL:KEY=VALUE", param_hint="--config")
        out[label][key] = value
    return dict(out)


@contextmanager
def _client(workers: int) -> Any:
    """A dask client: a dask-gateway cluster when the platform has one, else a LocalCluster."""
    if workers <= 0:
        yield None
        return
    try:
        from sciplat.dask import get_gateway

        gateway = get_gateway()
        cluster = gateway.new_cluster()
        cluster.scale(workers)
        click.echo(f"dask-gateway cluster {cluster.name} with {workers} workers", err=True)
    except Exception as exc:  # no platform around: run on this machine
        from distributed import LocalCluster

        click.echo(f"no dask-gateway ({exc}); using a LocalCluster of {workers} workers", err=True)
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    from distributed import Client

    client = Client(cluster)
    try:
        if hasattr(cluster, "name"):
            client.wait_for_workers(workers, timeout=300)
        yield client
    finally:
        client.close()
        cluster.close()


def echo_result(result: Any) -> None:
    """Print a pipeline run's failed quanta (stderr) and its counts."""
    for failure in result.failed:
        click.echo(f"FAILED {failure.task} {failure.data_id}: {failure.error}", err=True)
    click.echo(
        f"{result.succeeded} quanta succeeded, {len(result.failed)} failed, "
        f"{result.skipped} skipped in {result.wall_seconds:.1f} s -> {result.output_run}"
    )


@click.group()
def pipeline() -> None:
    """Science pipelines (prompt processing, templates) on the Butler repo."""


@pipeline.command("run")
@click.argument("pipeline_name", metavar="PIPELINE")
@click.option("--data-query", "-d", required=True, help='Butler data query, e.g. "visit = 1".')
@click.option("--repo", type=click.Path(), help="Butler repo (default: the data preview's).")
@click.option("--data-dir", type=click.Path(), help="Data directory (default: sciplat.yaml).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--input", "-i", "inputs", multiple=True, default=["SimCam/defaults"], show_default=True
)
@click.option("--output-run", "-o", required=True, help="RUN collection for the outputs.")
@click.option("--cluster", "workers", type=int, default=0, help="Dask workers (0: in-process).")
@click.option("--apdb", type=click.Path(), help="APDB directory (prompt pipeline).")
@click.option("--alert-archive", type=click.Path(), help="Alert archive directory.")
@click.option("--task-config", "-c", multiple=True, help="LABEL:KEY=VALUE config override.")
def pipeline_run(
    pipeline_name: str,
    data_query: str,
    repo: str | None,
    data_dir: str | None,
    config_path: str | None,
    inputs: tuple[str, ...],
    output_run: str,
    workers: int,
    apdb: str | None,
    alert_archive: str | None,
    task_config: tuple[str, ...],
) -> None:
    """Run PIPELINE (template, prompt or a YAML file) on the quanta of --data-query."""
    from sciplat.pipelines.executor import run_pipeline
    from sciplat.pipelines.tasks.association import create_apdb

    overrides = _parse_config(task_config)
    if pipeline_name == "drp":  # coadds need the sky map's tract and patches in the registry
        from lsst.daf.butler import Butler

        from sciplat.pipelines.drp.skymap import register_skymap

        register_skymap(Butler.from_config(str(_repo(repo, data_dir, config_path)), writeable=True))
    if apdb:
        overrides.setdefault("associate", {})["apdb_config"] = str(create_apdb(Path(apdb)))
    if alert_archive:
        overrides.setdefault("associate", {})["alert_archive"] = str(Path(alert_archive).resolve())
    with _client(workers) as client:
        try:
            result = run_pipeline(
                _repo(repo, data_dir, config_path),
                pipeline_name,
                where=data_query,
                input_collections=list(inputs),
                output_run=output_run,
                config=overrides,
                client=client,
            )
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from exc
    echo_result(result)
    if result.failed:
        raise SystemExit(1)


@click.command("prompt")
@click.option("--data-dir", type=click.Path(), help="Data preview to use (built tiny if absent).")
@click.option("--workers", default="1,2", show_default=True, help="Worker counts to measure.")
@click.option("--json", "as_json", is_flag=True)
def bench_prompt(data_dir: str | None, workers: str, as_json: bool) -> None:
    """Visit arrival -> alerts written: per-detector and per-visit seconds, 1..N workers."""
    from lsst.daf.butler import Butler

    from sciplat.pipelines.dataset import build_dataset
    from sciplat.pipelines.executor import run_pipeline
    from sciplat.pipelines.tasks.association import create_apdb

    counts = [int(w) for w in workers.split(",") if w.strip()]
    work = Path(tempfile.mkdtemp(prefix="sciplat-bench-prompt-"))
    try:
        root = Path(data_dir) / "dataset" if data_dir else work / "dataset"
        build_dataset(root, size="tiny", seed=42, progress=not as_json)
        repo = work / "butler"
        shutil.copytree(root / "butler", repo)
        butler = Butler.from_config(str(repo))
        records = sorted(butler.query_dimension_records("visit"), key=lambda r: r.id)
        band_filter = records[0].physical_filter
        visits = [r.id for r in records if r.physical_filter == band_filter]
        template_visits, science = visits[:2], visits[2:]
        ids = ", ".join(map(str, template_visits))
        run_pipeline(
            repo,
            "template",
            where=f"instrument='SimCam' AND visit IN ({ids})",
            input_collections=["SimCam/defaults"],
            output_run="bench/templates",
            progress=False,
        )
        runs = []
        for n, count in enumerate(counts):
            visit = science[n % len(science)]
            apdb = create_apdb(work / f"apdb-{count}")
            with _client(count if count > 1 else 0) as client:
                start = time.perf_counter()
                result = run_pipeline(
                    repo,
                    "prompt",
                    where=f"instrument='SimCam' AND visit = {visit}",
                    input_collections=["SimCam/defaults", "bench/templates"],
                    output_run=f"bench/prompt-{count}",
                    config={"associate": {"apdb_config": str(apdb)}},
                    client=client,
                    progress=not as_json,
                )
                wall = time.perf_counter() - start
            detectors = len(result.seconds_by_task.get("associate", [])) or 1
            per_detector = sum(sum(v) for v in result.seconds_by_task.values()) / detectors
            runs.append(
                {
                    "workers": count,
                    "visit": visit,
                    "detectors": detectors,
                    "failed_quanta": len(result.failed),
                    "visit_seconds": round(wall, 2),
                    "per_detector_seconds": round(per_detector, 2),
                    "per_task_median_seconds": {
                        k: round(statistics.median(v), 2) for k, v in result.seconds_by_task.items()
                    },
                }
            )
        per_det = min(r["per_detector_seconds"] for r in runs)
        out = {
            "benchmark": "prompt",
            "data": "tiny (1k x 1k detectors)",
            "runs": runs,
            "lsst": {
                "detectors": LSST_DETECTORS,
                "budget_seconds": LSST_BUDGET_SECONDS,
                "core_seconds_per_visit": round(per_det * LSST_DETECTORS, 1),
                "workers_needed_for_budget": int(
                    -(-per_det * LSST_DETECTORS // LSST_BUDGET_SECONDS)
                ),
                "note": "LSST detectors are 4k x 4k (16x these pixels): scale accordingly",
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for r in runs:
        click.echo(
            f"{r['workers']} worker(s): visit {r['visit_seconds']} s, "
            f"{r['per_detector_seconds']} s per detector ({r['detectors']} detectors)"
        )
    lsst = out["lsst"]
    click.echo(
        f"189 detectors: {lsst['core_seconds_per_visit']} core-seconds per visit -> "
        f"{lsst['workers_needed_for_budget']} workers for 60 s (at this detector size)"
    )


def register(cli: click.Group) -> None:
    from sciplat.cli import group

    cli.add_command(pipeline)
    group("bench").add_command(bench_prompt)
