"""Limits end to end with real processes: the dispatcher and a slave (with the limits
backend on this machine's cgroup v1) over TLS; the admin sets limits with
``domtool-admin limits``, the slave enforces them in the kernel, and ``domtool limits``,
``domtool-admin limits list`` and ``domtool usage`` show what the host enforces. A bad
value changes nothing, on the dispatcher or in the kernel.

Built like ``test_multihost.py`` (``quickstart.LocalSite`` for the CAs, operator and
alice's client files). alice's Unix user is made by the test; the cgroups get a prefix
of their own. Everything is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from domtool.client import admin_cli, domtool_cli
from domtool.client import config as client_config
from domtool.client.connection import call
from domtool.devsite import localdaemons as L
from domtool.devsite import quickstart as Q
from tests.slave.member_users import limits_site, member_user

pytestmark = [pytest.mark.daemons, pytest.mark.slow]

ADDR = "127.0.0.4"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    Q._write(path, data, mode)


@pytest.fixture
def site(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from domtool.dispatcher import ca

    top = Path(tempfile.mkdtemp(prefix="domtool-limits-e2e-"))
    root = top / "site"
    local = Q.LocalSite(root, Q.Progress(0, quiet=True))
    with limits_site(tmp_path) as (config, conf_path), member_user() as pw:
        try:
            local.prepare_dir()
            local.build_pki()
            d = root / "slave-web"
            cert, key = ca.issue_host(local.ca_dir, "web.coop.example")
            _write(d / "host.pem", cert)
            _write(d / "host.key", key, 0o600)
            _write(d / "host-ca.pem", ca.ca_certificate(local.ca_dir, ca.HOST))
            _write(d / "host-crl.pem", ca.current_crl(local.ca_dir, ca.HOST))
            node = Q.NodeSpec("web", ("web",), "web.coop.example", ADDR, L.free_port(address=ADDR))
            text = Q.slave_toml("web.coop.example", "web", node.port, address=ADDR)
            text += f'\n[backends.limits]\nenforce_config = "{conf_path}"\n'
            _write(d / "slave.toml", text.encode())
            argv = Q.console_script("domtool-slave", "domtool.slave.service")
            slave = L.spawn(
                "domtool-slave", argv + ["--config", str(d / "slave.toml")], d / "slave.log", cwd=d
            )
            local.daemons.append(slave)
            slave.wait_ready(lambda: L.connects(node.port, ADDR), what="the slave listening")
            dd = root / "dispatcher"
            _write(
                dd / "dispatcher.toml",
                Q.dispatcher_toml(local.ports["dispatcher"], [node]).encode(),
            )
            Q.add_admin(dd / "state", local.admin_serial)
            argv = Q.console_script("domtool-dispatcher", "domtool.dispatcher.service")
            disp = L.spawn(
                "domtool-dispatcher",
                argv + ["--config", str(dd / "dispatcher.toml")],
                dd / "dispatcher.log",
                cwd=dd,
            )
            local.daemons.append(disp)
            local._wait_listening(disp, local.ports["dispatcher"])
            admin = client_config.load(local.admin_config)
            added = call(admin, "adduser", {"user": "alice"})
            local.member_config = local._member_files(
                "alice", added["cert_pem"].encode(), added["key_pem"].encode()
            )
            call(admin, "grant", {"user": "alice", "class": "user", "value": pw.pw_name})
            yield config, str(local.admin_config), str(local.member_config), pw, d / "slave.log"
        finally:
            for p in local.daemons:
                if p.alive():
                    os.kill(p.pid, signal.SIGCONT)
            local.stop()
            shutil.rmtree(top, ignore_errors=True)


def test_admin_sets_host_enforces_member_sees(site, capsys):
    config, admin, alice, pw, log = site
    pids_max = Path(config.cgroup_root, "pids", config.prefix, "alice", "pids.max")
    assert admin_cli.main(["limits", "set", "--site", "memory=1G", "--config", admin]) == 0
    assert (
        admin_cli.main(["limits", "set", "alice", "processes=40", "memory=128M", "--config", admin])
        == 0
    ), capsys.readouterr()
    capsys.readouterr()
    # The host enforces it: the kernel's own files.
    assert pids_max.read_text().strip() == "40", log.read_text()[-3000:]
    mem = Path(config.cgroup_root, "memory", config.prefix, "alice", "memory.limit_in_bytes")
    assert mem.read_text().strip() == str(128 * 1024**2)
    assert f"{pw.pw_name} hard nproc 40" in Path(config.limits_d, "domtool-alice.conf").read_text()
    report = json.loads(Path(config.report).read_text())
    assert report["mechanism"] == "cgroup-v1"
    assert report["members"]["alice"]["kernel"]["pids.max"] == "40"
    # The member and the admin see the same.
    assert domtool_cli.main(["limits", "--config", alice]) == 0
    out = capsys.readouterr().out
    assert (
        "processes 40 (set for this member)" in out and "memory 128M (set for this member)" in out
    )
    assert "on web: as above" in out
    assert admin_cli.main(["limits", "list", "alice", "--config", admin]) == 0
    shown = capsys.readouterr().out
    assert "processes 40 (set for this member)" in shown and "on web: as above" in shown
    assert domtool_cli.main(["usage", "--config", alice]) == 0
    out = capsys.readouterr().out
    assert "on web (limits enforced by: cgroup-v1):" in out and "0 in the cgroup" in out
    # Bad input: a clear error, nothing changes (store, host, kernel).
    assert admin_cli.main(["limits", "set", "alice", "processes=2", "--config", admin]) == 1
    assert "below what the site allows" in capsys.readouterr().err
    assert pids_max.read_text().strip() == "40"
    assert domtool_cli.main(["limits", "--config", alice]) == 0
    assert "processes 40" in capsys.readouterr().out
