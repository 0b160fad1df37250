"""Outbound usage from the network policy's nftables counters, on the real kernel.

In a network namespace this test makes, the nft backend (the network helper's, through the
real engine) loads a member's policy (``client udp 9999``); the member's Unix user sends
UDP datagrams of 1,000 bytes to 127.0.0.1; the slave's usage collector
(``domtool.slave.usage``) reports the member's outbound packets and bytes, which must
equal the counter as ``nft`` lists it and the datagrams the program sent (1,028 bytes
each on the wire: 20 IP + 8 UDP header). Namespace and user are removed afterwards.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from domtool.model import DesiredState, Firewall, FirewallRule, MemberPolicy
from domtool.slave.backends import nft
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.usage import collect
from tests.conftest import require_binary
from tests.slave.member_users import member_user
from tests.slave.test_nft_netns import CLONE_NEWNET, _setns, as_user, sh

pytestmark = pytest.mark.daemons


@pytest.fixture
def netns():
    require_binary("nft", "ip", "setpriv")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"dtu{os.getpid() % 100000}"
    sh("ip", "netns", "add", name)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        _setns(f"/run/netns/{name}")
        yield name
    finally:
        ctypes.CDLL(None, use_errno=True).setns(orig, CLONE_NEWNET)
        os.close(orig)
        sh("ip", "netns", "del", name, check=False)


def test_outbound_bytes_match_the_nft_counter_and_what_was_sent(netns, tmp_path):
    with member_user() as pw:
        m = pw.pw_name
        state_dir = tmp_path / "state"
        engine = Engine(
            str(state_dir),
            {
                "nft": nft.NftBackend(
                    nft.NftConfig(state_dir=str(state_dir), nft=shutil.which("nft"))
                )
            },
            RealFileSystem(),
            SubprocessRunner(),
            RealClock(),
            RealProber(),
            probe_timeout=5.0,
        )
        rule = FirewallRule(m, "client", "udp", ((9999, 9999),))
        policy = MemberPolicy(m, ("h1",), (m,), firewall=Firewall(rules=(rule,)))
        assert engine.apply(DesiredState(policies=(policy,))).status == "applied"
        done = subprocess.run(
            as_user(m, "blast", "127.0.0.1", "9999", "0.5"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        sent = int(done.stdout.strip())
        assert sent > 0 and sent % 1000 == 0
        datagrams = sent // 1000
        listed = sh("nft", "list", "counter", "inet", nft.TABLE, f"out_{m}").stdout
        packets, nbytes = map(int, re.search(r"packets (\d+) bytes (\d+)", listed).groups())
        u = collect(DesiredState(policies=(policy,)), m)["outbound"]
        assert (u["packets"], u["bytes"]) == (packets, nbytes) == (datagrams, datagrams * 1028), (
            u,
            listed,
            sent,
        )
        print(f"outbound: {datagrams} datagrams, {nbytes} bytes counted")
