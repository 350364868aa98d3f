"""Simple Cone Search 1.03 over the Object table (plugin ``scs``)."""

from sciplat.services.scs.service import plugin

__all__ = ["plugin"]
