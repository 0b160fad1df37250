"""Test helpers: a throw-away member Unix user, and the cgroups made for it (cleaned up).

``member_user()`` creates a user ``dtl<random>`` (no home, no login shell) and, at exit,
SIGKILLs every process that user still owns (by pid, found in /proc) and deletes it.
``limits_site(tmp_path)`` gives an enforcement config with a cgroup prefix of its own
(``domtool-test-<random>``), a limits.d directory and a report under ``tmp_path``; at exit
it kills every process left in those cgroups and removes them. Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from domtool.policies.limits import MemberLimits
from domtool.slave.backends.limits import unit_content
from domtool.slave.limits_enforce import V1_CONTROLLERS, EnforceConfig


def user_pids(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def kill_all(pids_of, *, what: str) -> None:
    """SIGKILL every pid ``pids_of()`` names until none is left (fork bombs respawn)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = pids_of()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    raise RuntimeError(f"processes of {what} survive: {pids_of()}")


@contextlib.contextmanager
def member_user(prefix: str = "dtl"):
    name = prefix + secrets.token_hex(3)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        kill_all(lambda: user_pids(pw.pw_uid), what=name)
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)


def cgroup_pids(config: EnforceConfig) -> list[int]:
    out = set()
    for ctrl in V1_CONTROLLERS:
        base = Path(config.cgroup_root, ctrl, config.prefix)
        if base.is_dir():
            for procs in base.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    out.update(int(x) for x in procs.read_text().split())
    return sorted(out)


@contextlib.contextmanager
def limits_site(tmp_path: Path):
    config = EnforceConfig(
        prefix="domtool-test-" + secrets.token_hex(3),
        limits_d=str(tmp_path / "limits.d"),
        systemd_dir=str(tmp_path / "systemd"),
        report=str(tmp_path / "limits-report.json"),
        quota_filesystems=(str(tmp_path),),
    )
    path = tmp_path / "enforce.json"
    path.write_text(json.dumps({k: v for k, v in _asdict(config).items()}))
    try:
        yield config, str(path)
    finally:
        kill_all(lambda: cgroup_pids(config), what=config.prefix)
        for ctrl in V1_CONTROLLERS:
            base = Path(config.cgroup_root, ctrl, config.prefix)
            if base.is_dir():
                for d in sorted(base.iterdir(), reverse=True):
                    if d.is_dir():
                        d.rmdir()
                base.rmdir()


def _asdict(config: EnforceConfig) -> dict:
    import attrs

    d = attrs.asdict(config)
    d["quota_filesystems"] = list(d["quota_filesystems"])
    return d


def write_index(directory: Path, members: list[MemberLimits]) -> str:
    """Unit files and a ``limits.json`` index as the engine would stage them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ml in members:
        p = directory / f"{ml.member}.json"
        p.write_bytes(unit_content(ml))
        paths.append(str(p))
    index = directory / "limits.json"
    index.write_text(json.dumps({"units": paths}))
    return str(index)


def enforce(verb: str, config_path: str, index: str) -> subprocess.CompletedProcess:
    """The backend's own check/reload command, as the engine runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "domtool.slave.limits_enforce",
            verb,
            "--config",
            config_path,
            index,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


# A process that joins a member's cgroups (as root, with the enforcement's own ``place``)
# and then becomes the member before running a Python program.
AS_MEMBER = """
import json, os, sys
from domtool.slave.limits_enforce import EnforceConfig, place
cfg = EnforceConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in json.loads(sys.argv[1]).items()})
member, uid, gid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
place(cfg, "cgroup-v1", member, 0)
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
os.execv(sys.argv[6], [sys.argv[6], "-c", sys.argv[5]])
"""


# The member cannot read the test runner's interpreter (it may live under /root).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


def run_as_member(
    config: EnforceConfig, pw, program: str, *, capture: bool = True
) -> subprocess.Popen:
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            AS_MEMBER,
            json.dumps(_asdict(config)),
            pw.pw_name,
            str(pw.pw_uid),
            str(pw.pw_gid),
            program,
            SYSTEM_PYTHON,
        ],
        stdout=out,
        stderr=out,
        text=True,
    )
