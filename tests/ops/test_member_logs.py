"""Per-member Apache logs with a real apache2 driven by the slave's engine: ONE piped
splitter for the access log and one for the error log (no CustomLog per vhost); each
member's lines land in that member's files, which that member reads with ``domtool logs``
and another member cannot; logrotate (the package's rules) rotates them and the splitter
carries on in new files."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

from domtool.devsite.localdaemons import wait_for
from domtool.model import DesiredState, Vhost
from domtool.slave.backends.apache import ApacheBackend
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.conftest import IN_CI, require_binary
from tests.slave.apache_daemon import ApacheProcess, free_port, get, prepare_site, public_dir

pytestmark = pytest.mark.daemons

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def members():
    """Two real Unix accounts (uid >= 1000, private groups), removed afterwards."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the member-log test needs root (useradd, Apache as root)")
        pytest.skip("needs root")
    tag = secrets.token_hex(3)
    names = [f"dtla{tag}", f"dtlb{tag}"]
    for n in names:
        subprocess.run(["useradd", "--no-create-home", "--user-group", n], check=True)
    yield names
    for n in names:
        subprocess.run(["userdel", n], check=False)


@pytest.fixture
def site(tmp_path, members):
    require_binary("apache2", "logrotate", "setpriv")
    web = public_dir("domtool-logweb-")
    logs = public_dir("domtool-logs-")
    for m in members:
        (web / m).mkdir()
        (web / m / "index.html").write_text(f"{m}\n")
        (web / m / ".htaccess").write_text("")
    for p in web.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    port = free_port()
    state = tmp_path / "state"
    root = tmp_path / "apache"
    settings = dict(
        member_log_dir=str(logs / "members"),
        state_dir=str(state),
        log_splitter=(sys.executable, "-m", "domtool.slave.logsplit"),
    )
    config = prepare_site(root, port, str(state / "current" / "apache" / "sites.conf"), **settings)
    backend = ApacheBackend(config)
    engine = Engine(
        str(state),
        {"apache": backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=10.0,
        probe_interval=0.02,
    )
    proc = ApacheProcess(config, root)
    vhosts = tuple(
        Vhost(
            fqdn=f"www.{m}.example",
            owner=m,
            domain=f"{m}.example",
            nodes=("local",),
            document_root=str(web / m),
            user=m,
            group=m,
            server_admin=f"{m}@{m}.example",
        )
        for m in members
    )
    try:
        assert engine.apply(DesiredState()).status == "applied"
        out = engine.apply(DesiredState(vhosts=vhosts))
        assert out.status == "applied", out.message
        yield attrs.make_class("S", ["port", "logs", "root", "members", "config"])(
            port, logs, root, members, config
        )
    finally:
        proc.stop()
        shutil.rmtree(web)
        shutil.rmtree(logs)


def as_member(member: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={member}", f"--regid={member}", "--init-groups", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env={**os.environ, "HOME": "/"},
    )


def logs(site, member: str, *args: str) -> subprocess.CompletedProcess:
    return as_member(
        member,
        sys.executable,
        "-m",
        "domtool.client.domtool_cli",
        "logs",
        *args,
        "--log-dir",
        str(site.logs / "members"),
    )


def test_each_member_reads_its_own_logs_and_not_anothers(site):
    a, b = site.members
    for m in (a, b):
        assert get(site.port, f"www.{m}.example", f"/page-of-{m}").status == 404
        assert get(site.port, f"www.{m}.example", "/.htaccess").status == 403  # an error line
    assert get(site.port, "nobody.example", "/stray").status == 421
    files = {m: site.logs / "members" / m for m in (a, b)}
    wait_for(
        lambda: all((files[m] / f"www.{m}.example.error.log").exists() for m in (a, b)),
        timeout=10,
        what="the error logs",
    )

    def has(path: Path, text: str) -> bool:
        return path.exists() and text in path.read_text()

    wait_for(
        lambda: all(has(files[m] / f"www.{m}.example.access.log", f"/page-of-{m}") for m in (a, b)),
        timeout=10,
        what="the access lines",
    )
    # One splitter per log for the whole site, not a file per vhost in Apache.
    sites_conf = (Path(site.config.state_dir) / "current" / "apache" / "sites.conf").read_text()
    assert sites_conf.count("CustomLog") == 1 and '"||' in sites_conf
    lines = [ln.split()[0] for ln in sites_conf.splitlines() if ln.strip()]
    assert lines.count("ErrorLog") == 0
    units = list((Path(site.config.state_dir) / "units" / "apache").iterdir())
    assert units and not any("Log " in u.read_text() for u in units)
    base = Path(site.config.base_config).read_text()
    assert [ln for ln in base.splitlines() if ln.startswith("ErrorLog ")] == [
        f"ErrorLog {site.config.piped_log('error')}"
    ]
    for m in (a, b):
        d = files[m]
        uid = int(subprocess.check_output(["id", "-u", m]))
        st = d.stat()
        assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, "0o750")
        for f in d.iterdir():
            assert (f.stat().st_uid, oct(f.stat().st_mode & 0o777)) == (uid, "0o600"), f
    site_log = (Path(site.config.log_dir) / "access.log").read_text()
    assert "/stray" in site_log and "/page-of-" not in site_log

    # a reads a's logs with `domtool logs`, access and error, and --tail.
    r = logs(site, a, f"www.{a}.example")
    assert r.returncode == 0 and f"/page-of-{a}" in r.stdout and f"/page-of-{b}" not in r.stdout
    r = logs(site, a, f"www.{a}.example", "--error")
    assert r.returncode == 0 and "client denied by server configuration" in r.stdout, r.stderr
    r = logs(site, a, f"www.{a}.example", "--tail", "1")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    # ... and not b's: through the command, and straight from the file.
    r = logs(site, a, f"www.{b}.example")
    assert r.returncode == 1 and f"www.{b}.example" in r.stderr and not r.stdout
    r = as_member(a, "cat", str(files[b] / f"www.{b}.example.access.log"))
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = as_member(a, "ls", str(files[b]))
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_the_packaged_logrotate_rules_rotate_and_the_splitter_carries_on(site, tmp_path):
    a = site.members[0]
    log = site.logs / "members" / a / f"www.{a}.example.access.log"
    assert get(site.port, f"www.{a}.example", "/before").status == 404
    wait_for(lambda: log.exists() and "/before" in log.read_text(), what="the first line")
    rules = (ROOT / "debian" / "domtool-slave.logrotate").read_text()
    assert "/var/log/domtool/*/*.log" in rules
    conf = tmp_path / "logrotate.conf"
    conf.write_text(rules.replace("/var/log/domtool", str(site.logs / "members")))
    done = subprocess.run(
        ["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(conf)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists() and "/before" in rotated.read_text()
    time.sleep(1.1)  # the splitter looks for a moved file at most once a second
    assert get(site.port, f"www.{a}.example", "/after").status == 404
    wait_for(lambda: log.exists() and "/after" in log.read_text(), what="the line after rotation")
    assert "/before" not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
