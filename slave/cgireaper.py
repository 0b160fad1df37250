"""The CGI reaper: kills a member's CGI program past its wall-time or CPU-seconds limit.

Apache cannot do either by itself. ``CGIDScriptTimeout`` only stops waiting for output,
and with suexec the program runs as the member, whom the web server's user may not
signal. ``RLimitCPU`` in the vhost does kill at the CPU limit, but a member's
``.htaccess`` can set it again: Apache declares ``RLimitCPU``/``MEM``/``NPROC`` with
``OR_ALL``, which admits them under ANY ``AllowOverride`` class (``AuthConfig`` is
enough), not only ``All`` (shown in ``tests/slave/test_cgi_limits_daemon.py``). So the
slave (root) sweeps ``/proc`` every ``interval`` seconds:

- a *CGI process* is one owned by a member's user whose parent chain reaches a process
  running the web server's binary (``--web-exe``, e.g. ``/usr/sbin/apache2``: the cgid
  daemon forks, suexec becomes the member and execs the program); the web server's own
  processes are never touched;
- a process forked by a tracked CGI process stays tracked (with its root's start time)
  even after its parent exits and it is re-parented to init, as long as a sweep saw it
  with that parent;
- a tracked process whose root started more than the member's ``cgi_wall`` seconds ago,
  or which has used ``cgi_cpu`` CPU seconds itself, is sent SIGKILL (each kill is one
  JSON line on stdout). The CPU check is per process, like RLIMIT_CPU: precise to one
  sweep interval, and beyond any ``.htaccess``.

With ``--enforce-config`` (``limits_enforce``'s config), each CGI process is also moved
into its member's cgroup at its first sweep, so the member's ``pids.max``, memory and CPU
share bound its CGI programs too (Apache's children live in the web server's cgroup; on
cgroup v1, memory charged before the move stays with the old cgroup).

Limits: a program that forks and exits within one sweep interval leaves an orphan the
reaper never saw under Apache; that orphan is still bounded by the member's cgroup
(``pids.max``, memory) and ``RLimitCPU`` but not by the wall limit. On systemd hosts the
web server's service cgroup holds every CGI descendant: ``--web-cgroup`` names its
``cgroup.procs``, and every member process in it counts as a CGI process, orphans
included.

    python -m domtool.slave.cgireaper --index state_dir/current/limits/limits.json \\
        --web-exe /usr/sbin/apache2 [--web-cgroup /sys/fs/cgroup/.../cgroup.procs] \\
        [--interval 1] [--once]

The members and their wall limits come from the limits backend's live index (each
unit's ``cgi``), read again at every sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import sys
import time
from collections.abc import Iterable, Mapping

import attrs

CLK_TCK = os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Proc:
    pid: int
    ppid: int
    uid: int
    start: float  # seconds since boot
    exe: str | None
    cpu: float = 0.0  # user + system seconds of this process


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return Proc(pid, int(fields[1]), uid, int(fields[19]) / CLK_TCK, exe, cpu)


def scan() -> dict[int, Proc]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            p = read_proc(int(d))
            if p is not None:
                out[p.pid] = p
    return out


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


@attrs.define
class Reaper:
    """Tracks CGI processes across sweeps; :meth:`sweep` is pure given a process table."""

    web_exes: frozenset[str]
    # (pid, start) -> the start time of the tracked tree's root
    tracked: dict[tuple[int, float], float] = attrs.Factory(dict)

    def sweep(
        self,
        procs: Mapping[int, Proc],
        limits_by_uid: Mapping[int, tuple[int, int]],
        now: float,
        in_web_cgroup: Iterable[int] = (),
    ) -> list[tuple[Proc, str, float, int]]:
        """The (process, "wall"/"cpu", its figure, the limit) to kill now, given each
        member uid's (CPU seconds, wall seconds); updates the tracking."""
        alive = {(p.pid, p.start) for p in procs.values()}
        self.tracked = {k: v for k, v in self.tracked.items() if k in alive}
        web_pids = {p.pid for p in procs.values() if p.exe in self.web_exes}
        cgroup = set(in_web_cgroup)

        def origin(p: Proc) -> float | None:
            key = (p.pid, p.start)
            if key in self.tracked:
                return self.tracked[key]
            if p.uid not in limits_by_uid or p.exe in self.web_exes:
                return None
            parent = procs.get(p.ppid)
            if p.ppid in web_pids or p.pid in cgroup:
                return p.start
            if parent is not None and parent.uid == p.uid and parent.start <= p.start:
                o = origin(parent)
                return o
            return None

        # parents first, so a child inherits its parent's origin in the same sweep
        for p in sorted(procs.values(), key=lambda q: q.start):
            try:
                o = origin(p)
            except RecursionError:
                o = None
            if o is not None:
                self.tracked[(p.pid, p.start)] = o
        out = []
        for (pid, _start), o in self.tracked.items():
            p = procs[pid]
            if p.uid not in limits_by_uid:
                continue
            cpu, wall = limits_by_uid[p.uid]
            if now - o > wall:
                out.append((p, "wall", now - o, wall))
            elif p.cpu >= cpu:
                out.append((p, "cpu", p.cpu, cpu))
        return out


