"""The slave's configuration file (TOML): who it is, where it listens, whom it trusts,
where its state lives and which daemon backends it drives.

Example (``/etc/domtool/slave.toml``)::

    [slave]
    host = "ns1.example.coop"         # this host's name (its certificate's DNS SAN)
    node = "ns1"                      # its node name in the model (default: host)
    dispatcher = ["dispatcher.example.coop"]  # the host certificate(s) allowed to give orders
    state_dir = "/var/lib/domtool/slave"
    listen_address = "0.0.0.0"
    listen_port = 1235
    prepare_timeout = 60              # seconds a prepared transaction waits for commit
    handshake_timeout = 30
    idle_timeout = 600
    tls_poll = 60                     # seconds between checks for a renewed CRL/certificate

    [tls]
    certificate = "/etc/domtool/slave.pem"
    key = "/etc/domtool/slave.key"
    ca = "/etc/domtool/host-ca.pem"   # the site's HOST CA (never a public CA)
    crl = "/etc/domtool/host-crl.pem" # re-read when it changes
    grant_keys = ["/etc/domtool/grant-signing.pub"]  # admin keys that sign members' grants
                                      # (slave/verified.py); without: the dispatcher's word

    [backends.apache]                 # one table per enabled backend; its keys are the
    base_config = "/etc/domtool/apache/base.conf"   # backend's own settings
    live_config = "/etc/domtool/apache/apache2.conf"
    server_root = "/etc/apache2"
    log_dir = "/var/log/apache2"

    [backends.nft]                    # members' network policy: our own nftables table
    nft = "/usr/sbin/nft"             # (slave/backends/nft.py, docs/policy.md)

    [databases.postgres]              # optional: members' databases on this host's servers
    socket_dir = "/var/run/postgresql"  # (domtool.slave.db_postgres / db_mysql; their keys)
    [databases.mysql]
    socket = "/run/mysqld/mysqld.sock"

Relative paths are taken relative to the config file's directory. Every problem is
reported at once (:class:`ConfigError`); unknown keys are errors, so a typo never turns a
setting silently back to its default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from domtool import validate
from domtool.validate import Invalid

__all__ = ["ConfigError", "SlaveConfig", "load", "parse"]

DEFAULT_PORT = 1235


class ConfigError(ValueError):
    """The slave's configuration file is not usable; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@attrs.frozen
class SlaveConfig:
    """The slave's settings, checked. ``backends`` maps a backend name to its own table."""

    host: str
    dispatcher: tuple[str, ...]
    state_dir: str
    certificate: str
    key: str
    ca: str
    crl: str
    node: str | None = None
    listen_address: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    prepare_timeout: float = 60.0
    handshake_timeout: float = 30.0
    idle_timeout: float = 600.0
    tls_poll: float = 60.0  # seconds between checks of the CRL and certificate files
    backends: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    databases: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    grant_keys: tuple[str, ...] = ()

    @property
    def node_name(self) -> str:
        """The node name units must list (``node``, or ``host`` when not set)."""
        return self.node or self.host


_SLAVE_KEYS = {
    "host",
    "node",
    "dispatcher",
    "state_dir",
    "listen_address",
    "listen_port",
    "prepare_timeout",
    "handshake_timeout",
    "idle_timeout",
    "tls_poll",
}
_TLS_KEYS = {"certificate", "key", "ca", "crl", "grant_keys"}


