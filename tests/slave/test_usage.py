"""Per-member usage from the slave's ``usage`` op, against what the system itself reports.

A real agent over the real engine with the limits backend makes the member's cgroup from
its policy; a process of the member's user holds memory inside it; the member's vhost
tree has files, a hard link and a symlink; its split access log has requests. The op's
figures are compared with the cgroup's own files, ``ps``, ``du -scxB1`` and the log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from domtool import model
from domtool.model import DesiredState, Limits, MemberPolicy, Vhost
from domtool.policies.limits import M
from domtool.slave import ops
from domtool.slave.agent import Agent
from domtool.slave.backends.limits import LimitsBackend, LimitsConfig
from domtool.slave.engine import Engine
from domtool.slave.limits_enforce import member_cgroups
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.usage import outbound_usage
from tests.slave.apache_daemon import public_dir
from tests.slave.member_users import limits_site, member_user, run_as_member

pytestmark = pytest.mark.daemons

LOG_LINES = [
    'www.{m}.example 127.0.0.1 - - [03/Dec/2026:13:00:00 +0000] "GET / HTTP/1.1" 200 1234 "-" "curl/8"',
    'www.{m}.example 127.0.0.1 - - [03/Dec/2026:13:00:01 +0000] "GET /a\\"b HTTP/1.1" 404 321 "-" "x"',
    'www.{m}.example 127.0.0.1 - - [03/Dec/2026:13:00:02 +0000] "HEAD / HTTP/1.1" 304 - "-" "x"',
]

HOLD = """
import time
block = bytearray(48 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
print("ready", flush=True)
time.sleep(60)
"""


def run(agent: Agent, op: str, args):
    results: list = []
    agent.handle(op, args).addBoth(results.append)
    assert len(results) == 1
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def read(path: str) -> int:
    return int(Path(path).read_text().strip())


@pytest.fixture
def tree():
    root = public_dir("domtool-usage-")
    yield root
    shutil.rmtree(root)


def test_usage_figures_match_the_system(tmp_path, tree):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with limits_site(tmp_path) as (config, conf_path), member_user() as pw:
        m = pw.pw_name
        www = tree / m / "www"
        (www / "sub").mkdir(parents=True)
        (www / "index.html").write_text("x" * 10_000)
        (www / "sub" / "big.bin").write_bytes(os.urandom(300_000))
        os.link(www / "sub" / "big.bin", www / "hard.bin")  # counted once
        (www / "etc").symlink_to("/etc")  # not followed
        logs = tmp_path / "member-logs"
        (logs / m).mkdir(parents=True)
        (logs / m / f"www.{m}.example.access.log").write_text(
            "\n".join(line.format(m=m) for line in LOG_LINES) + "\n"
        )
        state_dir = tmp_path / "state"
        backend = LimitsBackend(
            LimitsConfig(
                conf_path,
                str(state_dir / "current" / "limits" / "limits.json"),
                member_log_dir=str(logs),
            )
        )
        engine = Engine(
            str(state_dir),
            {"limits": backend},
            RealFileSystem(),
            SubprocessRunner(),
            RealClock(),
            RealProber(),
        )
        from twisted.internet.task import Clock

        agent = Agent(
            engine,
            host="web1",
            state_dir=str(state_dir),
            clock=Clock(),
            actions=backend.actions(),
        )
        run(agent, "status", ops.StatusArgs())
        lim = Limits(
            processes=50, memory=256 * M, cpu_weight=100, cgi_cpu=5, cgi_wall=9, disk=1024 * M
        )
        vhost = Vhost(
            fqdn=f"www.{m}.example",
            owner=m,
            domain=f"{m}.example",
            nodes=("web1",),
            document_root=str(www),
            user=m,
            group=m,
            server_admin=f"web@{m}.example",
        )
        state = DesiredState(
            vhosts=(vhost,), policies=(MemberPolicy(m, ("web1",), (m,), limits=lim),)
        )
        grants = ops.Grants(paths=(str(tree / m),), users=(m,), groups=(m,))
        answer = run(
            agent,
            "prepare",
            ops.PrepareArgs(
                "t1", {m: ops.OwnerChange(model.from_json(model.to_json(state)), grants)}
            ),
        )
        assert answer["owners"][m]["ok"], answer
        run(agent, "commit", ops.TxArgs("t1"))
        cg = member_cgroups(config, "cgroup-v1", m)
        holder = run_as_member(config, pw, HOLD)
        try:
            assert holder.stdout.readline().strip() == "ready"
            before = read(cg["memory"] + "/memory.usage_in_bytes")
            result = run(agent, "usage", ops.UsageArgs(m))
            after = read(cg["memory"] + "/memory.usage_in_bytes")
            pids_now = read(cg["pids"] + "/pids.current")
            ps = subprocess.run(
                ["ps", "-u", str(pw.pw_uid), "-o", "rss="], capture_output=True, text=True
            ).stdout.split()
        finally:
            holder.kill()
            holder.communicate(timeout=10)
        u = result["members"][m]
        assert result["host"] == "web1" and u["mechanism"] == "cgroup-v1"
        # processes and memory: the cgroup's own counters, and ps for the member's uid
        assert u["cgroup"]["processes"] == pids_now == 1
        assert min(before, after) <= u["cgroup"]["memory_bytes"] <= max(before, after)
        assert u["cgroup"]["memory_bytes"] >= 48 * M
        assert u["proc"]["processes"] == len(ps) == 1
        assert abs(u["proc"]["rss_bytes"] - int(ps[0]) * 1024) <= 1 * M
        # disk: exactly what du reports (hard link once, symlink not followed)
        du = (
            subprocess.run(["du", "-scxB1", str(www)], capture_output=True, text=True, check=True)
            .stdout.split("\n")[-2]
            .split()[0]
        )
        assert u["disk"]["bytes"] == int(du)
        assert u["disk"]["paths"] == [str(www)]
        assert "no quotas" in next(iter(u["disk"]["quota"].values()))["why"]
        # web: the member's split access log
        assert u["web"]["requests"] == 3 and u["web"]["bytes"] == 1234 + 321
        # outbound: the network policy's counters, or "not collected" with why
        assert u["outbound"] == outbound_usage(m) and (
            u["outbound"].get("collected") is False or "bytes" in u["outbound"]
        )


def test_outbound_reads_given_counters():
    got = outbound_usage("alice", {"alice": {"bytes": 10, "packets": 1}})
    assert got["bytes"] == 10
    assert outbound_usage("bob", {"alice": {}})["collected"] is False


def test_usage_without_a_limits_backend_still_answers():
    """Without the limits backend: /proc and the disk walk only, the rest marked."""
    from domtool.slave.usage import collect

    state = DesiredState()
    got = collect(state, "nobody-here")
    assert got["cgroup"]["collected"] is False and got["proc"]["processes"] == 0
    assert got["disk"]["bytes"] == 0 and got["web"]["collected"] is False
