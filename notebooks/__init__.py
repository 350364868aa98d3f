"""Tutorials, commissioning notebooks and templates shipped with the platform."""
