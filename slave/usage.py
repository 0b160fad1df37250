"""What one member uses on this host, collected at the slave's privileged edge (op ``usage``).

Each figure says where it comes from, and a figure that cannot be collected here says
so (``"collected": false`` with the reason) instead of a made-up zero:

- ``processes`` and ``memory``: the member's cgroup, as the limits backend made it
  (``pids.current``, ``memory.usage_in_bytes`` on cgroup v1; ``pids.current``,
  ``memory.current`` on v2 and systemd), and also ``/proc``: every process of the
  member's Unix users (count, threads, resident memory), since without systemd a login
  process is only in the cgroup once something placed it there;
- ``disk``: a walk of the member's trees (its users' home directories, its vhosts'
  document roots and alias targets on this host), allocated blocks as ``du`` counts them
  (each inode once, symlinks not followed, not crossing into other file systems); the
  quota figure where the file system has quotas;
- ``web``: requests and bytes sent (``%O``) in the member's split access logs
  (``member_log_dir/<member>/<fqdn>.access.log``, ``slave/logsplit.py``), since their
  last rotation;
- ``outbound``: bytes and packets the member's sockets sent, from the network policy's
  nftables counters (``domtool.slave.backends.nft.read_counters``) where that backend
  runs on this host.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from domtool.model import DesiredState

_ACCESS = re.compile(rb'^(\S+) \S+ \S+ \S+ \[[^\]]*\] "(?:[^"\\]|\\.)*" (\d{3}) (\d+|-)')


def member_users(state: DesiredState, owner: str) -> list[str]:
    """The member's Unix users on this host: its policy's, else its vhosts' (else its
    own name when that is an account here)."""
    users: set[str] = set()
    for p in state.policies:
        if p.owner == owner:
            users.update(p.users)
    if not users:
        users.update(v.user for v in state.vhosts if v.owner == owner)
    if not users:
        try:
            pwd.getpwnam(owner)
            users.add(owner)
        except KeyError:
            pass
    return sorted(users)


def _uids(users: Iterable[str]) -> dict[int, str]:
    out = {}
    for u in users:
        try:
            pw = pwd.getpwnam(u)
        except KeyError:
            continue
        if pw.pw_uid >= 1000:
            out[pw.pw_uid] = u
    return out


def proc_usage(uids: Iterable[int]) -> dict[str, Any]:
    """Processes, threads and resident bytes of the given uids, from /proc."""
    want = set(uids)
    count = threads = rss = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}").st_uid not in want:
                continue
            with open(f"/proc/{d}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{d}/statm") as f:
                resident = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        count += 1
        threads += int(fields[17])
        rss += resident * page
    return {"processes": count, "threads": threads, "rss_bytes": rss, "source": "/proc"}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def cgroup_usage(cgroups: dict[str, str]) -> dict[str, Any]:
    """The member's cgroup counters (v1 dirs by controller, or one v2 dir)."""
    try:
        if "unified" in cgroups:
            d = cgroups["unified"]
            return {
                "processes": int(_read(f"{d}/pids.current")),
                "memory_bytes": int(_read(f"{d}/memory.current")),
                "source": d,
            }
        return {
            "processes": int(_read(f"{cgroups['pids']}/pids.current")),
            "memory_bytes": int(_read(f"{cgroups['memory']}/memory.usage_in_bytes")),
            "memory_max_bytes": int(_read(f"{cgroups['memory']}/memory.max_usage_in_bytes")),
            "source": f"{cgroups['pids']}, {cgroups['memory']}",
        }
    except (OSError, ValueError, KeyError) as e:
        return {"collected": False, "why": f"no cgroup for the member here ({e})"}


