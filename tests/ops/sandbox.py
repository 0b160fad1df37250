"""A systemd unit's sandbox, applied for real without systemd as PID 1 (CI has none):
read from the unit file, enforced with a private mount namespace (``unshare``) and
``setpriv``, so the tests run each service's main under the same restrictions.

Emulated, from the unit's ``[Service]`` section:

- ``ProtectSystem=strict``: every mount read-only except /proc, /sys and /dev;
- ``StateDirectory=`` / ``ReadWritePaths=``: those paths (mapped to the test's own
  directories) bind-mounted writable again, and nothing else;
- ``ProtectHome=yes``: /home, /root and /run/user replaced by empty read-only tmpfs
  (``read-only``: left visible, read-only as everything else);
- ``PrivateTmp=yes``: fresh tmpfs on /tmp and /var/tmp;
- ``PrivateDevices=yes``: a tmpfs /dev holding only null, zero, full, random, urandom;
- ``PrivateNetwork=yes``: a network namespace of its own (only a loopback, down);
- ``User=``/``Group=``, ``NoNewPrivileges=``, ``CapabilityBoundingSet=``,
  ``AmbientCapabilities=`` and ``UMask=``: ``setpriv`` and ``umask``.

Not emulated (systemd-only mechanisms): ``SystemCallFilter=``, ``RestrictAddressFamilies=``,
``ProtectKernel*=``, ``ProtectClock=``, ``RestrictNamespaces=`` and the like; they stay
checked only by ``systemd-analyze verify`` and by the unit's own text.

The test's only deviation: with ``ProtectHome=yes``, paths under /home or /root that
the test itself needs (the source tree and the Python running it, e.g. a CI checkout)
are bound back read-only (under systemd the service runs from /usr).

Run as a script (inside ``unshare --mount``) it applies ``--spec`` and execs the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
HIDDEN_HOMES = ("/home", "/root", "/run/user")
DEVICES = ("null", "zero", "full", "random", "urandom")


def service_section(unit: str | os.PathLike) -> dict[str, list[str]]:
    """The ``[Service]`` settings of a unit file: key -> every value given, in order."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in Path(unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def spec(
    unit: str | os.PathLike | dict[str, list[str]],
    paths: dict[str, str],
    users: dict[str, str] | None = None,
    keep: tuple[str, ...] = (),
    *,
    stage: str,
) -> dict:
    """The restrictions of ``unit`` (a file or a parsed section), with the unit's paths
    mapped to the test's (``paths``: unit path -> test path) and its user and group
    mapped (``users``). ``keep``: paths the test needs that a hidden home would hide;
    ``stage``: an empty directory of the test's for the mounts' staging."""
    s = unit if isinstance(unit, dict) else service_section(unit)
    users = users or {}

    def last(key: str, default: str = "") -> str:
        return s.get(key, [default])[-1]

    writable = [f"/var/lib/{d}" for v in s.get("StateDirectory", []) for d in v.split()]
    writable += [p for v in s.get("ReadWritePaths", []) for p in v.split()]
    caps = last("CapabilityBoundingSet", None) if "CapabilityBoundingSet" in s else None
    user = last("User") or None
    return {
        "protect_system": last("ProtectSystem", "no"),
        "writable": [paths.get(p, p) for p in writable],
        "protect_home": last("ProtectHome", "no"),
        "private_tmp": last("PrivateTmp", "no") == "yes",
        "private_devices": last("PrivateDevices", "no") == "yes",
        "private_network": last("PrivateNetwork", "no") == "yes",
        "user": users.get(user, user) if user else None,
        "group": users.get(last("Group"), last("Group")) if last("Group") else None,
        "no_new_privs": last("NoNewPrivileges", "no") == "yes",
        "caps": None if caps is None else [c.lower().removeprefix("cap_") for c in caps.split()],
        "ambient": [c.lower().removeprefix("cap_") for c in last("AmbientCapabilities").split()],
        "umask": last("UMask") or None,
        "keep": [p for p in keep if p.startswith(tuple(h + "/" for h in HIDDEN_HOMES))],
        "stage": stage,
    }


def prefix(s: dict) -> list[str]:
    """The argv prefix that runs a command under ``s``."""
    return [
        "unshare",
        "--mount",
        *(["--net"] if s.get("private_network") else []),
        "--propagation",
        "private",
        "--",
        sys.executable,
        str(HERE),
        "--spec",
        json.dumps(s),
        "--",
    ]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        p = line.split()[4].replace("\\040", " ")
        if not p.startswith(("/proc", "/sys", "/dev")):
            points.append(p)
    return sorted(set(points), key=len)


def apply(s: dict) -> None:
    """Set up the mounts of ``s`` (we are root in a private mount namespace). ``stage``
    is a test directory that holds, on a tmpfs of this namespace only, what a later
    mount hides (the devices, kept paths) until it is bound back."""
    stage = s["stage"]
    _mount("-t", "tmpfs", "-o", "mode=0700", "tmpfs", stage)
    kept = {}
    for i, p in enumerate(s["keep"]):
        kept[p] = f"{stage}/k{i}"
        os.mkdir(kept[p])
        _mount("--rbind", p, kept[p])
    if s["private_devices"]:
        os.mkdir(f"{stage}/dev")
        _mount("--rbind", "/dev", f"{stage}/dev")
    if s["protect_system"] == "strict":
        for p in _mount_points():
            subprocess.run(["mount", "-o", "remount,bind,ro", p], check=False)
    if s["protect_home"] == "yes":
        for h in HIDDEN_HOMES:
            if not os.path.isdir(h):
                continue
            _mount("-t", "tmpfs", "-o", "mode=0755,size=64k", "tmpfs", h)
            for p, src in kept.items():
                if p.startswith(h + "/"):
                    os.makedirs(p)
                    _mount("--rbind", src, p)
                    _mount("-o", "remount,bind,ro", p)
            _mount("-o", "remount,ro", h)
    if s["private_tmp"]:
        for t in ("/tmp", "/var/tmp"):
            _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", t)
    if s["private_devices"]:
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/dev")
        for d in DEVICES:
            Path("/dev", d).touch()
            _mount("--bind", f"{stage}/dev/{d}", f"/dev/{d}")
        os.mkdir("/dev/shm")
        _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm")
    for p in s["writable"]:
        _mount("--bind", p, p)
        _mount("-o", "remount,bind,rw", p)
    subprocess.run(["umount", "-R", "-l", stage], check=True)


def setpriv(s: dict) -> list[str]:
    argv = ["setpriv"]
    if s["user"]:
        argv += [f"--reuid={s['user']}", f"--regid={s['group'] or s['user']}", "--init-groups"]
    if s["no_new_privs"]:
        argv.append("--no-new-privs")
    if s["caps"] is not None:
        argv.append("--bounding-set=" + ",".join(["-all", *(f"+{c}" for c in s["caps"])]))
        argv.append("--inh-caps=" + ",".join(["-all", *(f"+{c}" for c in s["ambient"])]))
        argv.append("--ambient-caps=" + ",".join(["-all", *(f"+{c}" for c in s["ambient"])]))
    return argv


def main(argv: list[str]) -> None:
    assert argv[0] == "--spec" and argv[2] == "--", argv
    s = json.loads(argv[1])
    apply(s)
    if s["umask"]:
        os.umask(int(s["umask"], 8))
    cmd = [*setpriv(s), "--", *argv[3:]]
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
