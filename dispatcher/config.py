"""The dispatcher's configuration file (TOML): where its state lives, where it listens,
its certificates and CAs, the site's nodes and where each node's slave listens.

Example (``/etc/domtool/dispatcher.toml``)::

    [dispatcher]
    host = "dispatcher.example.coop"   # this host's name (its certificate's DNS SAN)
    state_dir = "/var/lib/domtool"     # the store (domtool.sqlite3)
    ca_dir = "/etc/domtool/ca"         # optional: adduser/rmuser issue and revoke here
    listen_address = "0.0.0.0"
    listen_port = 1234
    site_domains = ["example.coop"]    # reserved: the site's own domains
    handshake_timeout = 30
    idle_timeout = 600
    slave_timeout = 120                # seconds a slave has to answer one op
    retry_initial = 1                  # backoff of a host converging after a missed commit
    retry_max = 300
    tls_poll = 60                      # seconds between checks for renewed CRLs/certificates
    tls_push = 3600                    # seconds between sends of the host CRL to the slaves

    [tls]
    certificate = "/etc/domtool/dispatcher.pem"
    key = "/etc/domtool/dispatcher.key"
    member_ca = "/etc/domtool/ca/member/ca.pem"
    member_crl = "/etc/domtool/ca/member/crl.pem"   # re-read when it changes
    host_ca = "/etc/domtool/ca/host/ca.pem"
    host_crl = "/etc/domtool/ca/host/crl.pem"       # required; re-read when it changes
    hosts_dir = "/var/lib/domtool/tls/hosts"        # optional: slaves' renewed certificates

    [site]                             # optional; domtool.model.Site's defaults otherwise
    nameservers = ["ns1.example.coop", "ns2.example.coop"]
    hostmaster = "hostmaster.example.coop"
    default_ttl = 3600

    [[nodes]]
    name = "ns1"                       # the node name in the model
    roles = ["dns"]                    # of domtool.model.ROLES
    ipv4 = "192.0.2.1"
    host = "ns1.example.coop"          # the slave's certificate name (default: name)
    address = "192.0.2.1"              # where its slave listens (default: host)
    port = 1235

    [quotas]                           # site defaults (policies.quotas.DEFAULTS otherwise)
    domains = 50

Relative paths are taken relative to the config file's directory. Every problem is
reported at once (:class:`ConfigError`); unknown keys are errors.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from domtool import validate
from domtool.model import ROLES, Node, Site
from domtool.policies import quotas
from domtool.validate import Invalid

DEFAULT_PORT = 1234
SLAVE_PORT = 1235


class ConfigError(ValueError):
    """The configuration is not usable; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@attrs.frozen
class SlaveAddress:
    """Where the slave of one node listens, and the name its certificate carries."""

    node: str
    host: str
    address: str
    port: int = SLAVE_PORT


@attrs.frozen
class DispatcherConfig:
    """The dispatcher's settings, checked."""

    host: str
    state_dir: str
    certificate: str
    key: str
    member_ca: str
    member_crl: str
    host_ca: str
    site: Site
    slaves: tuple[SlaveAddress, ...]
    host_crl: str | None = None
    ca_dir: str | None = None
    listen_address: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    site_domains: tuple[str, ...] = ()
    quotas: Mapping[str, int] = attrs.field(factory=lambda: dict(quotas.DEFAULTS))
    handshake_timeout: float = 30.0
    idle_timeout: float = 600.0
    slave_timeout: float = 120.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    tls_poll: float = 60.0  # seconds between checks of the CRL and certificate files
    tls_push: float = 3600.0  # seconds between sends of the host CRL etc. to slaves
    hosts_dir: str | None = None  # slaves' renewed certificates (tlspush.py)


_DISPATCHER = {
    "host": str,
    "state_dir": "path",
    "ca_dir": "path",
    "listen_address": str,
    "listen_port": int,
    "site_domains": list,
    "handshake_timeout": float,
    "idle_timeout": float,
    "slave_timeout": float,
    "retry_initial": float,
    "retry_max": float,
    "tls_poll": float,
    "tls_push": float,
}
_TLS = {
    "certificate": "path",
    "key": "path",
    "member_ca": "path",
    "member_crl": "path",
    "host_ca": "path",
    "host_crl": "path",
    "hosts_dir": "path",
}
_REQUIRED = (
    "host",
    "state_dir",
    "certificate",
    "key",
    "member_ca",
    "member_crl",
    "host_ca",
    "host_crl",
)
_NODE = {"name", "roles", "ipv4", "ipv6", "host", "address", "port"}
_SITE = {"nameservers", "hostmaster", "default_ttl"}


