"""The CGI reaper's decisions over process tables (pure ``Reaper.sweep``), and its /proc
reading of a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from domtool.slave.cgireaper import Proc, Reaper, read_proc, uptime

APACHE = "/usr/sbin/apache2"
ALICE, BOB, WWW = 2001, 2002, 33
LIMITS = {ALICE: (5, 10), BOB: (5, 100)}


def table(*procs: Proc) -> dict[int, Proc]:
    return {p.pid: p for p in procs}


def test_a_cgi_past_its_wall_time_is_killed_and_apache_is_not():
    r = Reaper(frozenset({APACHE}))
    procs = table(
        Proc(1, 0, 0, 0.0, "/sbin/init"),
        Proc(10, 1, 0, 1.0, APACHE),  # the parent
        Proc(11, 10, WWW, 1.0, APACHE),  # the cgid daemon
        Proc(20, 11, ALICE, 100.0, "/usr/bin/python3"),  # alice's CGI
        Proc(21, 11, BOB, 100.0, "/usr/bin/python3"),  # bob's, limit 100 s
        Proc(30, 1, ALICE, 50.0, "/bin/bash"),  # alice's login shell: not a CGI
    )
    assert r.sweep(procs, LIMITS, now=105.0) == []
    killed = r.sweep(procs, LIMITS, now=111.0)
    assert [(p.pid, what) for p, what, _f, _l in killed] == [(20, "wall")]


def test_a_child_stays_tracked_after_its_parent_exits():
    r = Reaper(frozenset({APACHE}))
    cgid = Proc(11, 10, WWW, 1.0, APACHE)
    cgi = Proc(20, 11, ALICE, 100.0, "/usr/bin/perl")
    child = Proc(22, 20, ALICE, 101.0, "/usr/bin/perl")
    assert r.sweep(table(cgid, cgi, child), LIMITS, now=102.0) == []
    orphan = Proc(22, 1, ALICE, 101.0, "/usr/bin/perl")  # parent gone, re-parented
    killed = r.sweep(table(cgid, orphan), LIMITS, now=111.0)
    assert [(p.pid, what) for p, what, _f, _l in killed] == [(22, "wall")]
    # a new process reusing the pid is not the tracked one
    reused = Proc(22, 1, ALICE, 200.0, "/bin/bash")
    assert r.sweep(table(cgid, reused), LIMITS, now=300.0) == []


def test_cpu_seconds_and_the_web_cgroup():
    r = Reaper(frozenset({APACHE}))
    spinning = Proc(40, 1, ALICE, 100.0, "/usr/bin/python3", cpu=5.0)  # an orphan
    assert r.sweep(table(spinning), LIMITS, now=101.0) == []  # not known as a CGI
    killed = r.sweep(table(spinning), LIMITS, now=101.0, in_web_cgroup=[40])
    assert [(p.pid, what) for p, what, _f, _l in killed] == [(40, "cpu")]


def test_read_proc_of_a_real_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        p = read_proc(child.pid)
        assert p is not None and p.ppid == os.getpid() and p.uid == os.geteuid()
        assert 0 <= uptime() - p.start < 5
        assert p.exe is not None and os.path.basename(p.exe).startswith("python")
    finally:
        child.kill()
        child.wait()
