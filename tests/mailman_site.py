"""The test session's Mailman 3 core: started once (it takes seconds), shared by tests.

``mailman_site`` is a session fixture (registered in ``tests/conftest.py``): a Mailman
core of its own under a temporary directory, REST and LMTP on free loopback ports, stopped
at the end of the session. Tests sharing it use domains of their own (``unique_domain``).
Skipped when Mailman is not installed, except in CI, where that fails.
"""

from __future__ import annotations

import itertools

import pytest

from domtool.devsite import mailman_daemon

_counter = itertools.count(1)


def unique_domain(prefix: str = "lists") -> str:
    """A domain no other test of this session uses in Mailman."""
    return f"{prefix}{next(_counter)}.example"


@pytest.fixture(scope="session")
def mailman_site(tmp_path_factory):
    from tests.conftest import IN_CI

    if not mailman_daemon.available():
        msg = f"Mailman 3 core is not installed ({mailman_daemon.MASTER})"
        if IN_CI:
            pytest.fail(msg + " (CI must install mailman3: see scripts/setup)")
        pytest.skip(msg)
    root = tmp_path_factory.mktemp("mailman")
    site = mailman_daemon.start_mailman(mailman_daemon.prepare_mailman(root))
    try:
        yield site
    finally:
        site.stop()