def member_trees(state: DesiredState, owner: str, users: Iterable[str]) -> list[str]:
    """The member's directories on this host, outermost only."""
    paths: set[str] = set()
    for u in users:
        try:
            home = pwd.getpwnam(u).pw_dir
        except KeyError:
            continue
        if home and home != "/" and os.path.isdir(home):
            paths.add(os.path.realpath(home))
    for v in state.vhosts:
        if v.owner != owner:
            continue
        for p in (
            v.document_root,
            *(p for _u, p in v.url_aliases),
            *(p for _u, p in v.script_aliases),
        ):
            if os.path.isdir(p):
                paths.add(os.path.realpath(p))
    out = []
    for p in sorted(paths):
        if not any(p == o or p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return out


def disk_usage(roots: Iterable[str]) -> dict[str, Any]:
    """Allocated bytes under ``roots`` as ``du -scxB1`` counts them: every inode once
    (hard links across all roots too), symlinks not followed, other file systems skipped."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    errors = 0
    roots = list(roots)
    for root in roots:
        try:
            top = os.lstat(root)
        except OSError:
            errors += 1
            continue
        stack = [(root, top)]
        while stack:
            path, st = stack.pop()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            files += 1
            if stat.S_ISDIR(st.st_mode):
                try:
                    with os.scandir(path) as it:
                        for e in it:
                            try:
                                est = e.stat(follow_symlinks=False)
                            except OSError:
                                errors += 1
                                continue
                            if est.st_dev == top.st_dev:
                                stack.append((e.path, est))
                except OSError:
                    errors += 1
    return {"bytes": total, "inodes": files, "paths": roots, "unreadable": errors, "source": "walk"}


def web_usage(member_log_dir: str | None, owner: str) -> dict[str, Any]:
    if member_log_dir is None:
        return {"collected": False, "why": "this host keeps no per-member logs (member_log_dir)"}
    d = Path(member_log_dir) / owner
    if not d.is_dir():
        return {"requests": 0, "bytes": 0, "vhosts": {}, "source": str(d)}
    vhosts: dict[str, dict[str, int]] = {}
    for log in sorted(d.glob("*.access.log")):
        req = sent = 0
        with open(log, "rb") as f:
            for line in f:
                m = _ACCESS.match(line)
                if m is None:
                    continue
                req += 1
                if m[3] != b"-":
                    sent += int(m[3])
        vhosts[log.name[: -len(".access.log")]] = {"requests": req, "bytes": sent}
    return {
        "requests": sum(v["requests"] for v in vhosts.values()),
        "bytes": sum(v["bytes"] for v in vhosts.values()),
        "vhosts": vhosts,
        "source": f"{d}/*.access.log (since their last rotation)",
    }


def outbound_usage(owner: str, counters=None) -> dict[str, Any]:
    """The member's outbound counters, from the network policy's nftables table."""
    if counters is None:
        try:
            from domtool.slave.backends.nft import read_counters  # the net work's counters
        except ImportError:
            return {"collected": False, "why": "no network policy backend (nft) on this host"}
        try:
            counters = read_counters()
        except Exception as e:  # nft missing, table not loaded
            return {"collected": False, "why": f"nftables counters unreadable: {e}"}
    c = counters.get(owner)
    if c is None:
        return {"collected": False, "why": "no counter for the member (no network policy)"}
    return {**c, "source": "nftables counters of table inet domtool (since its last load)"}


def collect(
    state: DesiredState,
    owner: str,
    *,
    enforce_config: Any = None,
    member_log_dir: str | None = None,
    counters: dict | None = None,
) -> dict[str, Any]:
    """Every figure of ``owner`` on this host (see the module docstring)."""
    from domtool.slave import limits_enforce as E

    users = member_users(state, owner)
    uids = _uids(users)
    out: dict[str, Any] = {"member": owner, "users": users}
    out["proc"] = proc_usage(uids)
    mechanism = None
    if enforce_config is not None:
        mechanism, why = E.detect(enforce_config)
        out["mechanism"] = mechanism or f"none ({why})"
    if mechanism in ("cgroup-v1", "cgroup-v2"):
        out["cgroup"] = cgroup_usage(E.member_cgroups(enforce_config, mechanism, owner))
    elif mechanism == "systemd" and uids:
        per_user = {}
        for uid, user in uids.items():
            d = f"{enforce_config.cgroup_root}/user.slice/user-{uid}.slice"
            per_user[user] = cgroup_usage({"unified": d})
        out["cgroup"] = per_user
    else:
        out["cgroup"] = {"collected": False, "why": "no cgroup mechanism configured"}
    roots = member_trees(state, owner, users)
    out["disk"] = disk_usage(roots)
    if enforce_config is not None:
        quota = {}
        for fs in enforce_config.quota_filesystems:
            on, why = E.quota_state(fs)
            quota[fs] = {"quotas": on, "why": why}
        out["disk"]["quota"] = quota
    out["web"] = web_usage(member_log_dir, owner)
    out["outbound"] = outbound_usage(owner, counters)
    return out
