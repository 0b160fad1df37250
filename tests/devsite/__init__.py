"""Tests of the local-site tooling (``devsite/``)."""
