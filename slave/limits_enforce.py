"""The limits backend's check and reload: ``python -m domtool.slave.limits_enforce``.

    limits_enforce check --config CONF.json INDEX   every unit well-formed; each member's
                                                    slice passes ``systemd-analyze verify``
                                                    (when the tool is installed)
    limits_enforce apply --config CONF.json INDEX   detect what this host has, enforce
                                                    every member's limits with it, read
                                                    each value back, write the report

What the host has (:func:`detect`), in this order:

- ``systemd``: systemd is PID 1 (``/run/systemd/system``) on the unified cgroup v2
  hierarchy. Each member's drop-in goes to ``systemd_dir/user-UID.slice.d/50-domtool.conf``,
  then ``systemctl daemon-reload`` and ``systemctl show`` read the properties back.
- ``cgroup-v1``: the ``pids``, ``memory`` and ``cpu`` v1 controllers are mounted under
  ``cgroup_root/NAME``. Each member gets ``cgroup_root/CTRL/PREFIX/MEMBER`` with
  ``pids.max``, ``memory.limit_in_bytes`` and ``cpu.shares`` written and read back.
- ``cgroup-v2``: cgroup v2 at ``cgroup_root`` with those controllers and no systemd:
  ``cgroup_root/PREFIX/MEMBER`` with ``pids.max``, ``memory.max``, ``memory.swap.max``
  and ``cpu.weight``.
- none of them: ``apply`` fails (exit 1) rather than report limits it did not set.

Without systemd nothing puts a member's login processes in its cgroup by itself:
:func:`place` moves a process there (the CGI reaper, ``slave/cgireaper.py``, uses it
for a member's CGI programs); ``pam_limits`` (``limits_d/domtool-MEMBER.conf``) bounds
``nproc`` per login either way. Disk quotas: for each of ``quota_filesystems``
:func:`quota_state` asks ``quotaon -p``; only where user quotas are on does ``setquota``
run, otherwise the report says "this filesystem has no quotas" with the reason (a
kernel without ``CONFIG_QFMT_V2``, a mount without ``usrquota``).

The report (``report``, JSON) names the mechanism enforced and, per member, each value
as read back from the kernel; ``domtool-admin limits show`` and ``usage`` read it.
Exit status: 0 done, 1 a problem (one line each on stderr), 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import attrs

from domtool import validate
from domtool.policies.limits import RESOURCES, MemberLimits
from domtool.slave.backends.limits import DROPIN_NAME, cgroup_v1, cgroup_v2, systemd_dropin

V1_CONTROLLERS = ("pids", "memory", "cpu")
PREFIX = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class Unreadable(Exception):
    pass


@attrs.frozen
class EnforceConfig:
    cgroup_root: str = "/sys/fs/cgroup"
    prefix: str = "domtool"
    limits_d: str | None = "/etc/security/limits.d"
    systemd_dir: str = "/etc/systemd/system"
    quota_filesystems: tuple[str, ...] = ()
    report: str | None = None
    mode: str = "auto"  # auto | systemd | cgroup-v1 | cgroup-v2

    @classmethod
    def load(cls, path: str) -> EnforceConfig:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            c = cls(
                cgroup_root=data.get("cgroup_root", "/sys/fs/cgroup"),
                prefix=data.get("prefix", "domtool"),
                limits_d=data.get("limits_d", "/etc/security/limits.d"),
                systemd_dir=data.get("systemd_dir", "/etc/systemd/system"),
                quota_filesystems=tuple(data.get("quota_filesystems", ())),
                report=data.get("report"),
                mode=data.get("mode", "auto"),
            )
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise Unreadable(f"cannot read {path}: {e}") from None
        if not PREFIX.fullmatch(c.prefix):
            raise Unreadable(f"{path}: prefix {c.prefix!r} is not a plain cgroup name")
        if c.mode not in ("auto", "systemd", "cgroup-v1", "cgroup-v2"):
            raise Unreadable(f"{path}: mode {c.mode!r}")
        return c


# ---------------------------------------------------------------------------
# What the host has


def _v1_mounted(root: str) -> dict[str, bool]:
    """Which v1 controllers are mounted at ``root/NAME`` (from /proc/self/mounts)."""
    found = dict.fromkeys(V1_CONTROLLERS, False)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and parts[2] == "cgroup":
                    opts = set(parts[3].split(","))
                    for c in V1_CONTROLLERS:
                        if c in opts and parts[1] == f"{root}/{c}":
                            found[c] = True
    except OSError:
        pass
    return found


def systemd_runs() -> bool:
    """systemd is PID 1 (sd_booted's test, and PID 1's name)."""
    try:
        return (
            os.path.isdir("/run/systemd/system")
            and Path("/proc/1/comm").read_text().strip() == "systemd"
        )
    except OSError:
        return False


def _v2_controllers(root: str) -> set[str]:
    try:
        return set(Path(root, "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def detect(config: EnforceConfig) -> tuple[str | None, str]:
    """(mechanism, why): "systemd", "cgroup-v1", "cgroup-v2" or None."""
    root = config.cgroup_root
    v2 = _v2_controllers(root)
    if config.mode != "auto":
        return config.mode, "set by the configuration"
    if systemd_runs() and {"pids", "memory", "cpu"} <= v2:
        return "systemd", "systemd is PID 1 on cgroup v2"
    v1 = _v1_mounted(root)
    if all(v1.values()):
        return "cgroup-v1", f"v1 controllers pids, memory, cpu mounted under {root}"
    if {"pids", "memory", "cpu"} <= v2:
        return "cgroup-v2", f"cgroup v2 at {root} with pids, memory, cpu; systemd is not PID 1"
    missing = [c for c, ok in v1.items() if not ok]
    return None, f"no systemd, no cgroup v2 controllers at {root}, v1 lacks {', '.join(missing)}"


def member_cgroups(config: EnforceConfig, mechanism: str, member: str) -> dict[str, str]:
    """The member's cgroup directory per controller (v1) or the one v2 directory."""
    validate.check_unix_name(member)
    if mechanism == "cgroup-v1":
        return {c: f"{config.cgroup_root}/{c}/{config.prefix}/{member}" for c in V1_CONTROLLERS}
    if mechanism == "cgroup-v2":
        return {"unified": f"{config.cgroup_root}/{config.prefix}/{member}"}
    if mechanism == "systemd":
        uid = pwd.getpwnam(member).pw_uid
        return {"unified": f"{config.cgroup_root}/user.slice/user-{uid}.slice"}
    raise ValueError(f"no cgroups with mechanism {mechanism!r}")


