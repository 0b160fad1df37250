"""The dispatcher's and slave's systemd sandboxes, exercised for real without systemd:
each service's main runs under its unit's own restrictions (``sandbox.py``: a private
mount namespace and ``setpriv``, read from the unit file), on a site made by
``domtool-admin init``. The services still work (ping through both, adduser writes the
store and the CA); the running processes carry the restrictions; a probe under the same
restrictions cannot write outside the allowed paths; and removing any one restriction
from a unit makes the probe see the difference, so these tests fail if a unit loses one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI

from . import opsite, sandbox

pytestmark = pytest.mark.daemons

REPO = Path(__file__).resolve().parents[2]
UNITS = {
    "dispatcher": REPO / "debian" / "domtool-dispatcher.service",
    "slave": REPO / "debian" / "domtool-slave.service",
    "renew": REPO / "debian" / "domtool-dispatcher.domtool-renew.service",
}
CAP_DAC_READ_SEARCH = 1 << 2

# The restrictions each unit must keep (the static half of "a test fails if one is removed").
REQUIRED = {
    "dispatcher": {
        "User": "domtool",
        "Group": "domtool",
        "StateDirectory": "domtool",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service",
        "UMask": "0027",
    },
    "slave": {
        "StateDirectory": "domtool-slave",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "CAP_DAC_READ_SEARCH",
        "AmbientCapabilities": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service",
    },
    "renew": {
        "User": "domtool",
        "StateDirectory": "domtool",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateNetwork": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
    },
}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_unit_keeps_every_restriction(unit):
    section = sandbox.service_section(UNITS[unit])
    for key, want in REQUIRED[unit].items():
        assert section.get(key, [None])[-1] == want, f"{unit}: {key}= must be {want!r}"
    assert "ReadWritePaths" not in section  # StateDirectory is the only writable path


PROBE = r"""
import json, os, sys
paths = json.loads(sys.argv[1])
writes = {}
for p in paths:
    try:
        with open(p, "w") as f:
            f.write("x")
        writes[p] = "ok"
        os.unlink(p)
    except OSError as e:
        writes[p] = e.strerror
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print(json.dumps({
    "writes": writes,
    "nnp": status["NoNewPrivs"].strip(),
    "capbnd": int(status["CapBnd"], 16),
    "capeff": int(status["CapEff"], 16),
    "uid": int(status["Uid"].split()[1]),
    "tmp_marker": os.path.exists(sys.argv[2]),
    "home_marker": os.path.exists(sys.argv[3]),
    "devices": sorted(os.listdir("/dev")),
}))
"""


@pytest.fixture(scope="module")
def world():
    """A root-owned directory outside /tmp (PrivateTmp hides /tmp), a service user standing
    in for ``domtool``, and what the probes check."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        if IN_CI:
            pytest.fail("the sandbox tests need root, unshare and setpriv")
        pytest.skip("needs root, unshare and setpriv")
    root = Path(tempfile.mkdtemp(prefix="domtool-sandbox-", dir="/var/lib"))
    root.chmod(0o755)
    user = f"dtsbx{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", user], check=True)
    marker = Path(tempfile.mkstemp(prefix="domtool-sandbox-marker-", dir="/tmp")[1])
    os.makedirs("/home", exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="domtool-sandbox-", dir="/home"))
    home.chmod(0o755)
    (home / "member-file").write_text("a member's file\n")
    (home / "member-file").chmod(0o644)
    owned = root / "owned"
    owned.mkdir()
    subprocess.run(["chown", f"{user}:{user}", str(owned)], check=True)
    keep = tuple(sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, REPO)}))
    try:
        yield {
            "root": root,
            "user": user,
            "marker": marker,
            "keep": keep,
            "owned": owned,
            "home": home,
        }
    finally:
        shutil.rmtree(home)
        marker.unlink()
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(root)


def _spec(world, unit: str | dict, state: Path, stage: str) -> dict:
    d = world["root"] / stage
    d.mkdir(exist_ok=True)
    paths = {"/var/lib/domtool": str(state), "/var/lib/domtool-slave": str(state)}
    users = {"domtool": world["user"]}
    return sandbox.spec(unit, paths, users, world["keep"], stage=str(d))


