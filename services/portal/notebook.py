"""The notebook "Open in notebook" writes: it fetches the same TAP job's result."""

from __future__ import annotations

import nbformat

__all__ = ["query_notebook"]


def query_notebook(job_id: str, query: str) -> str:
    """A notebook (JSON) that loads portal job *job_id* as an ``astropy.table.Table``."""
    nb = nbformat.v4.new_notebook()
    commented = "\n".join(f"# {line}" for line in (query or "").splitlines())
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# Portal query `{job_id}`\n\nOpened from the sciplat portal. The query ran as a "
            "TAP job you own; this fetches its result (the same rows the portal showed)."
        ),
        nbformat.v4.new_code_cell(
            f"import sciplat\n\n# The portal's query:\n{commented}\n"
            f"table = sciplat.get_query({job_id!r})  # an astropy Table\ntable"
        ),
        nbformat.v4.new_code_cell(
            "# Send it back to the portal (table view, plots) when you are done:\n"
            "# sciplat.portal.show_table(table)"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "lsst", "display_name": "LSST", "language": "python"}
    return nbformat.writes(nb)
