"""Simulation of an LSST-like mini survey: sky model with truth, camera, GalSim rendering."""
