"""HiPS: tile sets of the data preview, built at data-build time and served to the portal and
Aladin (plugin ``hips``)."""

from sciplat.services.hips.service import plugin

__all__ = ["plugin"]