def place(config: EnforceConfig, mechanism: str, member: str, pid: int) -> None:
    """Move process ``pid`` (0: the caller) into the member's cgroup(s)."""
    for d in member_cgroups(config, mechanism, member).values():
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(pid))


# ---------------------------------------------------------------------------
# Reading units


def load_units(index: str) -> list[dict]:
    try:
        with open(index, encoding="utf-8") as f:
            paths = json.load(f)["units"]
        out = []
        for p in paths:
            with open(p, "rb") as f:
                out.append(json.loads(f.read()))
        return out
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unreadable(f"cannot read {index}: {e}") from None


def unit_limits(u: dict) -> MemberLimits:
    """The unit's limits, refusing a unit whose rendered settings do not follow from them
    (a unit file edited by hand, or written by another version)."""
    member = u.get("member")
    ml = MemberLimits.from_json({"member": member, "overridden": [], **u.get("limits", {})})
    for user in u.get("users") or ():
        if validate.check_unix_name(user) == "root":
            raise ValueError(f"{member}: root is never a member's user")
    if (
        u.get("systemd", {}).get("dropin") != systemd_dropin(ml)
        or u.get("cgroup_v1") != cgroup_v1(ml)
        or u.get("cgroup_v2") != cgroup_v2(ml)
    ):
        raise ValueError(f"{member}: rendered settings do not match its limits")
    return ml


