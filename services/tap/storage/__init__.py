"""Catalog backends: DuckDB (embedded default) and PostgreSQL with pgSphere."""
