"""The local site on loopback (``domtool-quickstart``) and the daemons it runs: tooling for
developers, tests and benches, never imported by production code (``tests/test_purity.py``)
nor shipped in the Debian packages."""
