"""The limits backend: one unit per member, enforced by the cgroup, pam_limits and quota tools.

Each unit is one member's rendered limits (JSON, ``policies.limits.MemberLimits`` turned
into every mechanism's own settings), so the same policy reads the same on every host:

- ``systemd``: the drop-in for the member's slice (``user-UID.slice.d/50-domtool.conf``:
  ``TasksMax``, ``MemoryMax``, ``MemorySwapMax=0``, ``CPUWeight``), for hosts where
  systemd is PID 1 on cgroup v2 (production);
- ``cgroup_v2``: the raw files of a v2 cgroup (``pids.max``, ``memory.max``,
  ``memory.swap.max``, ``cpu.weight``);
- ``cgroup_v1``: per controller (``pids.max``; ``memory.limit_in_bytes``;
  ``cpu.shares`` = weight * 1024 / 100), for hosts with the v1 controllers mounted under
  ``/sys/fs/cgroup/{pids,memory,cpu}`` and no systemd (the test machines);
- ``pam_limits``: a ``limits.d`` file with ``nproc`` for the member's user (per-process
  bounds at login; ``RLIMIT_NPROC`` counts every process of the user and is ignored for
  root, which is never a member);
- ``quota``: the ``setquota`` block limits (KiB), applied only where the member's
  filesystem has quotas on;
- ``cgi``: CPU and wall seconds of one CGI program (the Apache backend renders
  ``RLimitCPU``; the wall time is the reaper's, ``slave/cgireaper.py``).

Check (before the switch): ``python -m domtool.slave.limits_enforce check INDEX`` runs
``systemd-analyze verify`` on each member's slice (present even where systemd is not PID
1; a warning of it fails the check, since it exits 0 on an invalid value) and checks
every raw value. Reload: ``... apply --config CONF INDEX`` detects what the host has and
enforces it (``slave/limits_enforce.py``), recording which mechanism it used.

Files::

    state_dir/units/limits/<sha256>.json   one member's limits
    generation/limits/limits.json          {"units": [unit file, ...]} (sorted)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

import attrs

from domtool import validate
from domtool.model import DesiredState
from domtool.policies.limits import RESOURCES, MemberLimits, cpu_shares
from domtool.slave.backend import Command, Probe, RenderRefused, Unit, UnitRefused

INDEX_FILE = "limits.json"
DROPIN_NAME = "50-domtool.conf"


class LimitsRefused(UnitRefused):
    kind = "limits"


def systemd_dropin(ml: MemberLimits) -> str:
    """The ``[Slice]`` properties of the member's slice."""
    return (
        f"# domtool: limits of member {ml.member}. Generated; do not edit.\n"
        "[Slice]\n"
        f"TasksMax={ml.processes}\n"
        f"MemoryMax={ml.memory}\n"
        "MemorySwapMax=0\n"
        f"CPUWeight={ml.cpu_weight}\n"
    )


def cgroup_v2(ml: MemberLimits) -> dict[str, str]:
    return {
        "pids.max": str(ml.processes),
        "memory.max": str(ml.memory),
        "memory.swap.max": "0",
        "cpu.weight": str(ml.cpu_weight),
    }


def cgroup_v1(ml: MemberLimits) -> dict[str, dict[str, str]]:
    return {
        "pids": {"pids.max": str(ml.processes)},
        "memory": {"memory.limit_in_bytes": str(ml.memory)},
        "cpu": {"cpu.shares": str(cpu_shares(ml.cpu_weight))},
    }


def pam_limits(ml: MemberLimits, users: tuple[str, ...] = ()) -> str:
    """``/etc/security/limits.d/domtool-MEMBER.conf``. Only ``nproc``: ``rss`` is ignored
    by Linux, and ``as``/``cpu`` per login process would break ordinary programs (memory
    and CPU are the cgroup's)."""
    lines = [f"# domtool: per-process bounds of member {ml.member}. Generated; do not edit."]
    for u in users or (ml.member,):
        lines += [f"{u} soft nproc {ml.processes}", f"{u} hard nproc {ml.processes}"]
    return "\n".join(lines) + "\n"


