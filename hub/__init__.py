"""JupyterHub plug-ins: configuration rendering, SciplatSpawner, authenticators, roles."""
