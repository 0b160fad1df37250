"""One backend per daemon: pure renderers plus the commands that check and reload."""
