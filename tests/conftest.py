"""Shared test configuration: hypothesis profiles and the daemon-test policy."""

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")

IN_CI = os.environ.get("CI") == "true"


def require_binary(*names: str) -> None:
    """Skip the calling test when a daemon binary is missing, except in CI where it fails."""
    missing = [
        n
        for n in names
        if shutil.which(n) is None and shutil.which(n, path="/usr/sbin:/sbin:/usr/bin") is None
    ]
    if missing:
        msg = f"missing daemon binaries: {', '.join(missing)}"
        if IN_CI:
            pytest.fail(msg + " (CI must install them: see scripts/setup)")
        pytest.skip(msg)


# One real PostgreSQL and one MariaDB per session, for the database daemons tests.
from tests.db_servers import db_tree, mariadb_server, postgres_server  # noqa: E402, F401
from tests.mailman_site import mailman_site  # noqa: E402, F401  (the session's Mailman)
