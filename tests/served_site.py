"""``domtool-quickstart --serve`` in a child process, for the daemon tests that drive the
whole local site from outside (as a member would): :func:`served_site` builds it in a fresh
directory others can reach (Apache's children, www-data when root, read alice's pages),
waits for ``endpoints.json``, and on leaving SIGTERMs it, then asserts it exited 0 and
left nothing behind: every process it named is gone, none mentions the site, and
``endpoints.json`` is removed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from domtool.devsite.localdaemons import wait_for

BIN = Path(sys.executable).parent


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (zombies excluded)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            out.append(f"{pid}: {cmd}")
    return out


@attrs.define
class ServedSite:
    """The running site: its scratch directory ``dir``, the site under ``dir/site``, the
    quickstart's process and the ``endpoints.json`` it wrote."""

    dir: Path
    site: Path
    proc: subprocess.Popen
    endpoints: dict

    def port(self, name: str) -> int:
        """The port of an ``endpoints.json`` address (``"dns"``, ``"http"``, ...)."""
        return int(self.endpoints[name].rsplit(":", 1)[1])

    def log_text(self) -> str:
        """What the quickstart printed so far (its summary, its errors)."""
        return (self.dir / "quickstart.log").read_text()


@contextlib.contextmanager
def served_site(prefix: str, *args: str, timeout: float = 90) -> Iterator[ServedSite]:
    """``domtool-quickstart --dir DIR/site --serve ARGS``, running while the block runs."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        d.chmod(0o755)
        site = d / "site"
        ep_path = site / "endpoints.json"
        with open(d / "quickstart.log", "wb") as log:
            proc = subprocess.Popen(
                [str(BIN / "domtool-quickstart"), "--dir", str(site), "--serve", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:

                def ready() -> bool:
                    if proc.poll() is not None:
                        raise AssertionError((d / "quickstart.log").read_text())
                    return ep_path.exists()

                wait_for(ready, timeout=timeout, what="endpoints.json")
                served = ServedSite(d, site, proc, json.loads(ep_path.read_text()))
                yield served
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
        assert code == 0, served.log_text()
        time.sleep(0.3)
        for pid in served.endpoints["pids"].values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert processes_mentioning(str(site)) == []
        assert not ep_path.exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)