def probe(world, spec: dict, state: Path) -> dict:
    outside = [
        "/etc/domtool-sandbox-probe",
        "/usr/domtool-sandbox-probe",
        str(world["root"] / "outside"),  # the test's own directory, not the service's
        str(world["owned"] / "probe"),  # the service user's own directory, elsewhere
        str(REPO / "domtool-sandbox-probe"),
        "/var/lib/domtool-sandbox-probe",
    ]
    r = subprocess.run(
        [
            *sandbox.prefix(spec),
            sys.executable,
            "-c",
            PROBE,
            json.dumps([*outside, str(state / "inside")]),
            str(world["marker"]),
            str(world["home"] / "member-file"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    report["outside"] = outside
    report["inside"] = str(state / "inside")
    return report


def violations(kind: str, r: dict, uid: int) -> list[str]:
    """What in a probe's report breaks the unit's sandbox (empty: nothing)."""
    bad = [f"wrote {p}" for p in r["outside"] if r["writes"][p] == "ok"]
    if r["writes"][r["inside"]] != "ok":
        bad.append(f"cannot write its state dir: {r['writes'][r['inside']]}")
    if r["nnp"] != "1":
        bad.append("no NoNewPrivileges")
    want_caps = 0 if kind == "dispatcher" else CAP_DAC_READ_SEARCH
    if r["capbnd"] != want_caps or r["capeff"] & ~want_caps:
        bad.append(f"capabilities {r['capbnd']:#x}/{r['capeff']:#x}, want {want_caps:#x}")
    if r["uid"] != uid:
        bad.append(f"runs as uid {r['uid']}, not {uid}")
    if r["tmp_marker"]:
        bad.append("sees the host's /tmp")
    if kind == "dispatcher" and r["home_marker"]:
        bad.append("sees /home")
    if kind == "slave" and not r["home_marker"]:
        bad.append("cannot read /home (ProtectHome=read-only: member paths are checked there)")
    if set(r["devices"]) - set(sandbox.DEVICES) - {"shm"}:
        bad.append("sees the host's devices")
    return bad


def _prepare(world, name: str) -> opsite.OpSite:
    site = opsite.make(world["root"] / name)
    subprocess.run(["chown", "-R", f"{world['user']}:{world['user']}", str(site.state)], check=True)
    return site


@pytest.mark.slow
def test_the_services_work_under_their_units_sandboxes_and_cannot_write_elsewhere(world):
    site = _prepare(world, "site")
    uid = int(subprocess.check_output(["id", "-u", world["user"]]))
    dspec = _spec(world, UNITS["dispatcher"], site.state, "stage-d")
    sspec = _spec(world, UNITS["slave"], site.slave_state, "stage-s")
    site.start(wrap_dispatcher=sandbox.prefix(dspec), wrap_slave=sandbox.prefix(sspec))
    try:
        # The services work: the dispatcher reaches the slave, adduser writes the store
        # and the CA in the dispatcher's state dir (as the service user).
        code, out = site.admin("ping")
        assert code == 0 and "ns1: up" in out, out + site.logs()
        code, out = site.admin("adduser", "alice", "--out", str(site.root / "alice"))
        assert code == 0, out + site.logs()
        index = json.loads((site.ca_dir / "member" / "index.json").read_text())
        assert [e["name"] for e in index["issued"]] == ["admin", "alice"]
        assert (site.state / "domtool.sqlite3").stat().st_uid == uid
        # The running processes carry the restrictions, in mount namespaces of their own.
        own_ns = os.readlink("/proc/self/ns/mnt")
        for d, want_uid, caps, writable in (
            (site.daemons[1], uid, 0, site.state),
            (site.daemons[0], 0, CAP_DAC_READ_SEARCH, site.slave_state),
        ):
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{d.pid}/status").read_text().splitlines()
            )
            assert status["NoNewPrivs"].strip() == "1", d.name
            assert int(status["CapBnd"], 16) == caps and int(status["CapEff"], 16) & ~caps == 0
            assert int(status["Uid"].split()[1]) == want_uid, d.name
            assert os.readlink(f"/proc/{d.pid}/ns/mnt") != own_ns
            mounts = {
                line.split()[4]: line.split()[5]
                for line in Path(f"/proc/{d.pid}/mountinfo").read_text().splitlines()
            }
            assert mounts["/"].startswith("ro"), (d.name, mounts["/"])
            assert mounts[str(writable)].startswith("rw"), d.name
            assert mounts["/tmp"].startswith("rw") and "/tmp" in mounts
        # A probe under each unit's very restrictions: writes outside fail, inside work.
        for kind, spec, state, want_uid in (
            ("dispatcher", dspec, site.state, uid),
            ("slave", sspec, site.slave_state, 0),
        ):
            report = probe(world, spec, state)
            assert violations(kind, report, want_uid) == [], (kind, report)
            for p in report["outside"]:
                assert report["writes"][p] in ("Read-only file system", "Permission denied"), p
        # Still working after all that.
        assert site.admin("ping")[0] == 0
        assert all(d.alive() for d in site.daemons)
    finally:
        site.stop()


DROPPED = {
    "dispatcher": [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "User",
        "StateDirectory",
    ],
    "slave": [
        "ProtectSystem",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "StateDirectory",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(DROPPED))
def test_removing_any_restriction_from_a_unit_is_seen(world, kind):
    state = world["root"] / f"state-{kind}"
    state.mkdir(exist_ok=True)
    uid = 0
    if kind == "dispatcher":
        subprocess.run(["chown", world["user"], str(state)], check=True)
        uid = int(subprocess.check_output(["id", "-u", world["user"]]))
    section = sandbox.service_section(UNITS[kind])
    full = probe(world, _spec(world, section, state, f"stage-{kind}"), state)
    assert violations(kind, full, uid) == [], full
    for key in DROPPED[kind]:
        weaker = {k: v for k, v in section.items() if k != key}
        report = probe(world, _spec(world, weaker, state, f"stage-{kind}"), state)
        assert violations(kind, report, uid), f"{kind} without {key}= looks just as safe"


@pytest.mark.slow
def test_the_sandboxed_slave_checks_and_reloads_a_real_apache(world):
    """The slave under its unit's sandbox drives a real apache2 (running outside it, as in
    its own unit): a member's submit through the sandboxed dispatcher is checked with
    ``apache2 -t``, written to the slave's state dir, reloaded with ``apache2 -k graceful``
    and probed; the member's page is served. The capability set is enough for that."""
    from domtool.slave.sitefiles import bootstrap_state
    from tests.conftest import require_binary
    from tests.slave.apache_daemon import ApacheProcess, free_port, get, prepare_site

    require_binary("apache2")
    root = world["root"] / "web"
    port = free_port()
    slave_state = root / "slave"
    bootstrap_state(slave_state, {"apache": "sites.conf"})
    config = prepare_site(
        root / "apache", port, str(slave_state / "current" / "apache" / "sites.conf")
    )
    apache = ApacheProcess(config, root / "apache")
    done = apache._ctl("start")
    assert done.returncode == 0, done.stderr
    www = world["home"] / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("alice in a sandbox\n")
    for p in (www, www / "index.html"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    backend = f"""
[backends.apache]
base_config = "{config.base_config}"
live_config = "{config.live_config}"
server_root = "{config.server_root}"
log_dir = "{config.log_dir}"
address = "127.0.0.1"
port = {port}
binary = "{config.binary}"
"""
    site = opsite.make(root / "site", roles=("dns", "web"), slave_extra=backend)
    (site.root / "slave.toml").write_text(
        (site.root / "slave.toml").read_text().replace(str(site.slave_state), str(slave_state))
    )
    shutil.copytree(site.slave_state / "tls", slave_state / "tls")
    site.slave_state = slave_state
    subprocess.run(["chown", "-R", f"{world['user']}:{world['user']}", str(site.state)], check=True)
    dspec = _spec(world, UNITS["dispatcher"], site.state, "stage-wd")
    sspec = _spec(world, UNITS["slave"], slave_state, "stage-ws")
    try:
        site.start(wrap_dispatcher=sandbox.prefix(dspec), wrap_slave=sandbox.prefix(sspec))
        assert site.admin("adduser", "alice", "--out", str(site.root / "alice"))[0] == 0
        for cls, value in (("domain", "example.org"), ("path", str(world["home"]))):
            code, out = site.admin("grant", "alice", cls, value)
            assert code == 0, out
        for cls in ("user", "group"):
            assert site.admin("grant", "alice", cls, "alice")[0] == 0
        src = site.root / "example.org"
        src.write_text(
            f'domain "example.org" with\n  web "www" where\n    DocumentRoot = "{www}"\n'
            "  with\n  end;\nend;\n"
        )
        code, out = opsite.run_cli(
            "domtool", str(src), config=str(site.root / "alice" / "client.toml")
        )
        assert code == 0, out + site.logs()
        r = get(port, "www.example.org")
        assert (r.status, r.body) == (200, b"alice in a sandbox\n"), r
        assert all(d.alive() for d in site.daemons)
    finally:
        site.stop()
        apache.stop()


@pytest.mark.slow
def test_the_renewal_job_runs_under_its_units_sandbox(world):
    """``domtool-renew.service``'s job (``ca renew --force`` here) under that unit's
    restrictions, network included: it renews the CRLs and host certificates in the state
    directory, and its sandbox keeps it from anything else."""
    site = _prepare(world, "renew")
    spec = _spec(world, UNITS["renew"], site.state, "stage-r")
    assert spec["private_network"] and spec["user"] == world["user"]
    before = (site.state / "tls" / "dispatcher.pem").read_bytes()
    crl_before = (site.ca_dir / "host" / "crl.pem").read_bytes()
    r = subprocess.run(
        [
            *sandbox.prefix(spec),
            sys.executable,
            "-m",
            "domtool.client.admin_cli",
            "ca",
            "renew",
            str(site.ca_dir),
            "--state",
            str(site.state),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert r.returncode == 0, r.stderr
    assert "re-signed the host CRL" in r.stdout and "reissued the host certificate" in r.stdout
    assert (site.state / "tls" / "dispatcher.pem").read_bytes() != before
    assert (site.ca_dir / "host" / "crl.pem").read_bytes() != crl_before
    uid = int(subprocess.check_output(["id", "-u", world["user"]]))
    assert (site.state / "tls" / "dispatcher.key").stat().st_uid == uid
    report = probe(world, spec, site.state)
    assert violations("dispatcher", report, uid) == [], report
    # A listener here on the host's loopback: reachable from the host, not from the job.
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = str(server.getsockname()[1])
        seen = {}
        for name, prefix in (("host", []), ("sandbox", sandbox.prefix(spec))):
            r = subprocess.run(
                [*prefix, sys.executable, "-c", NET_PROBE, port],
                capture_output=True,
                text=True,
                timeout=60,
            )
            seen[name] = r.stdout.strip() or r.stderr
    assert seen == {"host": "connected", "sandbox": "errno 101"}, seen


NET_PROBE = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    print("connected")
except OSError as e:
    print(f"errno {e.errno}")
"""