def verify_slices(dropins: dict[str, str], *, tool: str | None = None) -> dict[str, list[str]]:
    """``systemd-analyze verify`` of one slice per member holding its drop-in, in ONE run
    (a run costs ~70 ms, most of it start-up): member -> its warnings. It exits 0 on an
    invalid value, so any line naming a member's file is that member's problem."""
    tool = tool or shutil.which("systemd-analyze")
    out: dict[str, list[str]] = {m: [] for m in dropins}
    if tool is None or not dropins:
        return out
    with tempfile.TemporaryDirectory(prefix="domtool-slice-") as d:
        paths = {}
        for member, dropin in dropins.items():
            path = Path(d, f"domtool-{member}.slice")
            body = dropin.replace("[Slice]", "\n[Slice]", 1)
            path.write_text("[Unit]\nDescription=domtool member slice (check)\n" + body)
            paths[member] = str(path)
        done = subprocess.run(
            [tool, "verify", "--man=no", *paths.values()],
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = (done.stderr + done.stdout).splitlines()
        for member, path in paths.items():
            out[member] = [ln.replace(path, "slice") for ln in lines if path + ":" in ln]
        if done.returncode != 0 and not any(out.values()):
            first = next(iter(out))
            out[first] = [done.stderr.strip() or f"exit {done.returncode}"]
    return out


def verify_slice(dropin: str, *, tool: str | None = None) -> list[str]:
    """:func:`verify_slices` of one drop-in."""
    return verify_slices({"member": dropin}, tool=tool)["member"]


def check(units: Iterable[dict]) -> list[str]:
    problems = []
    seen = set()
    dropins: dict[str, str] = {}
    for u in units:
        try:
            ml = unit_limits(u)
        except ValueError as e:
            who = f"{u.get('member')!s:.40}"
            problems.append(str(e) if str(e).startswith(who + ":") else f"{who}: {e}")
            continue
        if ml.member in seen:
            problems.append(f"{ml.member}: twice")
            continue
        seen.add(ml.member)
        dropins[ml.member] = systemd_dropin(ml)
    for member, lines in verify_slices(dropins).items():
        problems += [f"{member}: systemd-analyze verify: {line}" for line in lines]
    return problems


# ---------------------------------------------------------------------------
# Enforcing


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def enforce_v1(config: EnforceConfig, ml: MemberLimits) -> dict[str, str]:
    """Create the member's v1 cgroups and write the limits; returns what the kernel reads
    back. Raises OSError (e.g. EBUSY: usage already above a lowered memory limit)."""
    dirs = member_cgroups(config, "cgroup-v1", ml.member)
    out = {}
    for ctrl, files in cgroup_v1(ml).items():
        os.makedirs(dirs[ctrl], exist_ok=True)
        for name, value in files.items():
            memsw = f"{dirs[ctrl]}/memory.memsw.limit_in_bytes"
            if name == "memory.limit_in_bytes" and os.path.exists(memsw):
                if int(_read(memsw)) < int(value):  # raising: memsw must stay >= the limit
                    _write(memsw, value)
            _write(f"{dirs[ctrl]}/{name}", value)
            got = _read(f"{dirs[ctrl]}/{name}")
            out[name] = got
            if got != value:
                # memory.limit_in_bytes is rounded down to a page: compare as numbers.
                if not (name == "memory.limit_in_bytes" and int(value) - int(got) < 65536):
                    raise OSError(f"{dirs[ctrl]}/{name}: wrote {value}, reads {got}")
    # No swap beyond the memory limit (MemorySwapMax=0), where swap is accounted.
    memsw = f"{dirs['memory']}/memory.memsw.limit_in_bytes"
    if os.path.exists(memsw):
        _write(memsw, str(ml.memory))
        out["memory.memsw.limit_in_bytes"] = _read(memsw)
    return out


def enforce_v2(config: EnforceConfig, ml: MemberLimits) -> dict[str, str]:
    base = f"{config.cgroup_root}/{config.prefix}"
    os.makedirs(base, exist_ok=True)
    for d in (config.cgroup_root, base):
        have = _read(f"{d}/cgroup.subtree_control").split()
        for c in ("pids", "memory", "cpu"):
            if c not in have:
                _write(f"{d}/cgroup.subtree_control", f"+{c}")
    d = member_cgroups(config, "cgroup-v2", ml.member)["unified"]
    os.makedirs(d, exist_ok=True)
    out = {}
    for name, value in cgroup_v2(ml).items():
        _write(f"{d}/{name}", value)
        out[name] = _read(f"{d}/{name}")
    return out


def enforce_systemd(
    config: EnforceConfig, members: list[MemberLimits], users: dict[str, tuple[str, ...]]
) -> dict[str, dict]:
    """Each member user's ``user-UID.slice.d`` drop-in, ``daemon-reload``, and the
    properties systemd then reports (``systemctl show``). Not run on the test machines
    (no systemd as PID 1): the drop-ins are checked there by ``systemd-analyze verify``."""
    out: dict[str, dict] = {}
    uids = {(ml.member, u): pwd.getpwnam(u).pw_uid for ml in members for u in users[ml.member]}
    for (member, _u), uid in uids.items():
        d = Path(config.systemd_dir, f"user-{uid}.slice.d")
        d.mkdir(parents=True, exist_ok=True)
        ml = next(m for m in members if m.member == member)
        _atomic(d / DROPIN_NAME, systemd_dropin(ml))
    subprocess.run(["systemctl", "daemon-reload"], check=True, timeout=120)
    for (member, u), uid in uids.items():
        done = subprocess.run(
            ["systemctl", "show", f"user-{uid}.slice", "-p", "TasksMax,MemoryMax,CPUWeight"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        props = dict(ln.split("=", 1) for ln in done.stdout.splitlines() if "=" in ln)
        out.setdefault(member, {})[u] = props
    return out


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def remove_stale_v1(config: EnforceConfig, keep: set[str]) -> list[str]:
    """rmdir the v1 cgroups of members no longer configured (kept while processes remain)."""
    problems = []
    for ctrl in V1_CONTROLLERS:
        base = Path(config.cgroup_root, ctrl, config.prefix)
        if not base.is_dir():
            continue
        for d in base.iterdir():
            if d.is_dir() and d.name not in keep:
                try:
                    d.rmdir()
                except OSError as e:
                    problems.append(f"{d.name}: cgroup {d} kept: {e.strerror}")
    return problems


def write_pam(
    config: EnforceConfig, members: list[MemberLimits], users: dict[str, tuple[str, ...]]
) -> list[str]:
    if config.limits_d is None:
        return []
    d = Path(config.limits_d)
    d.mkdir(parents=True, exist_ok=True)
    from domtool.slave.backends.limits import pam_limits

    want = {f"domtool-{ml.member}.conf": pam_limits(ml, users[ml.member]) for ml in members}
    for name, text in want.items():
        p = d / name
        if not p.exists() or p.read_text() != text:
            _atomic(p, text)
    for p in d.glob("domtool-*.conf"):
        if p.name not in want:
            p.unlink()
    return sorted(want)


def quota_state(filesystem: str, *, quotaon: str | None = None) -> tuple[bool, str]:
    """(user quotas on, why) for the filesystem holding ``filesystem``, from
    ``quotaon -pu`` (the quota tools' own view, which also covers ext4's hidden quota
    inodes); a missing tool or kernel support counts as no quotas."""
    tool = quotaon or shutil.which("quotaon", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if tool is None:
        return False, "this filesystem has no quotas: the quota tools are not installed"
    done = subprocess.run([tool, "-pu", filesystem], capture_output=True, text=True, timeout=30)
    text = (done.stdout + done.stderr).strip()
    if re.search(r"user quota on .* is on", text):
        return True, text
    return False, f"this filesystem has no quotas ({filesystem}): {text or 'quotaon -p says off'}"


def enforce_quota(
    config: EnforceConfig, members: list[MemberLimits], users: dict[str, tuple[str, ...]]
) -> dict[str, dict]:
    from domtool.slave.backends.limits import setquota_argv

    out: dict[str, dict] = {}
    for fs in config.quota_filesystems:
        on, why = quota_state(fs)
        entry: dict = {"quotas": on, "why": why, "members": {}}
        if on:
            for ml in members:
                for u in users[ml.member]:
                    argv = setquota_argv(u, ml.disk, fs)
                    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
                    ok = done.returncode == 0
                    entry["members"].setdefault(ml.member, {})[u] = (
                        "set" if ok else done.stderr.strip()
                    )
        out[fs] = entry
    return out


def apply(config: EnforceConfig, units: list[dict]) -> tuple[dict, list[str]]:
    """Enforce every unit; returns (report, problems)."""
    problems: list[str] = []
    members: list[MemberLimits] = []
    users: dict[str, tuple[str, ...]] = {}
    for u in units:
        try:
            ml = unit_limits(u)
        except ValueError as e:
            problems.append(str(e))
            continue
        members.append(ml)
        users[ml.member] = tuple(u.get("users") or (ml.member,))
    mechanism, why = detect(config)
    report: dict = {"mechanism": mechanism, "why": why, "time": int(time.time()), "members": {}}
    if mechanism is None:
        return report, [f"no cgroup mechanism on this host: {why}"]
    for ml in members:
        entry: dict = {"limits": {r: ml.value(r) for r in RESOURCES}, "users": users[ml.member]}
        try:
            if mechanism == "cgroup-v1":
                entry["kernel"] = enforce_v1(config, ml)
            elif mechanism == "cgroup-v2":
                entry["kernel"] = enforce_v2(config, ml)
            if mechanism != "systemd":
                entry["cgroups"] = member_cgroups(config, mechanism, ml.member)
        except OSError as e:
            problems.append(f"{ml.member}: {e}")
        report["members"][ml.member] = entry
    if mechanism == "systemd" and members:
        try:
            for m, props in enforce_systemd(config, members, users).items():
                report["members"][m]["kernel"] = props
        except (OSError, KeyError, subprocess.SubprocessError) as e:
            problems.append(f"systemd: {e}")
    if mechanism == "cgroup-v1":
        problems += remove_stale_v1(config, {ml.member for ml in members})
    report["pam_limits"] = write_pam(config, members, users)
    report["quota"] = enforce_quota(config, members, users)
    if config.report:
        p = Path(config.report)
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic(p, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="limits_enforce", description=__doc__.splitlines()[0])
    p.add_argument("verb", choices=("check", "apply"))
    p.add_argument("--config", required=True)
    p.add_argument("index")
    a = p.parse_args(argv)
    try:
        config = EnforceConfig.load(a.config)
        units = load_units(a.index)
    except Unreadable as e:
        print(e, file=sys.stderr)
        return 2
    if a.verb == "check":
        problems = check(units)
    else:
        report, problems = apply(config, units)
        print(json.dumps({"mechanism": report["mechanism"], "members": len(report["members"])}))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
