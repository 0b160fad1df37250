"""A slave host's site files: the daemons' top-level configs that its slave.toml names and the
empty first generation they include, so named, Apache and Exim can start before the first apply.

:func:`site_files` renders, through each enabled backend's own ``site_config``, BIND's
``base.conf``, ``named.conf`` and ``rndc.conf`` (a new rndc key; root:bind 0640, they hold
it), Apache's ``base.conf`` and ``apache2.conf`` (root 0640) and Exim's ``exim4.conf``
(0644: Exim reads ``/etc/exim4/exim4.conf``, docs/deploy.md); :func:`write` writes them.
:func:`bootstrap_state` gives a fresh state directory an empty generation (empty index files,
``current -> bootstrap``); the engine's ``recover`` leaves such a link alone (it names no
generation) and the first apply replaces it. :func:`main` is
``/usr/share/domtool-slave/slave-site-files.py`` (``debian/``), run once as root on a slave
host; it overwrites those files. The local site of the checkout (``domtool.devsite``) uses
:func:`bootstrap_state` too.
"""

from __future__ import annotations

import base64
import grp
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

__all__ = ["SiteFile", "bootstrap_state", "indexes", "main", "site_files", "write"]

DEFAULT_CONFIG = "/etc/domtool/slave.toml"


@attrs.frozen
class SiteFile:
    """One file to write: its bytes, mode, and the group that owns it (None: root's)."""

    data: bytes
    mode: int = 0o640
    group: str | None = None


def bootstrap_state(state_dir: Path, indexes: Mapping[str, str | Iterable[str]]) -> None:
    """Give a slave state directory an empty live generation so the daemons can start:
    ``state_dir/bootstrap/<backend>/<index>`` (empty) for each backend's index file (or
    files), and ``current -> bootstrap`` unless ``current`` exists already."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for backend, names in indexes.items():
        d = state_dir / "bootstrap" / backend
        d.mkdir(parents=True, exist_ok=True)
        for name in (names,) if isinstance(names, str) else names:
            (d / name).write_bytes(b"")
    current = state_dir / "current"
    if not current.is_symlink() and not current.exists():
        os.symlink("bootstrap", current)


def indexes(backends: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """The index files each enabled backend's live config includes from ``current/``."""
    from domtool.slave.backends import apache, bind

    out: dict[str, tuple[str, ...]] = {}
    if "bind" in backends:
        out["bind"] = (bind.INDEX_FILE,)
    if "apache" in backends:
        out["apache"] = (apache.INDEX_FILE,)
    if "exim" in backends:
        from domtool.slave.backends import exim

        out["exim"] = (exim.DOMAINS_INDEX, exim.LISTS_INDEX)
    return out


def site_files(
    state_dir: str, backends: Mapping[str, object], *, rndc_secret: str | None = None
) -> dict[str, SiteFile]:
    """Each enabled backend's site files (path -> :class:`SiteFile`), their live configs
    including ``state_dir/current/<backend>/<index>``; a new rndc key unless given."""
    from domtool.slave.backends import apache, bind

    files: dict[str, SiteFile] = {}
    if "bind" in backends:
        secret = rndc_secret or base64.b64encode(secrets.token_bytes(32)).decode()
        written = bind.site_config(
            backends["bind"].config,
            f"{state_dir}/current/bind/{bind.INDEX_FILE}",
            directory="/var/cache/bind",
            rndc_secret=secret,
        )
        files |= {path: SiteFile(data, 0o640, "bind") for path, data in written.items()}
    if "apache" in backends:
        written = apache.site_config(
            backends["apache"].config,
            f"{state_dir}/current/apache/{apache.INDEX_FILE}",
            run_dir="/run/apache2",
            user="www-data",
            group="www-data",
        )
        files |= {path: SiteFile(data, 0o640) for path, data in written.items()}
    if "exim" in backends:
        from domtool.slave.backends import exim

        conf = backends["exim"].config
        files[conf.live_config] = SiteFile(exim.site_config(conf), 0o644)
    return files


def write(files: Mapping[str, SiteFile], out=sys.stdout, err=sys.stderr) -> None:
    """Write each file (its directory made), with its mode and group; a group this host
    does not have leaves the file root's, with a line on ``err``."""
    for path, f in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        try:
            os.write(fd, f.data)
            os.fchmod(fd, f.mode)
            if f.group is not None:
                try:
                    os.fchown(fd, 0, grp.getgrnam(f.group).gr_gid)
                except KeyError:
                    print(f"no group {f.group}: {path} stays root-only", file=err)
        finally:
            os.close(fd)
        print("wrote", path, file=out)


def main(argv: list[str] | None = None) -> int:
    """Write the site files and the first (empty) generation of the slave.toml at
    ``argv[0]`` (default /etc/domtool/slave.toml)."""
    from domtool.slave import config, service

    argv = sys.argv[1:] if argv is None else argv
    c = config.load(argv[0] if argv else DEFAULT_CONFIG)
    backends = service.build_backends(c)
    write(site_files(c.state_dir, backends))
    bootstrap_state(Path(c.state_dir), indexes(backends))
    if "exim" in backends:  # the map the vmail operations write, and the maildir root
        exim_conf = backends["exim"].config
        if not os.path.exists(exim_conf.vmail_map):
            Path(exim_conf.vmail_map).write_bytes(b"")
        os.makedirs(exim_conf.vmail_root, mode=0o755, exist_ok=True)
    print("first (empty) generation:", c.state_dir + "/current")
    return 0
