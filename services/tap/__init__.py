"""TAP 1.1 service (ADQL 2.1 over the catalogs, sync and async)."""

from sciplat.services.tap.plugin import plugin

__all__ = ["plugin"]