def setquota_argv(user: str, disk_bytes: int, filesystem: str) -> tuple[str, ...]:
    """``setquota -u USER BSOFT BHARD 0 0 FS``: blocks in KiB, soft = hard, no inode limit."""
    kib = str(max(1, disk_bytes // 1024))
    return ("setquota", "-u", user, kib, kib, "0", "0", filesystem)


def unit_content(ml: MemberLimits, users: tuple[str, ...] = ()) -> bytes:
    """One member's rendered limits, after every name passed its grammar again. ``users``
    are the member's Unix users the limits bind (the member's name when empty): one
    cgroup for all of them; per user, a systemd slice (``user-UID.slice``), its
    pam_limits lines and its quota."""
    try:
        name = validate.check_unix_name(ml.member)
    except validate.Invalid as e:
        raise RenderRefused(
            [LimitsRefused(str(ml.member), str(ml.member), "member", ml.member, str(e))]
        ) from None
    if name == "root":
        raise RenderRefused([LimitsRefused(name, name, "member", name, "root is never a member")])
    problems = []
    users = tuple(users) or (name,)
    for i, u in enumerate(users):
        try:
            if validate.check_unix_name(u) == "root":
                problems.append(
                    LimitsRefused(name, name, f"users[{i}]", u, "root is never a member's user")
                )
        except validate.Invalid as e:
            problems.append(LimitsRefused(name, name, f"users[{i}]", u, str(e)))
    for r in RESOURCES:
        v = ml.value(r)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            problems.append(LimitsRefused(name, name, r, v, "must be a positive integer"))
    if ml.cpu_weight > 10000:
        problems.append(LimitsRefused(name, name, "cpu_weight", ml.cpu_weight, "at most 10000"))
    if problems:
        raise RenderRefused(problems)
    data = {
        "member": name,
        "users": list(users),
        "limits": {r: ml.value(r) for r in RESOURCES},
        "systemd": {"dropin": systemd_dropin(ml)},
        "cgroup_v2": cgroup_v2(ml),
        "cgroup_v1": cgroup_v1(ml),
        "pam_limits": pam_limits(ml, users),
        "quota": {"users": list(users), "block_kib": max(1, ml.disk // 1024)},
        "cgi": {"cpu_seconds": ml.cgi_cpu, "wall_seconds": ml.cgi_wall},
    }
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


@attrs.frozen
class LimitsConfig:
    """``enforce_config`` is the JSON file of ``slave/limits_enforce.py`` (cgroup root and
    prefix, limits.d and systemd directories, quota filesystems, the report path);
    ``live_index`` is ``state_dir/current/limits/limits.json``."""

    enforce_config: str
    live_index: str
    python: str = sys.executable
    timeout: float = 120.0
    # The members' split Apache logs (as ApacheConfig.member_log_dir), for usage.
    member_log_dir: str | None = None

    def argv(self, verb: str, index: str) -> tuple[str, ...]:
        return (
            self.python,
            "-m",
            "domtool.slave.limits_enforce",
            verb,
            "--config",
            self.enforce_config,
            index,
        )


def policy_limits(state: DesiredState) -> Iterable[tuple[MemberLimits, tuple[str, ...]]]:
    """Each member policy's limits in the state, with the Unix users it binds."""
    from domtool.policies.limits import from_model

    for p in state.policies:
        if p.limits is not None:
            yield from_model(p.owner, p.limits), tuple(p.users)


def cgi_limits(state: DesiredState) -> dict:
    """owner -> the Apache backend's ``CgiLimits`` from the state's member policies."""
    from domtool.slave.backends.apache import CgiLimits

    return {
        p.owner: CgiLimits(p.limits.cgi_cpu, p.limits.processes, p.limits.memory)
        for p in state.policies
        if p.limits is not None
    }


@attrs.define
class LimitsBackend:
    """Renders each member's limits; checks and enforces them through limits_enforce.

    ``limits_of(state)`` yields each member's :class:`MemberLimits` and Unix users,
    carried by the state (the dispatcher's member policy, ``MemberPolicy.limits``)."""

    config: LimitsConfig
    limits_of: Callable[[DesiredState], Iterable[tuple[MemberLimits, tuple[str, ...]]]] = (
        policy_limits
    )
    name: str = "limits"

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        errors: list[UnitRefused] = []
        units: dict[str, Unit] = {}
        for ml, users in self.limits_of(state):
            try:
                content = unit_content(ml, users)
            except RenderRefused as e:
                errors.extend(e.errors)
                continue
            key = f"limits:{ml.member}"
            if key in units:
                errors.append(LimitsRefused(ml.member, ml.member, "member", ml.member, "twice"))
                continue
            units[key] = Unit(key, ml.member, "json", content)
        if errors:
            raise RenderRefused(errors)
        return [units[k] for k in sorted(units)]

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        for key in units:
            if not key.startswith("limits:"):
                raise ValueError(f"not a limits unit key: {key!r}")
        data = {"units": [str(units[k]) for k in sorted(units)]}
        return {INDEX_FILE: (json.dumps(data, indent=1) + "\n").encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        staged = str(PurePosixPath(generation_dir) / self.name / INDEX_FILE)
        return (Command(self.config.argv("check", staged), timeout=self.config.timeout),)

    def reload(self) -> tuple[Command, ...]:
        return (
            Command(self.config.argv("apply", self.config.live_index), timeout=self.config.timeout),
        )

    def probes(self, state: DesiredState) -> list[Probe]:
        """None: ``apply`` reads every value back from the kernel and fails otherwise."""
        return []

    def actions(self) -> dict:
        """The typed operation of this backend at the slave's edge: ``usage``."""
        from domtool.slave import usage
        from domtool.slave.limits_enforce import EnforceConfig

        def collect(state: DesiredState, owner: str) -> dict:
            return usage.collect(
                state,
                owner,
                enforce_config=EnforceConfig.load(self.config.enforce_config),
                member_log_dir=self.config.member_log_dir,
            )

        return {"usage": collect}
