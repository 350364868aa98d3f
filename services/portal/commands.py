"""``sciplat bench portal [--json]``: the portal over the real TAP service at a million rows."""

from __future__ import annotations

import json

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    from sciplat.cli import echo_progress, group, with_load_average

    @group("bench").command("portal")
    @click.option("--rows", default=1_000_000, show_default=True, help="dp1.Object rows / MAXREC.")
    @click.option("--url", default=None, help="Measure a running platform instead (hub URL).")
    @click.option("--token", envvar="SCIPLAT_TOKEN", default=None, help="Its hub token.")
    @click.option("--query", default="SELECT * FROM dp1.Object", show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def bench_portal(rows: int, url, token, query: str, as_json: bool) -> None:
        """Query submit to first rows, a page of 100 of a 1M-row result, a 1M-point scatter."""
        from sciplat.services.portal.bench import run_benchmark

        if url and not token:
            raise click.UsageError("--url needs --token (or $SCIPLAT_TOKEN)")

        report = with_load_average(
            lambda: run_benchmark(rows, url=url, token=token, query=query, progress=echo_progress)
        )
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        first = report["submit_to_first_rows"]
        click.echo(f"data: {report['data']}; {report['result_rows']:,} rows")
        click.echo(
            f"submit -> first rows {first['total_s']} s (query {first['query_s']} s, "
            f"fetch {first['fetch_result_s']} s, page {first['first_page_s']} s)"
        )
        for key in ("page_100", "page_100_sorted", "page_100_filtered", "scatter"):
            s = report[key]
            click.echo(f"{key:18} median {s['median_s']} s  p95 {s['p95_s']} s  (n={s['n']})")
        click.echo(f"scatter (first, with imports/JIT) {report['scatter_first_s']} s")
        click.echo(f"goals: {json.dumps(report['goals'])}")
