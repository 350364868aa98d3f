"""Build a quantum graph with the middleware's own builder and run it, locally or on dask.

Each quantum runs with :class:`~lsst.pipe.base.single_quantum_executor.SingleQuantumExecutor`
and a :class:`~lsst.daf.butler.QuantumBackedButler` (no registry access while running), in
this process or as one dask task on any ``distributed.Client`` (a dask-gateway cluster's or a
``LocalCluster``'s). A quantum is submitted when everything upstream of it has finished; its
outputs enter the Butler registry as soon as it finishes. A worker that dies is replaced and
its quantum rescheduled by the dask scheduler (outputs are clobbered on the retry). A failing
quantum (missing calibration, corrupt file, too few stars...) is reported with its data id and
error, and everything else still runs: quanta downstream of it run with the inputs that exist
(a coadd without the failed visit), and those that cannot run without its outputs are skipped
by the middleware (``NoWorkFound``) and counted as skipped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciplat.pipelines.executor import zipfix

__all__ = ["PIPELINES", "QuantumFailure", "RunResult", "execute_quantum", "run_pipeline"]

PIPELINES = {p.stem: p for p in sorted((Path(__file__).parent.parent / "pipelines").glob("*.yaml"))}


@dataclass
class QuantumFailure:
    task: str
    data_id: dict[str, Any]
    error: str


@dataclass
class RunResult:
    output_run: str
    graph: str = ""
    succeeded: int = 0
    failed: list[QuantumFailure] = field(default_factory=list)
    skipped: int = 0
    seconds_by_task: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.succeeded + len(self.failed) + self.skipped


def _pipeline_path(pipeline: str | Path) -> Path:
    if str(pipeline) in PIPELINES:
        return PIPELINES[str(pipeline)]
    path = Path(pipeline)
    if not path.exists():
        raise FileNotFoundError(
            f"unknown pipeline {pipeline!r}: not one of {sorted(PIPELINES)} and not a file"
        )
    return path


#: The last graph this process read (path -> PredictedQuantumGraph with execution quanta).
_GRAPH_CACHE: dict[str, Any] = {}
# Reading quanta from a saved graph needs zipfile's fix for CPython gh-127847.
zipfix.install()


def _graph(graph_path: str) -> Any:
    """The whole saved graph, read once per process: workers run many of its quanta, and one
    read of a graph of a few hundred quanta costs less than reading each quantum alone."""
    from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

    if graph_path not in _GRAPH_CACHE:
        predicted = PredictedQuantumGraph.read_execution_quanta(graph_path)
        predicted.build_execution_quanta()
        _GRAPH_CACHE.clear()
        _GRAPH_CACHE[graph_path] = predicted
    return _GRAPH_CACHE[graph_path]


def execute_quantum(repo: str, graph_path: str, quantum_id: str) -> tuple[str, float, bool]:
    """Run one quantum of the saved graph with a quantum-backed butler.

    Returns (task label, seconds, whether it did anything: False when an upstream failure
    left it without the inputs it needs).
    """
    from lsst.daf.butler import QuantumBackedButler
    from lsst.pipe.base import TaskFactory
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor

    start = time.perf_counter()
    qid = uuid.UUID(quantum_id)
    predicted = _graph(graph_path)
    node = predicted.quantum_only_xgraph.nodes[qid]
    universe = predicted.pipeline_graph.universe
    dataset_types = {
        d.name: d.dataset_type for d in predicted.pipeline_graph.dataset_types.values()
    }

    def factory(quantum: Any) -> Any:
        return QuantumBackedButler.initialize(
            config=repo, quantum=quantum, dimensions=universe, dataset_types=dataset_types
        )

    executor = SingleQuantumExecutor(
        task_factory=TaskFactory(),
        limited_butler_factory=factory,
        clobber_outputs=True,
        raise_on_partial_outputs=True,
    )
    # One core per quantum, and the same BLAS threading in every process: multi-threaded
    # BLAS reductions round differently, which can flip a source sitting at the threshold.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        outcome = executor.execute(node["pipeline_node"], node["quantum"], qid)
    worked = not getattr(outcome, "adjusted_no_work", False)
    return node["pipeline_node"].label, time.perf_counter() - start, worked


def _register_outputs(butler: Any, repo: str, predicted: Any, qid: uuid.UUID) -> None:
    """Bring one finished quantum's outputs into the registry (files are in place)."""
    from lsst.daf.butler import QuantumBackedButler

    quantum = predicted.quantum_only_xgraph.nodes[qid]["quantum"]
    refs = [ref for refs in quantum.outputs.values() for ref in refs]
    dataset_types = {
        d.name: d.dataset_type for d in predicted.pipeline_graph.dataset_types.values()
    }
    with QuantumBackedButler.from_predicted(
        config=repo,
        predicted_inputs=[r.id for r in refs],
        predicted_outputs=[],
        dimensions=predicted.pipeline_graph.universe,
        datastore_records={},
        dataset_types=dataset_types,
    ) as qbb:
        existing = [r for r in refs if qbb.stored(r)]
        butler.transfer_from(qbb, existing, transfer="auto", transfer_dimensions=False)