def parse(text: str, base_dir: str = "/", source: str = "<config>") -> SlaveConfig:
    """Check a TOML text and build the configuration (paths relative to ``base_dir``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"not TOML: {e}"]) from None
    problems: list[str] = []
    unknown = sorted(set(data) - {"slave", "tls", "backends", "databases"})
    if unknown:
        problems.append(f"unknown section(s): {', '.join(unknown)}")
    slave = _table(data, "slave", problems)
    tls = _table(data, "tls", problems)
    backends = _table(data, "backends", problems, required=False)
    databases = _table(data, "databases", problems, required=False)
    for name, keys, table in (("slave", _SLAVE_KEYS, slave), ("tls", _TLS_KEYS, tls)):
        extra = sorted(set(table) - keys)
        if extra:
            problems.append(f"[{name}]: unknown key(s): {', '.join(extra)}")

    def path(table: dict, section: str, key: str) -> str:
        value = table.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"[{section}] {key}: required, a path")
            return ""
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))

    def host_name(value: Any, where: str) -> str:
        try:
            return validate.check_domain(value)
        except Invalid as e:
            problems.append(f"{where}: {e}")
            return ""

    def number(key: str, default: float, lo: float, hi: float) -> float:
        value = slave.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            problems.append(f"[slave] {key}: a number of seconds between {lo:g} and {hi:g}")
            return default
        return float(value)

    host = host_name(slave.get("host"), "[slave] host")
    node = slave.get("node")
    if node is not None and (not isinstance(node, str) or not node or len(node) > 253):
        problems.append("[slave] node: a node name")
        node = None
    dispatcher = slave.get("dispatcher")
    if isinstance(dispatcher, str):
        dispatcher = [dispatcher]
    if not isinstance(dispatcher, list) or not dispatcher:
        problems.append("[slave] dispatcher: required, the dispatcher's host name(s)")
        dispatcher = []
    dispatchers = tuple(host_name(d, "[slave] dispatcher") for d in dispatcher)
    address = slave.get("listen_address", "0.0.0.0")
    try:
        address = validate.check_ip(address)
    except Invalid as e:
        problems.append(f"[slave] listen_address: {e}")
    port = slave.get("listen_port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        problems.append("[slave] listen_port: a port number (0-65535)")
        port = DEFAULT_PORT
    grant_keys = tls.get("grant_keys", [])
    if isinstance(grant_keys, str):
        grant_keys = [grant_keys]
    if not isinstance(grant_keys, list) or not all(isinstance(k, str) and k for k in grant_keys):
        problems.append("[tls] grant_keys: a list of public key paths")
        grant_keys = []
    grant_key_paths = tuple(
        os.path.normpath(os.path.join(base_dir, os.path.expanduser(k))) for k in grant_keys
    )
    backend_tables: dict[str, dict[str, Any]] = {}
    for name, table in backends.items():
        if not isinstance(table, dict):
            problems.append(f"[backends.{name}]: a table of the backend's settings")
        else:
            backend_tables[name] = _resolve_paths(table, base_dir)
    database_tables: dict[str, dict[str, Any]] = {}
    for name, table in databases.items():
        if name not in ("postgres", "mysql") or not isinstance(table, dict):
            problems.append(f"[databases.{name}]: a table, for postgres or mysql")
        else:
            database_tables[name] = _resolve_paths(table, base_dir)
    config = SlaveConfig(
        host=host,
        node=node,
        dispatcher=dispatchers,
        state_dir=path(slave, "slave", "state_dir"),
        listen_address=str(address),
        listen_port=port,
        prepare_timeout=number("prepare_timeout", 60.0, 1, 3600),
        handshake_timeout=number("handshake_timeout", 30.0, 1, 600),
        idle_timeout=number("idle_timeout", 600.0, 1, 86400),
        tls_poll=number("tls_poll", 60.0, 0.1, 3600),
        certificate=path(tls, "tls", "certificate"),
        key=path(tls, "tls", "key"),
        ca=path(tls, "tls", "ca"),
        crl=path(tls, "tls", "crl"),
        backends=backend_tables,
        databases=database_tables,
        grant_keys=grant_key_paths,
    )
    if problems:
        raise ConfigError(source, problems)
    return config


def _table(data: dict, name: str, problems: list[str], required: bool = True) -> dict:
    value = data.get(name)
    if value is None:
        if required:
            problems.append(f"[{name}]: missing section")
        return {}
    if not isinstance(value, dict):
        problems.append(f"[{name}]: must be a table")
        return {}
    return value


# Backend settings whose names end like this are paths (made absolute against the file).
_PATH_SUFFIXES = ("_config", "_dir", "_root", "_file", "_certificate", "_key", "socket")


def _resolve_paths(table: dict[str, Any], base_dir: str) -> dict[str, Any]:
    out = {}
    for k, v in table.items():
        if isinstance(v, str) and k.endswith(_PATH_SUFFIXES) and v and not v.startswith("/"):
            v = os.path.normpath(os.path.join(base_dir, v))
        out[k] = v
    return out


def load(path: str | os.PathLike) -> SlaveConfig:
    """Read and check the configuration file at ``path``."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    return parse(text, os.path.dirname(os.path.abspath(path)), path)
