"""Per-member resource limits: site defaults, admin overrides, units, validation (pure).

What one member may take from the others (``SoftwareArchitecturePlans.txt`` section 4):

=============  ==========  ====================================================
resource       unit        enforced by (``slave/backends/limits.py``)
=============  ==========  ====================================================
``processes``  count       cgroup ``pids.max`` / systemd ``TasksMax``; pam_limits
                           ``nproc`` (per user); Apache ``RLimitNPROC`` for CGI
``memory``     bytes       cgroup ``memory.limit_in_bytes`` (v1) / ``memory.max``
                           (v2) / systemd ``MemoryMax``; ``RLimitMEM`` for CGI
``cpu_weight`` weight      cgroup ``cpu.shares`` (v1, weight*1024/100) /
                           ``cpu.weight`` (v2) / systemd ``CPUWeight``
``cgi_cpu``    seconds     Apache ``RLimitCPU N N`` in the vhost's CGI sections
                           (RLIMIT_CPU, hard = soft, so SIGXCPU cannot be outlived)
``cgi_wall``   seconds     the slave's reaper of the member's CGI processes
                           (``slave/cgireaper.py``)
``disk``       bytes       ``setquota`` where the filesystem has quotas
=============  ==========  ====================================================

The site gives, per resource, a default, a minimum and a maximum (:class:`SiteLimits`);
an admin may override any resource for a member within [minimum, maximum]. Values are
written with human units: sizes ``512M``, ``2G``, ``1.5G``, ``100K`` or plain bytes
(binary multiples: K = 1024); durations ``30``, ``30s``, ``5m``, ``1h``; counts and
weights as plain integers. Every problem of a request is reported at once
(:class:`LimitError`), and nothing is changed when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

RESOURCES = ("processes", "memory", "cpu_weight", "cgi_cpu", "cgi_wall", "disk")
KIND = {
    "processes": "count",
    "memory": "size",
    "cpu_weight": "weight",
    "cgi_cpu": "duration",
    "cgi_wall": "duration",
    "disk": "size",
}
DESCRIPTION = {
    "processes": "processes and threads at once",
    "memory": "memory (RAM) of all the member's processes",
    "cpu_weight": "CPU share when the CPU is contended (100 = an ordinary member)",
    "cgi_cpu": "CPU seconds of one dynamic web program (CGI)",
    "cgi_wall": "wall-clock seconds of one dynamic web program (CGI)",
    "disk": "disk quota",
}
K, M, G, T = 1024, 1024**2, 1024**3, 1024**4
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]{1,3})?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_DURATION = re.compile(r"([0-9]+)\s*([smh]?)", re.IGNORECASE)
_MULT = {"": 1, "K": K, "M": M, "G": G, "T": T}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


class LimitError(ValueError):
    """Bad limits: ``problems`` lists every message (the request changes nothing)."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def parse_value(resource: str, value: object) -> int:
    """``value`` (text with units, or an int) as the resource's integer (bytes, seconds,
    count, weight). Raises :class:`LimitError` for an unknown resource or bad units."""
    if resource not in KIND:
        raise LimitError([f"unknown limit {resource!r}; the limits are {', '.join(RESOURCES)}"])
    kind = KIND[resource]
    if isinstance(value, bool):
        raise LimitError([f"{resource}: expected a number, got a boolean"])
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip()
        if kind == "size":
            m = _SIZE.fullmatch(text)
            if m is None:
                raise LimitError(
                    [f"{resource}: {value!r} is not a size (e.g. 512M, 2G, 1.5G, 1048576)"]
                )
            n = int(float(m[1]) * _MULT[m[2].upper()])
        elif kind == "duration":
            m = _DURATION.fullmatch(text)
            if m is None:
                raise LimitError([f"{resource}: {value!r} is not a duration (e.g. 30, 30s, 5m)"])
            n = int(m[1]) * _SECONDS[m[2].lower()]
        else:
            if not re.fullmatch(r"[0-9]{1,12}", text):
                raise LimitError([f"{resource}: {value!r} is not a whole number"])
            n = int(text)
    else:
        raise LimitError([f"{resource}: expected text or a number, got {type(value).__name__}"])
    if n < 0:
        raise LimitError([f"{resource}: must not be negative"])
    return n


