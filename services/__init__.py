"""Web API aspect: the sciplat API service (TAP, images, SCS, workspace, notebooks) and portal."""
