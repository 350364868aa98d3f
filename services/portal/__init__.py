"""The Portal aspect: an embedded web portal (query, browse, plot, images, all-sky view) at
``/services/portal``, a hub service behind hub OAuth, that also speaks IPAC Firefly's
remote-control protocol so ``firefly_client`` can drive it."""
