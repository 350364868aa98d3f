"""``sciplat bench mydb``."""

from __future__ import annotations

import json

import click

from sciplat.cli import echo_progress, group, with_load_average

__all__ = ["register"]


def register(cli: click.Group) -> None:
    @group("bench").command("mydb")
    @click.option("--rows", default=1_000_000, show_default=True, help="Rows of the upload.")
    @click.option("--objects", default=200_000, show_default=True, help="dp1.Object rows.")
    @click.option(
        "--backend",
        "backends",
        multiple=True,
        type=click.Choice(["duckdb", "postgres"]),
        default=["duckdb"],
        show_default=True,
        help="Backend(s) to measure (repeat the option for both).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def bench_mydb(rows: int, objects: int, backends: tuple[str, ...], as_json: bool) -> None:
        """MyDB: Parquet upload rows/s, create-from-query (DEST_TABLE) time, join latency."""
        from sciplat.services.mydb.bench import run_benchmark

        report = with_load_average(
            lambda: run_benchmark(rows, objects=objects, backends=backends, progress=echo_progress)
        )
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        for backend, figures in report["backends"].items():
            up, made = figures["upload"], figures["create_from_query"]
            click.echo(
                f"{backend}: upload {up['rows']} rows in {up['seconds']} s "
                f"({up['rows_per_s']} rows/s); DEST_TABLE {made['rows']} rows in "
                f"{made['seconds']} s; joins "
                + ", ".join(f"{k} {v['median']} ms" for k, v in figures["join_latency_ms"].items())
            )
