"""The default configuration files the Debian packages install in /etc/domtool parse with
the real loaders, and name the paths the systemd units and docs/deploy.md rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from domtool.dispatcher import config as dispatcher_config
from domtool.slave import config as slave_config
from domtool.slave import service as slave_service

DEBIAN = Path(__file__).resolve().parents[2] / "debian"


def test_dispatcher_toml_parses_with_state_and_ca_in_the_state_directory():
    c = dispatcher_config.load(DEBIAN / "conf" / "dispatcher.toml")
    assert c.state_dir == "/var/lib/domtool"
    # adduser/rmuser write the CA: it must lie in the unit's only writable directory.
    assert c.ca_dir.startswith("/var/lib/domtool/")
    for path in (c.member_ca, c.member_crl, c.host_ca, c.host_crl):
        assert path.startswith(c.ca_dir + "/")
    # Where `domtool-admin init` writes them and the renewal timer (as domtool) renews them.
    assert c.certificate == "/var/lib/domtool/tls/dispatcher.pem"
    assert c.key == "/var/lib/domtool/tls/dispatcher.key"
    # No capability is granted to the unit: the port must not be privileged.
    assert c.listen_port >= 1024
    assert [s.port for s in c.slaves] == [1235]


def test_slave_toml_parses_and_its_backends_build():
    c = slave_config.load(DEBIAN / "conf" / "slave.toml")
    assert c.state_dir == "/var/lib/domtool-slave"
    # What the dispatcher renews (tls_update) is in the state dir, the unit's only
    # writable path; the trust anchor is not.
    for path in (c.certificate, c.key, c.crl):
        assert path.startswith("/var/lib/domtool-slave/tls/")
    assert c.ca.startswith("/etc/domtool/tls/")
    assert c.listen_port >= 1024
    backends = slave_service.build_backends(c)
    assert sorted(backends) == ["apache", "bind"]
    # Members' logs through the splitter, whose manifest is the slave's state dir's.
    apache = backends["apache"].config
    assert apache.member_log_dir == "/var/log/domtool" and apache.state_dir == c.state_dir
    assert "domtool.slave.logsplit access --state /var/lib/domtool-slave" in apache.piped_log(
        "access"
    )
    assert "var/log/domtool" in (DEBIAN / "domtool-slave.dirs").read_text().split()
    assert "/var/log/domtool/*/*.log {" in (DEBIAN / "domtool-slave.logrotate").read_text()


def test_units_run_the_installed_commands_on_the_default_configs():
    units = {
        "domtool-dispatcher": "/etc/domtool/dispatcher.toml",
        "domtool-slave": "/etc/domtool/slave.toml",
    }
    for name, conf in units.items():
        text = (DEBIAN / f"{name}.service").read_text()
        assert f"ExecStart=/usr/bin/{name} --config {conf}" in text
        assert f"ConditionPathExists={conf}" in text
    dispatcher = (DEBIAN / "domtool-dispatcher.service").read_text()
    assert "User=domtool" in dispatcher
    assert "StateDirectory=domtool\n" in dispatcher
    slave = (DEBIAN / "domtool-slave.service").read_text()
    assert "StateDirectory=domtool-slave\n" in slave
    assert "ProtectHome=read-only" in slave


def test_default_configs_are_installed_in_etc_domtool():
    assert (DEBIAN / "domtool-dispatcher.install").read_text().split() == [
        "debian/conf/dispatcher.toml",
        "etc/domtool/",
    ]
    assert (DEBIAN / "domtool-slave.install").read_text().split()[:2] == [
        "debian/conf/slave.toml",
        "etc/domtool/",
    ]


def test_slave_site_files_writes_what_the_default_slave_toml_names(tmp_path):
    """debian/slave-site-files.py (installed in /usr/share/domtool-slave) on the default
    slave.toml with its /etc/domtool and state paths moved under tmp_path."""
    text = (DEBIAN / "conf" / "slave.toml").read_text()
    text = text.replace("/etc/domtool/", f"{tmp_path}/etc/")
    text = text.replace("/var/lib/domtool-slave", f"{tmp_path}/state")
    conf = tmp_path / "slave.toml"
    conf.write_text(text)
    run = subprocess.run(
        [sys.executable, str(DEBIAN / "slave-site-files.py"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for name in ("bind/base.conf", "bind/named.conf", "bind/rndc.conf", "apache/apache2.conf"):
        assert (tmp_path / "etc" / name).stat().st_mode & 0o777 == 0o640
    named = (tmp_path / "etc" / "bind" / "named.conf").read_text()
    assert f'include "{tmp_path}/state/current/bind/zones.conf";' in named
    assert (tmp_path / "state" / "current" / "bind" / "zones.conf").exists()
    assert (tmp_path / "state" / "current" / "apache" / "sites.conf").exists()


def test_slave_site_files_writes_exims_config_and_first_generation(tmp_path):
    """With a ``[backends.exim]`` table, the script also writes Exim's site config (0644),
    both empty Exim indexes of the first generation, the empty vmail map and the maildir
    root; ``exim -bV`` accepts the config when Exim is installed."""
    text = (DEBIAN / "conf" / "slave.toml").read_text()
    text = text.replace("/etc/domtool/", f"{tmp_path}/etc/")
    text = text.replace("/var/lib/domtool-slave", f"{tmp_path}/state")
    text += (
        "\n[backends.exim]\n"
        f'live_config = "{tmp_path}/etc/exim4/exim4.conf"\n'
        f'spool_dir = "{tmp_path}/spool"\n'
        f'log_dir = "{tmp_path}/log"\n'
        f'pid_file = "{tmp_path}/run/exim.pid"\n'
        f'vmail_map = "{tmp_path}/state/vmail.map"\n'
        f'vmail_root = "{tmp_path}/vmail"\n'
    )
    conf = tmp_path / "slave.toml"
    conf.write_text(text)
    run = subprocess.run(
        [sys.executable, str(DEBIAN / "slave-site-files.py"), str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    live = tmp_path / "etc" / "exim4" / "exim4.conf"
    assert live.stat().st_mode & 0o777 == 0o644
    assert f"GEN = {tmp_path}/state/current" in live.read_text()
    for index in ("domains", "lists"):
        assert (tmp_path / "state" / "current" / "exim" / index).read_bytes() == b""
    assert (tmp_path / "state" / "vmail.map").exists() and (tmp_path / "vmail").is_dir()
    if os.path.exists("/usr/sbin/exim4"):
        (tmp_path / "spool").mkdir()
        (tmp_path / "log").mkdir()
        done = subprocess.run(
            ["/usr/sbin/exim4", "-C", str(live), "-bV"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
