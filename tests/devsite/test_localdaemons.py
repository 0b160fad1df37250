"""``localdaemons.start``, the one start of every local daemon: with real child processes
(small Python programs), it returns a running, ready daemon; a daemon that exits or is not
ready in time is stopped and the error carries its log; ``whole_group`` stop leaves nothing
of the process group behind."""

import sys
import time
from pathlib import Path

import pytest

from domtool.devsite import localdaemons as L

LISTEN = """
import socket, sys, time
print("starting", flush=True)
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(60)
"""


def test_start_returns_a_ready_daemon_and_stop_ends_it(tmp_path):
    port = L.free_port()
    d = L.start(
        "listener",
        [sys.executable, "-c", LISTEN, str(port)],
        tmp_path / "l.log",
        lambda: L.connects(port),
        what=f"listener on {port}",
        timeout=10,
    )
    assert d.alive() and L.connects(port)
    assert d.stop() is not None and not d.alive()
    assert "starting" in d.log_tail()


def test_a_daemon_that_exits_is_an_error_with_its_log(tmp_path):
    extra = tmp_path / "error.log"
    extra.write_text("the daemon's own error log\n")
    code = "print('no config here', flush=True); raise SystemExit(3)"
    with pytest.raises(RuntimeError, match=r"broken exited \(3\)") as e:
        L.start(
            "broken",
            [sys.executable, "-c", code],
            tmp_path / "b.log",
            lambda: False,
            what="never",
            also_logs=(extra, tmp_path / "missing.log"),
        )
    assert "no config here" in str(e.value) and "the daemon's own error log" in str(e.value)


def test_a_daemon_not_ready_in_time_is_stopped(tmp_path, monkeypatch):
    code = "import time; print('waiting', flush=True); time.sleep(60)"
    started = []
    spawn = L.spawn
    monkeypatch.setattr(L, "spawn", lambda *a, **kw: started.append(spawn(*a, **kw)) or started[-1])
    with pytest.raises(TimeoutError, match=r"slow's log:\nwaiting"):
        L.start(
            "slow",
            [sys.executable, "-c", code],
            tmp_path / "s.log",
            lambda: False,
            what="slow",
            timeout=0.5,
        )
    assert len(started) == 1 and not started[0].alive()


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, not yet reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_whole_group_stop_ends_what_the_daemon_forked(tmp_path):
    """The daemon forks a child that ignores SIGTERM and would outlive its parent;
    stopping the whole group ends the child too (SIGKILL after ``stop_timeout``)."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "    sys.exit(0)\n"
        "time.sleep(60)\n"
    )
    d = L.start(
        "forker",
        [sys.executable, "-c", code],
        tmp_path / "f.log",
        lambda: pidfile.exists() and pidfile.read_text(),
        what="the child",
        whole_group=True,
        stop_timeout=1.0,
    )
    child = int(pidfile.read_text())
    t0 = time.monotonic()
    d.stop()
    assert not d.alive() and time.monotonic() - t0 < 8
    assert L.wait_for(lambda: _gone(child), timeout=5, what="the child gone")
