"""The client configuration file (TOML) that ``domtool`` and ``domtool-admin`` read.

Example (``~/.domtool/client.toml``, the default; ``--config PATH`` names another)::

    [dispatcher]
    address = "dispatcher.example.coop:1234"  # HOST:PORT to connect to
    name = "dispatcher.example.coop"          # the name its host certificate must carry
                                              # (default: the HOST part of address)
    timeout = 600                             # seconds to wait for an answer (default 600)

    [tls]
    certificate = "alice.pem"   # the member's certificate (issued by the member CA)
    key = "alice.key"           # its private key
    ca = "host-ca.pem"          # the site's HOST CA: the only CA the dispatcher is checked against

Relative paths are taken relative to the file's directory. Unknown sections or keys are
errors (a typo must not silently fall back to a default), and every problem is reported
at once in :class:`ConfigError`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import attrs

__all__ = [
    "ClientConfig",
    "ConfigError",
    "DEFAULT_PATH",
    "default_path",
    "dump",
    "load",
    "parse",
]

DEFAULT_PATH = "~/.domtool/client.toml"
DEFAULT_TIMEOUT = 600.0


class ConfigError(ValueError):
    """The client configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@attrs.frozen
class ClientConfig:
    """Where the dispatcher is, whom to expect there, and who we are."""

    host: str
    port: int
    name: str
    certificate: str
    key: str
    ca: str
    timeout: float = DEFAULT_TIMEOUT
    source: str = "<config>"

    @property
    def address(self) -> str:
        """``HOST:PORT`` as written (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def default_path() -> Path:
    """``~/.domtool/client.toml`` for the current user."""
    return Path(os.path.expanduser(DEFAULT_PATH))


def split_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``) into its parts; ValueError says what is wrong."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{value!r} is not [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} has no port: write HOST:PORT")
    if not host:
        raise ValueError(f"{value!r} has no host: write HOST:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse(text: str, base_dir: str = "/", source: str = "<config>") -> ClientConfig:
    """Check a TOML text; paths are made absolute against ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"not TOML: {e}"]) from None
    problems: list[str] = []
    unknown = sorted(set(data) - {"dispatcher", "tls"})
    if unknown:
        problems.append(f"unknown section(s): {', '.join(unknown)} (expected [dispatcher], [tls])")

    def table(name: str, keys: set[str]) -> dict:
        value = data.get(name)
        if value is None:
            problems.append(f"[{name}]: missing section")
            return {}
        if not isinstance(value, dict):
            problems.append(f"[{name}]: must be a table")
            return {}
        extra = sorted(set(value) - keys)
        if extra:
            problems.append(f"[{name}]: unknown key(s): {', '.join(extra)}")
        return value

    disp = table("dispatcher", {"address", "name", "timeout"})
    tls = table("tls", {"certificate", "key", "ca"})

    host, port = "", 0
    address = disp.get("address")
    if not isinstance(address, str) or not address:
        if disp or "dispatcher" in data:
            problems.append('[dispatcher] address: required, "HOST:PORT"')
    else:
        try:
            host, port = split_address(address)
        except ValueError as e:
            problems.append(f"[dispatcher] address: {e}")
    name = disp.get("name", host)
    if not isinstance(name, str) or (not name and host):
        problems.append("[dispatcher] name: the host name on the dispatcher's certificate")
        name = ""
    timeout = disp.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout:
        problems.append("[dispatcher] timeout: a positive number of seconds")
        timeout = DEFAULT_TIMEOUT

    def path(key: str, what: str) -> str:
        value = tls.get(key)
        if not isinstance(value, str) or not value:
            if "tls" in data:
                problems.append(f"[tls] {key}: required, the path of {what}")
            return ""
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))

    config = ClientConfig(
        host=host,
        port=port,
        name=name,
        certificate=path("certificate", "your certificate (PEM)"),
        key=path("key", "your private key (PEM)"),
        ca=path("ca", "the site's host CA certificate (PEM)"),
        timeout=float(timeout),
        source=source,
    )
    if problems:
        raise ConfigError(source, problems)
    return config


def load(path: str | os.PathLike | None = None) -> ClientConfig:
    """Read and check the file at ``path`` (default ``~/.domtool/client.toml``)."""
    p = os.fspath(path) if path is not None else str(default_path())
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(
            p,
            [
                "no such file; ask your site's admins for a client configuration, or pass "
                "--config PATH"
            ],
        ) from None
    except OSError as e:
        raise ConfigError(p, [f"cannot read: {e.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(p, ["not UTF-8 text"]) from None
    return parse(text, os.path.dirname(os.path.abspath(p)), p)


def dump(
    address: str, name: str, certificate: str, key: str, ca: str, timeout: float | None = None
) -> str:
    """The TOML text of a client configuration (what site setup writes for a member)."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "# domtool client configuration (see domtool --help)",
        "[dispatcher]",
        f"address = {q(address)}",
        f"name = {q(name)}",
    ]
    if timeout is not None:
        lines.append(f"timeout = {timeout:g}")
    lines += [
        "",
        "[tls]",
        f"certificate = {q(certificate)}",
        f"key = {q(key)}",
        f"ca = {q(ca)}",
    ]
    return "\n".join(lines) + "\n"
