"""Build a quantum graph with the middleware's own builder and run it quantum by quantum.

A failing quantum (missing calibration, corrupt file, too few stars...) is reported with its
data id and error; the quanta that depend on it are skipped and everything else still runs.
Outputs are written through the Butler (provenance: task configs, init outputs, package
versions and per-quantum metadata/logs are stored in the output run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

__all__ = ["PIPELINES", "QuantumFailure", "RunResult", "run_pipeline"]

PIPELINES = {p.stem: p for p in sorted((Path(__file__).parent.parent / "pipelines").glob("*.yaml"))}


@dataclass
class QuantumFailure:
    task: str
    data_id: dict[str, Any]
    error: str


@dataclass
class RunResult:
    output_run: str
    succeeded: int = 0
    failed: list[QuantumFailure] = field(default_factory=list)
    skipped: int = 0
    seconds_by_task: dict[str, list[float]] = field(default_factory=dict)

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


def run_pipeline(
    repo: str | Path,
    pipeline: str | Path,
    *,
    where: str,
    input_collections: list[str],
    output_run: str,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> RunResult:
    """Run *pipeline* (a name in :data:`PIPELINES` or a YAML path) on the quanta of *where*."""
    import time

    from lsst.daf.butler import Butler
    from lsst.pipe.base import Pipeline, TaskFactory
    from lsst.pipe.base.simple_pipeline_executor import SimplePipelineExecutor
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
    from tqdm import tqdm

    pipe = Pipeline.from_uri(str(_pipeline_path(pipeline)))
    for label, overrides in (config or {}).items():
        for key, value in overrides.items():
            pipe.addConfigOverride(label, key, value)
    butler = Butler.from_config(
        str(repo), writeable=True, collections=input_collections, run=output_run
    )
    executor = SimplePipelineExecutor.from_pipeline_graph(
        pipe.to_graph(), where=where, butler=butler, output_run=output_run
    )
    predicted = executor.predicted
    predicted.pipeline_graph.register_dataset_types(butler)
    predicted.write_configs(butler, compare_existing=False)
    predicted.write_init_outputs(butler, skip_existing=True)
    predicted.write_packages(butler, compare_existing=False)
    predicted.build_execution_quanta()
    graph = predicted.quantum_only_xgraph
    single = SingleQuantumExecutor(
        butler=butler, task_factory=TaskFactory(), raise_on_partial_outputs=True
    )
    result = RunResult(output_run=output_run)
    failed: set[Any] = set()
    order = list(nx.topological_sort(graph))
    bar = tqdm(order, desc="quanta", unit="q", disable=not progress)
    for qid in bar:
        node = graph.nodes[qid]
        label = node["pipeline_node"].label
        if any(a in failed for a in nx.ancestors(graph, qid)):
            result.skipped += 1
            failed.add(qid)
            continue
        start = time.perf_counter()
        try:
            single.execute(node["pipeline_node"], node["quantum"], qid)
        except Exception as exc:  # one quantum's failure must not stop the others
            failed.add(qid)
            result.failed.append(
                QuantumFailure(label, dict(node["quantum"].dataId.required), _describe(exc))
            )
            continue
        result.seconds_by_task.setdefault(label, []).append(time.perf_counter() - start)
        result.succeeded += 1
        bar.set_postfix(ok=result.succeeded, failed=len(result.failed))
    return result


def _describe(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = f"{type(cause).__name__}: {cause}"
    return text if cause is exc else f"{type(exc).__name__}: {exc} ({text})"
