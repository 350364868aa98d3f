"""Prebuilt JupyterLab extension and its server extension."""
