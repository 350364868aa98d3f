"""``sciplat bench tap``."""

from __future__ import annotations

import json

import click

from sciplat.cli import echo_progress, group, with_load_average

__all__ = ["register"]

#: What DaCHS 2.7 measured on this machine class (shared/reference/vo-services.md), for the
#: ratios when DaCHS is not run in the same invocation.
DACHS_REFERENCE = {
    "tap_sync_req_per_s": 16.5,
    "async_floor_ms": 2000,
    "stream_rows_per_s": {
        "votable": 136_000,
        "votable/td": 109_000,
        "csv": 142_000,
        "fits": 215_000,
    },
}


def _measured_ratios(report: dict) -> dict:
    """Ours against DaCHS measured in the same run."""
    dachs = report["backends"].get("dachs")
    if dachs is None:
        return {}
    best_dachs = max(c["req_per_s"] for c in dachs["cone"])
    ratios = {}
    for backend, result in report["backends"].items():
        if backend == "dachs":
            continue
        theirs = {c["clients"]: c["req_per_s"] for c in dachs["cone"]}
        ratios[backend] = {
            "cone_throughput": round(max(c["req_per_s"] for c in result["cone"]) / best_dachs, 1),
            "cone_throughput_by_clients": {
                c["clients"]: round(c["req_per_s"] / theirs[c["clients"]], 1)
                for c in result["cone"]
                if theirs.get(c["clients"])
            },
            "sync_latency": round(
                dachs["sync_latency"]["median_ms"] / result["sync_latency"]["median_ms"], 1
            ),
            "async_floor": round(
                dachs["async_floor"]["median_ms"] / result["async_floor"]["median_ms"], 1
            )
            if "median_ms" in dachs["async_floor"] and "median_ms" in result["async_floor"]
            else None,
            "stream": {
                fmt: round(result["stream"][fmt]["rows_per_s"] / s["rows_per_s"], 1)
                for fmt, s in dachs["stream"].items()
                if "rows_per_s" in s and "rows_per_s" in result["stream"].get(fmt, {})
            },
        }
    return ratios


def _ratios(report: dict) -> dict:
    ratios = {}
    for backend, result in report["backends"].items():
        if backend == "dachs":
            continue
        best = max(c["req_per_s"] for c in result["cone"])
        ratios[backend] = {
            "sync_throughput_vs_dachs": round(best / DACHS_REFERENCE["tap_sync_req_per_s"], 1),
            "async_floor_vs_dachs": round(
                DACHS_REFERENCE["async_floor_ms"] / result["async_floor"]["median_ms"], 1
            )
            if "median_ms" in result["async_floor"]
            else None,
            "stream_vs_dachs": {
                fmt: round(result["stream"][fmt]["rows_per_s"] / rate, 1)
                for fmt, rate in DACHS_REFERENCE["stream_rows_per_s"].items()
                if "rows_per_s" in result["stream"].get(fmt, {})
            },
        }
    return ratios


def register(cli: click.Group) -> None:
    @group("bench").command("tap")
    @click.option("--rows", default=1_000_000, show_default=True, help="Object table rows.")
    @click.option(
        "--backend",
        "backends",
        multiple=True,
        type=click.Choice(["duckdb", "postgres"]),
        default=["duckdb"],
        show_default=True,
        help="Backend(s) to measure (repeat the option for both).",
    )
    @click.option("--seconds", default=10.0, show_default=True, help="Per throughput point.")
    @click.option(
        "--stream-rows",
        default=1_000_000,
        show_default=True,
        help="Rows per streamed result (at most --rows).",
    )
    @click.option("--vs-dachs", is_flag=True, help="Also run GAVO DaCHS on the same table.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def bench_tap(rows, backends, seconds, stream_rows, vs_dachs, as_json) -> None:
        """TAP cone throughput (1/4/8 clients), sync latency, async floor, rows/s per format."""
        from sciplat.services.tap.bench import run_benchmark

        report = with_load_average(
            lambda: run_benchmark(
                rows,
                backends=tuple(backends),
                seconds=seconds,
                stream_rows=stream_rows,
                vs_dachs=vs_dachs,
                progress=echo_progress,
            )
        )
        report["dachs_reference"] = DACHS_REFERENCE
        report["ratios_vs_dachs_reference"] = _ratios(report)
        if vs_dachs:
            report["ratios_vs_dachs_same_run"] = _measured_ratios(report)
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        for backend, result in report["backends"].items():
            click.echo(f"{backend}:")
            for point in result["cone"]:
                click.echo(
                    f"  cone x{point['clients']}: {point['req_per_s']} req/s, "
                    f"median {point['median_ms']} ms"
                )
            click.echo(f"  sync latency median {result['sync_latency']['median_ms']} ms")
            click.echo(f"  async floor {result['async_floor']}")
            for fmt, s in result["stream"].items():
                click.echo(f"  stream {fmt}: {s['rows_per_s']:,} rows/s")
        click.echo(json.dumps(report["ratios_vs_dachs_reference"], indent=2))
        if vs_dachs:
            click.echo(json.dumps(report["ratios_vs_dachs_same_run"], indent=2))