def cgi_limits(index: str) -> dict[int, tuple[int, int]]:
    """uid -> (CPU seconds, wall seconds) from the limits backend's index (users not on
    this host, and system accounts, skipped)."""
    return load(index)[0]


def load(index: str) -> tuple[dict[int, tuple[int, int]], dict[int, str]]:
    """(uid -> (CPU seconds, wall seconds), uid -> member) for every user of every
    member in the limits backend's index."""
    out: dict[int, tuple[int, int]] = {}
    members: dict[int, str] = {}
    try:
        with open(index, encoding="utf-8") as f:
            paths = json.load(f)["units"]
    except (OSError, ValueError, KeyError):
        return out, members
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                u = json.load(f)
            limits = (int(u["cgi"]["cpu_seconds"]), int(u["cgi"]["wall_seconds"]))
            users = u.get("users") or [u["member"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for user in users:
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                continue
            if uid >= 1000:
                out[uid] = limits
                members[uid] = u["member"]
    return out, members


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def cgroup_pids(path: str | None) -> list[int]:
    if path is None:
        return []
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cgireaper", description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True)
    p.add_argument("--web-exe", action="append", required=True)
    p.add_argument("--web-cgroup")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--once", action="store_true")
    p.add_argument(
        "--enforce-config",
        help="limits_enforce's config: also move each CGI process into its member's cgroup",
    )
    a = p.parse_args(argv)
    reaper = Reaper(frozenset(os.path.realpath(e) for e in a.web_exe))
    adopt = None
    if a.enforce_config:
        from domtool.slave import limits_enforce as E

        config = E.EnforceConfig.load(a.enforce_config)
        mechanism, _why = E.detect(config)
        if mechanism in ("cgroup-v1", "cgroup-v2"):
            adopt = (config, mechanism)
    placed: set[tuple[int, float]] = set()
    while True:
        limits, members = load(a.index)
        found = reaper.sweep(scan(), limits, uptime(), cgroup_pids(a.web_cgroup))
        if adopt is not None:
            placed &= set(reaper.tracked)
            for key in sorted(set(reaper.tracked) - placed):
                pid, _start = key
                uid = _uid(pid)
                if uid not in members:
                    continue
                try:
                    E.place(adopt[0], adopt[1], members[uid], pid)
                    done = "placed"
                except OSError as e:
                    done = f"not placed: {e.strerror}"
                placed.add(key)
                print(
                    json.dumps({"pid": pid, "uid": uid, "member": members[uid], "action": done}),
                    flush=True,
                )
        for proc, what, figure, limit in found:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                done = "killed"
            except ProcessLookupError:
                done = "gone"
            line = {"pid": proc.pid, "uid": proc.uid, what: round(figure, 2), "limit": limit}
            print(json.dumps({**line, "action": done}), flush=True)
        if a.once:
            return 0
        time.sleep(a.interval)


if __name__ == "__main__":
    sys.exit(main())
