"""``sciplat admin clusters list|scale|stop`` against the real gateway."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sciplat.cli import cli
from sciplat.hub.gateway.commands import register

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if "clusters" not in cli.commands["admin"].commands:
        register(cli)
    return CliRunner()


def test_admin_lists_scales_and_stops_every_users_clusters(
    gateway_hub, runner: CliRunner, tmp_path: Path
) -> None:
    port = int(gateway_hub.hub.url.rsplit(":", 1)[1])
    config = tmp_path / "sciplat.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "hub": {"port": port}}))
    base = ["--config", str(config), "--token", gateway_hub.token("gwadmin")]

    with gateway_hub.gateway("gwbob") as gateway:
        cluster = gateway.new_cluster(worker_memory=0.5)
        try:
            listed = runner.invoke(cli, ["admin", "clusters", "list", "--json", *base])
            assert listed.exit_code == 0, listed.output
            rows = {c["name"]: c for c in json.loads(listed.output)["clusters"]}
            assert rows[cluster.name]["user"] == "gwbob"

            table = runner.invoke(cli, ["admin", "clusters", "list", *base])
            assert table.exit_code == 0 and cluster.name in table.output
            assert f"of {os.cpu_count()} cores" in table.output

            scaled = runner.invoke(cli, ["admin", "clusters", "scale", cluster.name, "1", *base])
            assert scaled.exit_code == 0, scaled.output
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and cluster.get_client().scheduler_info()["workers"] == {}
            ):
                time.sleep(0.5)
            assert len(cluster.get_client().scheduler_info()["workers"]) == 1

            missing = runner.invoke(cli, ["admin", "clusters", "scale", "nope", "1", *base])
            assert missing.exit_code != 0 and "not found" in missing.output

            # A non-admin token is refused with the gateway's reason.
            refused = runner.invoke(
                cli,
                [
                    "admin",
                    "clusters",
                    "list",
                    "--config",
                    str(config),
                    "--token",
                    gateway_hub.token("gwalice"),
                ],
            )
            assert refused.exit_code != 0 and "not a hub admin" in refused.output

            stopped = runner.invoke(cli, ["admin", "clusters", "stop", "--user", "gwbob", *base])
            assert stopped.exit_code == 0 and cluster.name in stopped.output
            assert gateway.list_clusters() == []
        finally:
            cluster.shutdown()
