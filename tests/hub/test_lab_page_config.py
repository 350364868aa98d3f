"""Labs read the platform's page configuration from the lab config path the spawner sets."""

from __future__ import annotations

from jupyterlab_server.config import get_static_page_config

from sciplat.hub.spawner import lab_config_path


def test_labs_do_not_ask_about_jupyter_news(monkeypatch):
    # JupyterLab's announcements plugin asks every new user whether to fetch news from the
    # internet (which a data access center's labs may not reach): it is disabled for all labs.
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", lab_config_path())
    config = get_static_page_config(level="all")
    assert config["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"] is True
