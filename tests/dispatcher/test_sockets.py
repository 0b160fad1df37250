"""End to end over real loopback TCP with the real reactor (in a subprocess, since the
reactor cannot be restarted inside the test process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("loopback_sockets.py")


def test_real_sockets_welcome_alice_and_refuse_revoked_and_anonymous(tmp_path):
    """Over 127.0.0.1, 100 concurrent alice clients are all welcomed and held open at once;
    a revoked member and a client without a certificate receive nothing."""
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "100"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["welcomed"] == 100
    assert report["open_at_once"] == 100
    assert report["server_logins"] == 100
    assert report["revoked"] == ""
    assert report["anonymous"] == ""
    # Why: the revoked certificate (X509_V_ERR 23), and the missing one.
    assert report["verify_errors"] == [23]
    assert any("peer did not return a certificate" in r for r in report["server_lost"])