def run_pipeline(
    repo: str | Path,
    pipeline: str | Path,
    *,
    where: str,
    input_collections: list[str],
    output_run: str,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    client: Any = None,
    graph_dir: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Run *pipeline* (a name in :data:`PIPELINES` or a YAML path) on the quanta of *where*.

    With *client* (a ``distributed.Client``) each quantum is a dask task; without, the quanta
    run one after another in this process. The quantum graph is saved in *graph_dir* (default:
    ``<repo>/graphs``), where dask workers read their quantum.
    """
    from lsst.daf.butler import Butler
    from lsst.pipe.base import Pipeline
    from lsst.pipe.base.all_dimensions_quantum_graph_builder import (
        AllDimensionsQuantumGraphBuilder,
    )
    from tqdm import tqdm

    t0 = time.perf_counter()
    repo = str(Path(repo).resolve())
    pipe = Pipeline.from_uri(str(_pipeline_path(pipeline)))
    for label, overrides in (config or {}).items():
        for key, value in overrides.items():
            pipe.addConfigOverride(label, key, value)
    butler = Butler.from_config(repo, writeable=True, collections=input_collections, run=output_run)
    builder = AllDimensionsQuantumGraphBuilder(
        pipe.to_graph(), butler, where=where, output_run=output_run
    )
    components = builder.finish(
        metadata={"data_query": where, "output_run": output_run, "input": input_collections},
        attach_datastore_records=True,
    )
    directory = Path(graph_dir or Path(repo) / "graphs")
    directory.mkdir(parents=True, exist_ok=True)
    graph_path = directory / f"{output_run.replace('/', '_')}-{uuid.uuid4().hex[:8]}.qg"
    components.write(str(graph_path))
    predicted = components.assemble()
    predicted.pipeline_graph.register_dataset_types(butler)
    predicted.write_configs(butler, compare_existing=False)
    predicted.write_init_outputs(butler, skip_existing=True)
    predicted.write_packages(butler, compare_existing=False)
    predicted.build_execution_quanta()
    _GRAPH_CACHE.clear()
    _GRAPH_CACHE[str(graph_path)] = predicted  # quanta run in this process read it from here
    graph = predicted.quantum_only_xgraph
    result = RunResult(output_run=output_run, graph=str(graph_path))
    remaining = {q: set(graph.predecessors(q)) for q in graph.nodes}
    done: set[uuid.UUID] = set()
    bar = tqdm(
        total=len(graph), desc=f"{Path(str(pipeline)).stem} quanta", unit="q", disable=not progress
    )

    def ready() -> list[uuid.UUID]:
        out = [q for q, deps in remaining.items() if deps <= done]
        for q in out:
            del remaining[q]
        return out

    def finish(qid: uuid.UUID, outcome: tuple[str, float, bool] | BaseException) -> None:
        node = graph.nodes[qid]
        # Downstream quanta run either way: with what exists, or as "no work" (skipped).
        done.add(qid)
        if isinstance(outcome, BaseException):
            result.failed.append(
                QuantumFailure(
                    node["pipeline_node"].label,
                    {k: v for k, v in node["quantum"].dataId.required.items()},
                    _describe(outcome),
                )
            )
        else:
            label, seconds, worked = outcome
            _register_outputs(butler, repo, predicted, qid)
            if worked:
                result.succeeded += 1
                result.seconds_by_task.setdefault(label, []).append(seconds)
            else:
                result.skipped += 1
        bar.update(1)
        bar.set_postfix(ok=result.succeeded, failed=len(result.failed))

    if client is None:
        while todo := ready():
            for qid in todo:
                try:
                    outcome: Any = execute_quantum(repo, str(graph_path), str(qid))
                except Exception as exc:  # one quantum's failure must not stop the others
                    outcome = exc
                finish(qid, outcome)
    else:
        from distributed import as_completed

        def submit(qid: uuid.UUID) -> Any:
            label = graph.nodes[qid]["pipeline_node"].label
            return client.submit(
                execute_quantum, repo, str(graph_path), str(qid), key=f"{label}-{qid}", pure=False
            )

        futures = {submit(q): q for q in ready()}
        pending = as_completed(list(futures))
        for future in pending:
            qid = futures.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:
                outcome = exc
            finish(qid, outcome)
            for q in ready():
                new = submit(q)
                futures[new] = q
                pending.add(new)
    bar.close()
    result.wall_seconds = time.perf_counter() - t0
    return result


def _describe(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = f"{type(cause).__name__}: {cause}"
    return text if cause is exc else f"{type(exc).__name__}: {exc} ({text})"
