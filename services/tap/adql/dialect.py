"""ADQL 2.1 as a sqlglot dialect: the reader side of the translator.

ADQL is SQL-92 plus ``TOP``, ``OFFSET``, ``ILIKE``, bitwise operators and the geometry
functions. sqlglot's generic grammar covers all of it once ``TOP`` is a keyword; ``LOG`` is the
natural logarithm (ADQL 2.1 §2.3.2), and NULLs sort as PostgreSQL does (largest), so both
backends order rows the same way.
"""

from __future__ import annotations

from sqlglot import parser, tokens
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.tokens import TokenType

__all__ = ["ADQL"]


class ADQL(Dialect):
    """ADQL 2.1 (read side only: the translator writes DuckDB or PostgreSQL SQL)."""

    NULL_ORDERING = "nulls_are_large"
    NORMALIZATION_STRATEGY = NormalizationStrategy.LOWERCASE

    class Tokenizer(tokens.Tokenizer):
        QUOTES = ["'"]
        IDENTIFIERS = ['"']
        KEYWORDS = {**tokens.Tokenizer.KEYWORDS, "TOP": TokenType.TOP}

    class Parser(parser.Parser):
        LOG_DEFAULTS_TO_LN = True
