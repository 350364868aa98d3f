"""Regenerate the generated felis schemas: ``python -m sciplat.pipelines.schema``."""

from sciplat.pipelines.schema import write_schemas

for path in write_schemas():
    print(f"wrote {path}")
