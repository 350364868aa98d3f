"""Running quantum graphs: single-process (tests, notebooks) and on dask clusters."""

from sciplat.pipelines.executor.run import PIPELINES, RunResult, run_pipeline

__all__ = ["PIPELINES", "RunResult", "run_pipeline"]
