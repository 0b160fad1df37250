#!/usr/bin/python3
"""Write the daemons' site files named by a slave.toml (default /etc/domtool/slave.toml):
BIND base.conf, named.conf and rndc.conf (a new rndc key), Apache base.conf and
apache2.conf, and Exim's /etc/exim4/exim4.conf (0644), for the backends it enables; and an empty first generation in its state_dir
so named and Apache can start before the first apply. Run once as root on a slave host
(docs/deploy.md); it overwrites those files. BIND's files are root:bind 0640 (they hold the
rndc key), Apache's root 0640."""

import base64
import grp
import os
import secrets
import sys
from pathlib import Path

from domtool.client.localdaemons import bootstrap_state
from domtool.slave import config, service
from domtool.slave.backends import apache, bind

c = config.load(sys.argv[1] if len(sys.argv) > 1 else "/etc/domtool/slave.toml")
backends = service.build_backends(c)
files: dict[str, tuple[bytes, str | None]] = {}
indexes = {}
if "bind" in backends:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    written = bind.site_config(
        backends["bind"].config,
        c.state_dir + "/current/bind/zones.conf",
        directory="/var/cache/bind",
        rndc_secret=secret,
    )
    files |= {path: (data, "bind") for path, data in written.items()}
    indexes["bind"] = "zones.conf"
if "apache" in backends:
    written = apache.site_config(
        backends["apache"].config,
        c.state_dir + "/current/apache/sites.conf",
        run_dir="/run/apache2",
        user="www-data",
        group="www-data",
    )
    files |= {path: (data, None) for path, data in written.items()}
    indexes["apache"] = "sites.conf"
exim_conf = None
if "exim" in backends:  # Exim reads /etc/exim4/exim4.conf (see docs/deploy.md): 0644
    from domtool.slave.backends import exim

    exim_conf = backends["exim"].config
    files[exim_conf.live_config] = (exim.site_config(exim_conf), None)
    indexes["exim"] = "domains"
for path, (data, group) in files.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.write(fd, data)
    os.fchmod(fd, 0o644 if exim_conf is not None and path == exim_conf.live_config else 0o640)
    if group is not None:
        try:
            os.fchown(fd, 0, grp.getgrnam(group).gr_gid)
        except KeyError:
            print(f"no group {group}: {path} stays root-only", file=sys.stderr)
    os.close(fd)
    print("wrote", path)
bootstrap_state(Path(c.state_dir), indexes)
if exim_conf is not None:  # Exim's second index, and the map the vmail operations write
    lists = Path(c.state_dir) / "bootstrap" / "exim" / "lists"
    if not lists.exists():
        lists.write_bytes(b"")
    if not os.path.exists(exim_conf.vmail_map):
        Path(exim_conf.vmail_map).write_bytes(b"")
    os.makedirs(exim_conf.vmail_root, mode=0o755, exist_ok=True)
print("first (empty) generation:", c.state_dir + "/current")
