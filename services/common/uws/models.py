"""UWS 1.1 jobs and their XML (job, job list, results, parameters)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

__all__ = ["ACTIVE_PHASES", "FINAL_PHASES", "Job", "JobResult", "Phase", "iso", "parse_iso"]


class Phase(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


ACTIVE_PHASES = frozenset(
    {Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED}
)
FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})

_NS = (
    'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def iso(value: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC with milliseconds (DALI timestamp form)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(value: str) -> float:
    """An ISO 8601 timestamp (``Z`` or offset; no zone means UTC) as a UNIX time."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class JobResult:
    id: str
    href: str
    mime_type: str | None = None
    size: int | None = None


@dataclass
class Job:
    id: str
    owner: str
    phase: Phase
    parameters: list[tuple[str, str]]
    creation_time: float
    execution_duration: int
    destruction: float
    run_id: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    error: str | None = None
    results: list[JobResult] = field(default_factory=list)

    def parameter(self, name: str) -> str | None:
        for key, value in self.parameters:
            if key == name.lower():
                return value
        return None


def _element(name: str, value: str | None) -> str:
    if value is None:
        return f'  <uws:{name} xsi:nil="true"/>\n'
    return f"  <uws:{name}>{escape(value)}</uws:{name}>\n"


def parameters_xml(job: Job, *, root: bool = False) -> str:
    ns = f" {_NS}" if root else ""
    items = "".join(
        f"    <uws:parameter id={quoteattr(name)}>{escape(value)}</uws:parameter>\n"
        for name, value in job.parameters
    )
    return f"  <uws:parameters{ns}>\n{items}  </uws:parameters>\n"


def results_xml(job: Job, *, root: bool = False) -> str:
    ns = f" {_NS}" if root else ""
    items = []
    for result in job.results:
        extra = ""
        if result.mime_type:
            extra += f" mime-type={quoteattr(result.mime_type)}"
        if result.size is not None:
            extra += f' size="{result.size}"'
        items.append(
            f"    <uws:result id={quoteattr(result.id)} xlink:href={quoteattr(result.href)}"
            f"{extra}/>\n"
        )
    return f"  <uws:results{ns}>\n{''.join(items)}  </uws:results>\n"


def job_xml(job: Job) -> str:
    error = ""
    if job.phase == Phase.ERROR and job.error:
        error = (
            '  <uws:errorSummary type="fatal" hasDetail="true">\n'
            f"    <uws:message>{escape(job.error)}</uws:message>\n"
            "  </uws:errorSummary>\n"
        )
    run_id = _element("runId", job.run_id) if job.run_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<uws:job {_NS} version="1.1">\n'
        f"{_element('jobId', job.id)}{run_id}{_element('ownerId', job.owner)}"
        f"{_element('phase', job.phase.value)}"
        '  <uws:quote xsi:nil="true"/>\n'
        f"{_element('creationTime', iso(job.creation_time))}"
        f"{_element('startTime', iso(job.start_time))}"
        f"{_element('endTime', iso(job.end_time))}"
        f"{_element('executionDuration', str(job.execution_duration))}"
        f"{_element('destruction', iso(job.destruction))}"
        f"{parameters_xml(job)}{results_xml(job)}{error}</uws:job>\n"
    )


def job_list_xml(jobs: list[Job], href: str) -> str:
    refs = []
    for job in jobs:
        run_id = f"    <uws:runId>{escape(job.run_id)}</uws:runId>\n" if job.run_id else ""
        refs.append(
            f"  <uws:jobref id={quoteattr(job.id)} xlink:href={quoteattr(f'{href}/{job.id}')}>\n"
            f"    <uws:phase>{job.phase.value}</uws:phase>\n{run_id}"
            f"    <uws:ownerId>{escape(job.owner)}</uws:ownerId>\n"
            f"    <uws:creationTime>{iso(job.creation_time)}</uws:creationTime>\n"
            "  </uws:jobref>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<uws:jobs {_NS} version="1.1">\n{"".join(refs)}</uws:jobs>\n'
    )