def format_value(resource: str, n: int) -> str:
    """``n`` written back with the largest exact unit (``536870912`` -> ``512M``)."""
    kind = KIND[resource]
    if kind == "size":
        for suffix in ("T", "G", "M", "K"):
            if n and n % _MULT[suffix] == 0:
                return f"{n // _MULT[suffix]}{suffix}"
        return str(n)
    if kind == "duration":
        return f"{n}s"
    return str(n)


@attrs.frozen
class Bounds:
    default: int
    minimum: int
    maximum: int


DEFAULT_BOUNDS: dict[str, Bounds] = {
    "processes": Bounds(200, 16, 4096),
    "memory": Bounds(1 * G, 64 * M, 16 * G),
    "cpu_weight": Bounds(100, 1, 10000),
    "cgi_cpu": Bounds(30, 1, 600),
    "cgi_wall": Bounds(60, 2, 3600),
    "disk": Bounds(5 * G, 100 * M, 1 * T),
}


@attrs.frozen
class SiteLimits:
    """The site's bounds per resource (defaults, minimum, maximum)."""

    bounds: Mapping[str, Bounds] = attrs.field(factory=lambda: dict(DEFAULT_BOUNDS))

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, object]]) -> SiteLimits:
        """From ``{resource: {default, minimum, maximum}}`` (any may be omitted; values
        with units). Raises :class:`LimitError` listing every problem."""
        problems: list[str] = []
        out = dict(DEFAULT_BOUNDS)
        for resource, spec in config.items():
            if resource not in KIND:
                problems.append(f"site limits: unknown limit {resource!r}")
                continue
            b = out[resource]
            vals = {"default": b.default, "minimum": b.minimum, "maximum": b.maximum}
            for key, v in spec.items():
                if key not in vals:
                    problems.append(f"site limits: {resource}.{key}: unknown field")
                    continue
                try:
                    vals[key] = parse_value(resource, v)
                except LimitError as e:
                    problems.extend(f"site limits: {p}" for p in e.problems)
            if not vals["minimum"] <= vals["default"] <= vals["maximum"]:
                problems.append(f"site limits: {resource}: need minimum <= default <= maximum")
            out[resource] = Bounds(vals["default"], vals["minimum"], vals["maximum"])
        if problems:
            raise LimitError(problems)
        return cls(out)


