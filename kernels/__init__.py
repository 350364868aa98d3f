"""Kernel specs and kernel start-up (service discovery, client configuration)."""
