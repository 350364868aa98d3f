"""The prompt pipeline end to end on the tiny data preview (single process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lsst.daf.butler import Butler

from sciplat.pipelines.executor import run_pipeline
from sciplat.pipelines.tasks.alerts import alert_schema
from sciplat.pipelines.tasks.archive import AlertArchive
from sciplat.pipelines.tasks.association import create_apdb, locked_apdb


@pytest.fixture(scope="module")
def prompt_repo(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("prompt")
    repo = root / "butler"
    shutil.copytree(tiny_dataset / "butler", repo)
    butler = Butler.from_config(str(repo))
    filters = {r.id: r.physical_filter for r in butler.query_dimension_records("visit")}
    band_visits = sorted(v for v, f in filters.items() if f == "r_sim")
    template_visits, late = band_visits[:2], band_visits[-1]
    template = run_pipeline(
        repo,
        "template",
        where=f"instrument='SimCam' AND visit IN ({template_visits[0]}, {template_visits[1]})",
        input_collections=["SimCam/defaults"],
        output_run="templates/r",
        progress=False,
    )
    apdb = create_apdb(root / "apdb")
    config = {"associate": {"apdb_config": str(apdb), "alert_archive": str(root / "archive")}}
    kwargs = dict(
        where=f"instrument='SimCam' AND visit = {late}",
        input_collections=["SimCam/defaults", "templates/r"],
        config=config,
        progress=False,
    )
    first = run_pipeline(repo, "prompt", output_run="prompt/1", **kwargs)
    return {
        "repo": repo,
        "root": root,
        "apdb": apdb,
        "visit": late,
        "template": template,
        "first": first,
        "kwargs": kwargs,
    }


def test_prompt_run_writes_apdb_rows_and_valid_alerts(prompt_repo: dict) -> None:
    assert prompt_repo["template"].failed == []
    first = prompt_repo["first"]
    assert first.failed == [] and first.succeeded == 8  # 4 tasks x 2 detectors
    butler = Butler.from_config(str(prompt_repo["repo"]), collections="prompt/1")
    schema = alert_schema()
    total = 0
    for ref in butler.query_datasets("alert_packets"):
        table = butler.get(ref)
        for payload in table.column("alert").to_pylist():
            alert = schema.deserialize(payload)
            assert schema.validate(alert)
            assert alert["diaSource"]["visit"] == prompt_repo["visit"]
            assert alert["cutoutDifference"][:6] == b"SIMPLE"
            total += 1
    assert total > 0
    archived = list(AlertArchive(prompt_repo["root"] / "archive").replay())
    assert len(archived) == total
    with locked_apdb(prompt_repo["apdb"]) as apdb:
        import lsst.sphgeom as sg

        everything = sg.Circle(
            sg.UnitVector3d(sg.LonLat.fromDegrees(62.0, -37.0)), sg.Angle.fromDegrees(2.0)
        )
        objects = apdb.getDiaObjects(everything)
    assert len(objects) == total  # one new DIAObject per DIASource on a first visit


def test_apdb_is_published_as_the_dia_tables(
    prompt_repo: dict, tiny_dataset: Path, tmp_path: Path
) -> None:
    import duckdb

    from sciplat.pipelines.drp.dia import publish_apdb
    from sciplat.pipelines.drp.release import ReleaseError

    root = tmp_path / "dataset"
    shutil.copytree(tiny_dataset / "catalog" / "parquet", root / "catalog" / "parquet")
    shutil.copy(tiny_dataset / "dataset.json", root / "dataset.json")
    counts = publish_apdb(root, prompt_repo["apdb"])
    db_path = root / "catalog" / "catalog.duckdb"
    inode = db_path.stat().st_ino
    with locked_apdb(prompt_repo["apdb"]) as apdb:
        import lsst.sphgeom as sg
        from astropy.time import Time

        everything = sg.Circle(
            sg.UnitVector3d(sg.LonLat.fromDegrees(62.0, -37.0)), sg.Angle.fromDegrees(2.0)
        )
        sources = apdb.getDiaSources(everything, None, Time.now().tai, Time(0, format="mjd"))
        objects = apdb.getDiaObjects(everything)
    with duckdb.connect(str(db_path), read_only=True) as con:
        published = con.execute(
            'SELECT diaSourceId, diaObjectId, visit, band, psfFlux FROM dp1."DiaSource"'
        ).df()
        dia_objects = con.execute(
            'SELECT diaObjectId, nDiaSources, r_psfFluxNdata FROM dp1."DiaObject"'
        ).df()
        tap_columns = {
            name
            for (name,) in con.execute(
                "SELECT column_name FROM tap_schema.columns WHERE table_name = 'dp1.DiaSource'"
            ).fetchall()
        }
    # Exactly the APDB's DIASources (not the truth-derived ones) with their DIAObjects.
    assert counts == {"dp1.DiaSource": len(sources), "dp1.DiaObject": len(objects)}
    assert sorted(published["diaSourceId"]) == sorted(sources["diaSourceId"])
    assert set(published["visit"]) == {prompt_repo["visit"]}
    assert set(published["band"]) == {"r"}
    assert set(dia_objects["diaObjectId"]) == set(objects["diaObjectId"])
    assert set(published["diaObjectId"]) == set(objects["diaObjectId"])
    assert (dia_objects["nDiaSources"] == 1).all() and (dia_objects["r_psfFluxNdata"] == 1).all()
    assert {"diaSourceId", "diaObjectId", "psfFlux", "midpointMjdTai"} <= tap_columns
    # Published again: the same rows, in a new database file renamed over the old one (a
    # service that reopens on a changed file never sees half a catalog).
    assert publish_apdb(root, prompt_repo["apdb"]) == counts
    assert db_path.stat().st_ino != inode
    assert not list(db_path.parent.glob("*.tmp"))
    with pytest.raises(ReleaseError, match="no APDB configuration"):
        publish_apdb(root, tmp_path / "nowhere" / "apdb.yaml")


def test_rerunning_a_visit_adds_no_diaobjects_or_alerts(prompt_repo: dict) -> None:
    again = run_pipeline(
        prompt_repo["repo"], "prompt", output_run="prompt/2", **prompt_repo["kwargs"]
    )
    assert again.failed == []
    butler = Butler.from_config(str(prompt_repo["repo"]))
    ids = {
        run: sorted(
            i
            for ref in butler.query_datasets("alert_packets", collections=run)
            for i in butler.get(ref).column("diaSourceId").to_pylist()
        )
        for run in ("prompt/1", "prompt/2")
    }
    assert ids["prompt/1"] == ids["prompt/2"]
    archived = [a["diaSourceId"] for a in AlertArchive(prompt_repo["root"] / "archive").replay()]
    assert sorted(archived) == ids["prompt/1"]


def test_missing_template_fails_clearly(prompt_repo: dict) -> None:
    with pytest.raises(Exception, match="template_coadd"):
        run_pipeline(
            prompt_repo["repo"],
            "prompt",
            where=f"instrument='SimCam' AND visit = {prompt_repo['visit']}",
            input_collections=["SimCam/defaults"],
            output_run="prompt/no-template",
            config=prompt_repo["kwargs"]["config"],
            progress=False,
        )


def _alert_ids(repo: Path, run: str) -> list[int]:
    butler = Butler.from_config(str(repo))
    return sorted(
        i
        for ref in butler.query_datasets("alert_packets", collections=run)
        for i in butler.get(ref).column("diaSourceId").to_pylist()
    )


@pytest.mark.integration
def test_dask_run_matches_single_process_and_survives_a_killed_worker(prompt_repo: dict) -> None:
    import os
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    apdb = create_apdb(prompt_repo["root"] / "apdb-dask")
    kwargs = {**prompt_repo["kwargs"], "config": {"associate": {"apdb_config": str(apdb)}}}
    killed: list[str] = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        outcome: dict = {}

        def run() -> None:
            outcome["result"] = run_pipeline(
                prompt_repo["repo"], "prompt", output_run="prompt/dask", client=client, **kwargs
            )

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 600
        while not killed and thread.is_alive() and time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys and w in pids]
            if busy:
                time.sleep(1.0)  # let the quantum get going, then its worker dies
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.2)
        thread.join(timeout=900)
    assert killed, "no worker was busy with a quantum to kill"
    result = outcome["result"]
    assert result.failed == [] and result.succeeded == 8
    assert _alert_ids(prompt_repo["repo"], "prompt/dask") == _alert_ids(
        prompt_repo["repo"], "prompt/1"
    )


def test_corrupt_raw_fails_its_quantum_and_the_rest_goes_on(prompt_repo: dict) -> None:
    butler = Butler.from_config(str(prompt_repo["repo"]), collections="SimCam/defaults")
    (ref,) = butler.query_datasets(
        "raw", where=f"exposure = {prompt_repo['visit']} AND detector = 0", explain=False
    )
    path = Path(butler.getURI(ref).ospath)
    path.chmod(0o644)
    path.write_bytes(b"SIMPLE  = not a FITS file")  # runs last: the module's other tests are done
    apdb = create_apdb(prompt_repo["root"] / "apdb-corrupt")
    result = run_pipeline(
        prompt_repo["repo"],
        "prompt",
        output_run="prompt/corrupt",
        **{**prompt_repo["kwargs"], "config": {"associate": {"apdb_config": str(apdb)}}},
    )
    assert [(f.task, f.data_id["detector"]) for f in result.failed] == [("isr", 0)]
    assert "raw" in result.failed[0].error
    assert result.skipped == 3 and result.succeeded == 4  # detector 1 went through