@attrs.frozen
class MemberLimits:
    """One member's effective limits, and which of them an admin overrode."""

    member: str
    processes: int
    memory: int
    cpu_weight: int
    cgi_cpu: int
    cgi_wall: int
    disk: int
    overridden: frozenset[str] = frozenset()

    def value(self, resource: str) -> int:
        return getattr(self, resource)

    def to_json(self) -> dict:
        d = {r: self.value(r) for r in RESOURCES}
        return {"member": self.member, **d, "overridden": sorted(self.overridden)}

    @classmethod
    def from_json(cls, data: Mapping) -> MemberLimits:
        """The wire form back; raises :class:`LimitError` on anything but the fields."""
        if not isinstance(data, Mapping):
            raise LimitError(["limits: expected an object"])
        want = {"member", "overridden", *RESOURCES}
        problems = [f"limits: unknown field {k!r}" for k in data if k not in want]
        problems += [f"limits: missing {k!r}" for k in want if k not in data]
        if problems:
            raise LimitError(problems)
        for r in RESOURCES:
            v = data[r]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
                problems.append(f"limits: {r}: expected a non-negative integer")
        ov = data["overridden"]
        if not isinstance(ov, list) or any(x not in RESOURCES for x in ov):
            problems.append("limits: overridden: expected a list of limit names")
        member = data["member"]
        if not isinstance(member, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", member):
            problems.append("limits: member: not a member name")
        if problems:
            raise LimitError(problems)
        return cls(
            member=member,
            overridden=frozenset(ov),
            **{r: int(data[r]) for r in RESOURCES},
        )


def check_overrides(site: SiteLimits, overrides: Mapping[str, object]) -> dict[str, int]:
    """The overrides as integers, each within the site's [minimum, maximum]. Raises
    :class:`LimitError` with every problem (unknown limit, bad units, out of bounds)."""
    problems: list[str] = []
    out: dict[str, int] = {}
    for resource, raw in overrides.items():
        try:
            n = parse_value(resource, raw)
        except LimitError as e:
            problems.extend(e.problems)
            continue
        b = site.bounds[resource]
        if n < b.minimum:
            problems.append(
                f"{resource}: {format_value(resource, n)} is below what the site allows "
                f"(at least {format_value(resource, b.minimum)})"
            )
        elif n > b.maximum:
            problems.append(
                f"{resource}: {format_value(resource, n)} is above the site's maximum "
                f"({format_value(resource, b.maximum)})"
            )
        else:
            out[resource] = n
    if problems:
        raise LimitError(problems)
    return out


def effective(site: SiteLimits, member: str, overrides: Mapping[str, int]) -> MemberLimits:
    """The member's limits: the site's defaults, then the admin's overrides. Stored
    overrides outside the site's current bounds (the site narrowed them later) are
    clamped into them, so a host never enforces what the site no longer allows."""
    values = {}
    for r in RESOURCES:
        b = site.bounds[r]
        v = overrides.get(r, b.default)
        values[r] = min(max(int(v), b.minimum), b.maximum)
    return MemberLimits(
        member=member,
        overridden=frozenset(r for r in overrides if r in KIND),
        **values,
    )


def set_overrides(
    site: SiteLimits,
    members: Iterable[str],
    member: str,
    current: Mapping[str, int],
    changes: Mapping[str, object],
) -> dict[str, int]:
    """``member``'s new override set after ``changes`` (validated), or
    :class:`LimitError` (unknown member, unknown limit, bad units, out of bounds)."""
    if member not in set(members):
        raise LimitError([f"unknown member {member!r}"])
    if not changes:
        raise LimitError(["no limit given (e.g. memory=512M processes=100)"])
    new = dict(current)
    new.update(check_overrides(site, changes))
    return new


def reset_overrides(
    members: Iterable[str], member: str, current: Mapping[str, int], resources: Iterable[str]
) -> dict[str, int]:
    """``member``'s overrides without ``resources`` (all of them when empty)."""
    if member not in set(members):
        raise LimitError([f"unknown member {member!r}"])
    names = list(resources)
    bad = [r for r in names if r not in KIND]
    if bad:
        raise LimitError(
            [f"unknown limit {r!r}; the limits are {', '.join(RESOURCES)}" for r in bad]
        )
    if not names:
        return {}
    return {r: v for r, v in current.items() if r not in names}


def parse_assignments(words: Iterable[str]) -> dict[str, str]:
    """``["memory=512M", "processes=100"]`` -> ``{"memory": "512M", ...}``."""
    out: dict[str, str] = {}
    problems = []
    for w in words:
        name, sep, value = w.partition("=")
        if not sep or not name or not value:
            problems.append(f"{w!r}: write LIMIT=VALUE (e.g. memory=512M)")
        elif name in out:
            problems.append(f"{name}: given twice")
        else:
            out[name] = value
    if problems:
        raise LimitError(problems)
    return out


def cpu_shares(weight: int) -> int:
    """cgroup v1 ``cpu.shares`` for a v2/systemd ``CPUWeight`` (100 -> 1024, at least 2)."""
    return max(2, weight * 1024 // 100)


def table(limits: MemberLimits) -> list[tuple[str, str, str, str]]:
    """Rows (limit, value, default/override, what it bounds) for the CLIs."""
    return [
        (
            r,
            format_value(r, limits.value(r)),
            "override" if r in limits.overridden else "default",
            DESCRIPTION[r],
        )
        for r in RESOURCES
    ]


# ---------------------------------------------------------------------------
# The "limits" part of an admin-set member policy (policies/member_policy.py)


def _policy_error(problems: Iterable[str]):
    from domtool.policies.member_policy import PolicyError

    return PolicyError(problems)


@attrs.frozen
class LimitsPart:
    """A stored limits part: the resources set, as integers. In a member's record these
    are the admin's overrides; in the site's record (``*``), the site's defaults."""

    values: Mapping[str, int] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, int]:
        return {r: self.values[r] for r in RESOURCES if r in self.values}

    @classmethod
    def from_json(cls, data: object) -> LimitsPart:
        if not isinstance(data, Mapping):
            raise _policy_error(["the limits part is an object of limit: value"])
        try:
            return cls(check_overrides(SiteLimits(), data))
        except LimitError as e:
            raise _policy_error(e.problems) from None

    def problems(self, member: str, users: Iterable[str], holder) -> list[str]:
        try:
            check_overrides(SiteLimits(), self.values)
        except LimitError as e:
            return list(e.problems)
        return []


def _words(value: str) -> dict[str, str]:
    """``memory=512M processes=100`` or ``memory 512M``."""
    words = str(value).split()
    if len(words) == 2 and "=" not in value:
        return {words[0]: words[1]}
    return parse_assignments(words)


def edit_limits(part: LimitsPart | None, action: str, value: str, member: str | None):
    """The limits part after ``set LIMIT=VALUE...`` or ``reset [LIMIT...]`` (member None:
    the site's defaults). Raises PolicyError; the stored part is unchanged then."""
    current = dict(part.values) if part is not None else {}
    try:
        if action == "set":
            new = dict(current)
            new.update(check_overrides(SiteLimits(), _words(value)))
        elif action == "reset":
            names = str(value or "").split()
            if not names:
                raise LimitError(["name the limits to reset, or all"])
            new = reset_overrides(["-"], "-", current, [] if names == ["all"] else names)
        else:
            raise LimitError([f"unknown limits action {action!r} (set, reset)"])
    except LimitError as e:
        raise _policy_error(e.problems) from None
    return LimitsPart(new) if new else None


def site_limits(site_part: LimitsPart | None) -> SiteLimits:
    """The site's bounds with the site record's defaults in them."""
    bounds = dict(DEFAULT_BOUNDS)
    for r, v in (site_part.values if site_part is not None else {}).items():
        bounds[r] = attrs.evolve(bounds[r], default=v)
    return SiteLimits(bounds)


def effective_limits(member_part, site_part, users, site=None):
    """The model's ``Limits`` of a member: the site's defaults, then its overrides; None
    while neither the site nor this member has a limits record. Once the site has one
    (``domtool-admin limits set --site memory=1G``), every member with a Unix user is
    bounded by the site's defaults for what neither record sets."""
    from domtool.model import Limits

    if member_part is None and site_part is None:
        return None

    ml = effective(site_limits(site_part), "-", member_part.values if member_part else {})
    return Limits(**{r: ml.value(r) for r in RESOURCES}, overridden=tuple(sorted(ml.overridden)))


def from_model(owner: str, limits) -> MemberLimits:
    """``domtool.model.Limits`` of ``owner`` as a :class:`MemberLimits`."""
    return MemberLimits(
        member=owner,
        overridden=frozenset(limits.overridden),
        **{r: getattr(limits, r) for r in RESOURCES},
    )


def unit_problems(limits) -> list[str]:
    """What a host refuses in a policy's limits (beside the schema): out of the bounds
    any site may set, an unknown name among the overridden ones."""
    out = []
    for r in RESOURCES:
        v = getattr(limits, r)
        b = DEFAULT_BOUNDS[r]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= b.maximum:
            out.append(f"policy: limits: {r} {v!r} out of range (1 to {b.maximum})")
    out += [f"policy: limits: unknown limit {r!r}" for r in limits.overridden if r not in KIND]
    return out


def policy_lines(limits) -> list[str]:
    """The limits as the lines the CLIs show (``memory 1G (default)``...)."""
    if limits is None:
        return []
    over = set(limits.overridden)
    return [
        f"{r} {format_value(r, getattr(limits, r))}"
        + (" (set for this member)" if r in over else " (site default)")
        for r in RESOURCES
    ]
