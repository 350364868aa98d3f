"""Batch compute: dask-gateway behind the hub (service, backends, options, operator tools)."""

from sciplat.hub.gateway.hubconf import configure_hub, lab_environment

__all__ = ["configure_hub", "lab_environment"]