def _typed(value: Any, kind: Any, where: str, base: str, problems: list[str]) -> Any:
    if kind == "path":
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: expected a path")
            return None
        return os.path.normpath(os.path.join(base, value))
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append(f"{where}: expected a positive number")
            return None
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
            problems.append(f"{where}: expected a port number")
            return None
        return value
    if not isinstance(value, kind):
        problems.append(f"{where}: expected {kind.__name__}")
        return None
    return value


def parse(data: Mapping[str, Any], base: str = ".", source: str = "<config>") -> DispatcherConfig:
    """A checked configuration from parsed TOML (paths relative to ``base``)."""
    problems: list[str] = []
    for key in sorted(set(data) - {"dispatcher", "tls", "site", "nodes", "quotas"}):
        problems.append(f"unknown section [{key}]")
    values: dict[str, Any] = {}
    for section, table in (("dispatcher", _DISPATCHER), ("tls", _TLS)):
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            problems.append(f"[{section}] must be a table")
            continue
        for key in sorted(set(raw) - set(table)):
            problems.append(f"[{section}] unknown key {key!r}")
        for key, kind in table.items():
            if key in raw:
                value = _typed(raw[key], kind, f"[{section}] {key}", base, problems)
                if value is not None:
                    values[key] = value
    for key in _REQUIRED:
        if key not in values:
            problems.append(f"{key} is required")
    if "site_domains" in values:
        try:
            values["site_domains"] = tuple(validate.check_domain(d) for d in values["site_domains"])
        except Invalid as e:
            problems.append(f"[dispatcher] site_domains: {e}")
    site_raw = data.get("site", {})
    site_args: dict[str, Any] = {}
    if isinstance(site_raw, dict):
        for key in sorted(set(site_raw) - _SITE):
            problems.append(f"[site] unknown key {key!r}")
        if "nameservers" in site_raw:
            site_args["nameservers"] = tuple(site_raw["nameservers"])
        if "hostmaster" in site_raw:
            site_args["hostmaster"] = str(site_raw["hostmaster"])
        if "default_ttl" in site_raw:
            site_args["default_ttl"] = int(site_raw["default_ttl"])
    nodes: list[Node] = []
    slaves: list[SlaveAddress] = []
    raw_nodes = data.get("nodes", [])
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append("[[nodes]]: at least one node is required")
        raw_nodes = []
    for i, n in enumerate(raw_nodes):
        where = f"[[nodes]] #{i + 1}"
        if not isinstance(n, dict):
            problems.append(f"{where} must be a table")
            continue
        for key in sorted(set(n) - _NODE):
            problems.append(f"{where} unknown key {key!r}")
        name = n.get("name")
        roles = n.get("roles", [])
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: name is required")
            continue
        bad = [r for r in roles if r not in ROLES] if isinstance(roles, list) else ["?"]
        if bad:
            problems.append(f"{where}: roles must be among {', '.join(ROLES)}")
            continue
        if any(x.name == name for x in nodes):
            problems.append(f"{where}: node {name} is listed twice")
            continue
        nodes.append(Node(name, tuple(roles), n.get("ipv4", "127.0.0.1"), n.get("ipv6")))
        host = n.get("host", name)
        port = _typed(n.get("port", SLAVE_PORT), int, f"{where} port", base, problems)
        slaves.append(SlaveAddress(name, host, n.get("address", host), port or SLAVE_PORT))
    q = data.get("quotas", {})
    limits = dict(quotas.DEFAULTS)
    if isinstance(q, dict):
        for key, value in q.items():
            if key not in quotas.RESOURCES or not isinstance(value, int) or value < 0:
                problems.append(f"[quotas] {key}: a resource of {quotas.RESOURCES} with a count")
            else:
                limits[key] = value
    if problems:
        raise ConfigError(source, problems)
    return DispatcherConfig(
        site=Site(nodes=tuple(nodes), **site_args), slaves=tuple(slaves), quotas=limits, **values
    )


def load(path: str | os.PathLike) -> DispatcherConfig:
    """Read and check the configuration file at ``path``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"not TOML: {e}"]) from None
    return parse(data, os.path.dirname(os.path.abspath(path)), path)
