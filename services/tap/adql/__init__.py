"""ADQL 2.1: a sqlglot dialect and a translator to DuckDB and PostgreSQL SQL."""

from sciplat.services.tap.adql.errors import AdqlError
from sciplat.services.tap.adql.translate import FieldSpec, Target, Translation, translate

__all__ = ["AdqlError", "FieldSpec", "Target", "Translation", "translate"]
