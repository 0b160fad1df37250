"""Members' network policy on the real kernel (issue 11), in network namespaces this test
makes, with real Unix users it creates (and removes).

Two namespaces joined by a veth pair: the *host* (10.77.0.1, where the slave's engine
loads our nftables table and the members' programs run) and the *peer* (10.77.0.2, and
10.77.0.3: the site's web server). The policy goes the whole way: ``domtool-admin
firewall add`` (the controller's ``policy_set``) -> store -> the two-phase apply ->
the real slave agent -> the engine -> ``nft -c -f`` -> ``nft -f``. Then every case of
the matrix (90: connect out and accept, TCP and UDP, IPv4 and IPv6, from anywhere, from the web
server, from this machine, for both members) is tried for real and must do what the rules say
(the oracle reads the rules, not the ruleset). Also: the host's own table is untouched,
a ruleset ``nft -c`` refuses never goes live (the old one stays), bad input changes
nothing, and the rate limit and counters work.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.auth import Member
from domtool.dispatcher.controller import Controller, OpError
from domtool.dispatcher.store import Store
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site
from domtool.policies import member_policy as mp
from domtool.slave.agent import Agent
from domtool.slave.backends import nft
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.service import backend_actions
from tests.agent_link import AgentLink
from tests.conftest import require_binary
from tests.dispatcher.harness import result_of

pytestmark = pytest.mark.daemons

HELPER = (Path(__file__).parent / "nethelper.py").read_text()
PY = "/usr/bin/python3"  # the system python: any user may run it
CLONE_NEWNET = 0x40000000
HOST, PEER, WEB, LOCAL = "10.77.0.1", "10.77.0.2", "10.77.0.3", "127.0.0.1"
HOST6, PEER6, WEB6, LOCAL6 = "fd77::1", "fd77::2", "fd77::3", "::1"
SOURCES = {"remote": PEER, "web": WEB, "local": LOCAL}
SOURCES6 = {"remote6": PEER6, "web6": WEB6, "local6": LOCAL6}
ROOT = Member("root", True)

RULES = {
    "a": [
        "client tcp 7001",
        "client tcp 7002 to 10.77.0.3",
        "client udp 7003",
        "server tcp 8001",
        "proxied tcp 8002",
        "local tcp 8003",
        "server udp 8004",
    ],
    "b": ["client tcp 7004", "server tcp 8005", "local tcp 8006"],
}
OUT_CASES = [
    ("tcp", 7001, PEER),
    ("tcp", 7002, WEB),
    ("tcp", 7002, PEER),
    ("udp", 7003, PEER),
    ("tcp", 7004, PEER),
    ("udp", 7004, PEER),
    ("tcp", 7005, PEER),
    ("tcp", 7001, LOCAL),
    # IPv6 (the table is inet: one rule set for both)
    ("tcp", 7001, PEER6),
    ("tcp", 7002, WEB6),  # the host-restricted rule names an IPv4 host only
    ("udp", 7003, PEER6),
    ("tcp", 7004, PEER6),
]
LISTEN6 = [("tcp", 8001), ("tcp", 8002), ("tcp", 8003), ("tcp", 8005)]
LISTEN = [("tcp", 8001), ("tcp", 8002), ("tcp", 8003), ("udp", 8004), ("tcp", 8005)]
LISTEN += [("tcp", 8006), ("udp", 8001)]


def _need_root():
    require_binary("nft", "ip", "setpriv", "useradd")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, users); the CI machines run as root")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def as_user(user: str | None, *args: str) -> list[str]:
    cmd = [PY, "-c", HELPER, *args]
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]


class Site2:
    """The two namespaces, the users, the dispatcher and the host's slave."""

    def __init__(self, tmp: Path) -> None:
        tag = f"{os.getpid() % 100000}"
        self.nsh, self.nsp = f"dth{tag}", f"dtp{tag}"
        self.users = {"a": f"dta{tag}", "b": f"dtb{tag}"}
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def up(self) -> None:
        for ns in (self.nsh, self.nsp):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "-n",
            self.nsh,
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "v1",
            "netns",
            self.nsp,
        )
        sh("ip", "-n", self.nsh, "addr", "add", f"{HOST}/24", "dev", "v0")
        sh("ip", "-n", self.nsh, "link", "set", "v0", "up")
        for a in (PEER, WEB):
            sh("ip", "-n", self.nsp, "addr", "add", f"{a}/24", "dev", "v1")
        sh("ip", "-n", self.nsh, "addr", "add", f"{HOST6}/64", "dev", "v0", "nodad")
        for a in (PEER6, WEB6):
            sh("ip", "-n", self.nsp, "addr", "add", f"{a}/64", "dev", "v1", "nodad")
        sh("ip", "-n", self.nsp, "link", "set", "v1", "up")
        for u in self.users.values():
            sh("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", u)
        self._orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        _setns(f"/run/netns/{self.nsh}")
        # the host's own firewall table, which we must never touch
        (self.tmp / "hostfw.nft").write_text(
            "table ip hostfw {\n  counter seen { }\n"
            "  chain out { type filter hook output priority 10; policy accept;"
            ' counter name "seen"; }\n}\n'
        )
        sh("nft", "-f", str(self.tmp / "hostfw.nft"))
        self._dispatcher()

    def _dispatcher(self) -> None:
        state = self.tmp / "state"
        backend = nft.NftBackend(
            nft.NftConfig(state_dir=str(state), node="h1", nft=shutil.which("nft"))
        )
        engine = Engine(
            str(state),
            {"nft": backend},
            RealFileSystem(),
            SubprocessRunner(),
            RealClock(),
            RealProber(),
            probe_timeout=5.0,
        )
        self.engine = engine
        self.agent = Agent(
            engine,
            host="h1",
            state_dir=str(state),
            clock=Clock(),
            node="h1",
            actions=backend_actions(engine.backends),
        )
        result_of(self.agent.start())
        store = Store.connect(":memory:")
        store.add_member("root", is_admin=True)
        for u in self.users.values():
            store.add_member(u)
            store.grant(u, "user", u)
        self.store = store
        site = Site(
            nodes=(Node("h1", ("dns",), ipv4=HOST), Node("web1", ("web",), ipv4=WEB, ipv6=WEB6))
        )
        links = {"h1": AgentLink("h1", self.agent), "web1": FakeLink("web1", FakeSlave("web1"))}
        self.controller = Controller(store, site, Coordinator(store, links, Clock()))

    def run(self, who: Member, op: str, **args):
        return result_of(self.controller.handle(who, op, args))

    def down(self) -> None:
        for p in list(self.procs):
            self.stop(p)
        if hasattr(self, "_orig"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(self._orig, CLONE_NEWNET)
            os.close(self._orig)
        for ns in (self.nsh, self.nsp):
            sh("ip", "netns", "del", ns, check=False)
        for u in self.users.values():
            sh("userdel", u, check=False)

    # -- programs ---------------------------------------------------------------

    def serve(self, user: str | None, specs, netns: str | None = None) -> subprocess.Popen:
        argv = as_user(user, "serve", *specs)
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    def stop(self, p: subprocess.Popen) -> None:
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        self.procs.remove(p)

    def connect(self, user, proto, host, port, src="", netns=None) -> str:
        argv = as_user(user, "connect", proto, host, str(port), src, "1.5")
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()

    def table(self) -> str:
        return sh("nft", "list", "table", "inet", "domtool").stdout


def _rules(member: str, users) -> list[mp.FirewallRule]:
    return [mp.parse_rule(t, users[member]) for t in RULES[member]]


def oracle_out(rules, proto, port, dst) -> bool:
    for r in rules:
        if r.mode == "client" and r.proto == proto and any(lo <= port <= hi for lo, hi in r.ports):
            if not r.hosts or any(
                ipaddress.ip_address(dst) in ipaddress.ip_network(h) for h in r.hosts
            ):
                return True
    return False


def oracle_accept(rules, proto, port, source) -> bool:
    source = source.removesuffix("6")  # the same rules for IPv6
    for r in rules:
        if r.proto != proto or not any(lo <= port <= hi for lo, hi in r.ports):
            continue
        if r.mode == "server" or (r.mode == "proxied" and source == "web"):
            return True
        if r.mode == "local" and source == "local":
            return True
    return False


CASES = [("out", m, proto, port, dst) for m in "ab" for proto, port, dst in OUT_CASES]
CASES += [
    ("accept", m, proto, port, src) for m in "ab" for proto, port in LISTEN for src in SOURCES
]
CASES += [
    ("accept", m, proto, port, src) for m in "ab" for proto, port in LISTEN6 for src in SOURCES6
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _need_root()
    s = Site2(tmp_path_factory.mktemp("nft"))
    try:
        s.up()
        for m in "ab":
            for text in RULES[m]:
                out = s.run(
                    ROOT, "policy_set", user=s.users[m], part="firewall", action="add", value=text
                )
                assert out["applied"], out
        yield s
    finally:
        s.down()


@pytest.fixture(scope="module")
def outcomes(site):
    """Every case tried at once (per listening member: two users cannot share a port)."""
    results: dict[tuple, str] = {}
    servers = ["tcp:7001", "tcp:7002", "udp:7003", "tcp:7004", "udp:7004", "tcp:7005"]
    # UDP answers from the address it was asked at only when bound to it (the peer has
    # two IPv6 addresses, and a connected UDP client ignores the other one)
    servers += [f"{spec}@{'::' if spec.startswith('tcp') else PEER6}" for spec in servers]
    peer = site.serve(None, servers, site.nsp)
    local = site.serve(None, ["tcp:7001@127.0.0.1", "tcp:7001@::1"])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futs = {
            c: pool.submit(site.connect, site.users[c[1]], c[2], c[4], c[3])
            for c in CASES
            if c[0] == "out"
        }
        results.update({c: f.result() for c, f in futs.items()})
        for m in "ab":
            specs = [f"{p}:{n}" for p, n in LISTEN] + [f"{p}:{n}@::" for p, n in LISTEN6]
            listener = site.serve(site.users[m], specs)
            futs = {}
            for c in CASES:
                if c[0] != "accept" or c[1] != m:
                    continue
                _kind, _m, proto, port, src = c
                six = src.endswith("6")
                target, source = (HOST6, SOURCES6[src]) if six else (HOST, SOURCES[src])
                if src.startswith("local"):
                    futs[c] = pool.submit(site.connect, None, proto, source, port)
                else:
                    futs[c] = pool.submit(site.connect, None, proto, target, port, source, site.nsp)
            results.update({c: f.result() for c, f in futs.items()})
            site.stop(listener)
    site.stop(peer)
    site.stop(local)
    return results


def _id(c):
    text = "-".join(str(x) for x in c).replace("10.77.0.", "n").replace("127.0.0.1", "lo")
    return text.replace("fd77::", "v6n").replace("::1", "v6lo")


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_matrix(site, outcomes, case):
    kind, m, proto, port, where = case
    rules = _rules(m, site.users)
    want = (oracle_out if kind == "out" else oracle_accept)(rules, proto, port, where)
    got = outcomes[case]
    assert (got == "ok") == want, f"{case}: expected {'ok' if want else 'refused'}, got {got}"


def test_the_matrix_is_big_enough_and_both_ways():
    assert len(CASES) >= 50
    assert {c[0] for c in CASES} == {"out", "accept"} and {c[2] for c in CASES} == {"tcp", "udp"}


def test_admin_and_member_see_what_the_host_enforces(site, outcomes):
    a = site.users["a"]
    mine = site.run(Member(a), "policy")
    assert sorted(mine["lines"]) == sorted(mp.format_rule(r) for r in _rules("a", site.users))
    # what the host itself says it holds, and its kernel's word that it is live
    assert mine["hosts"]["h1"] == {"lines": mine["lines"], "live": True, "from": "host"}
    (held,) = [p for p in site.agent.state.policies if p.owner == a]
    assert [mp.format_rule(r) for r in held.firewall.rules] == mine["lines"]
    chain = sh("nft", "list", "chain", "inet", "domtool", f"u_{a}").stdout
    for r in held.firewall.rules:
        lo, _hi = r.ports[0]
        assert f"{r.proto} {'dport' if r.mode == 'client' else 'sport'} {lo}" in chain, chain
    assert site.run(ROOT, "policy_check")["ok"]
    shown = site.run(ROOT, "policy_show", user=a)
    assert shown["members"][a]["lines"] == mine["lines"]


def test_a_served_port_as_source_does_not_open_other_destinations(site, outcomes):
    """alice may serve tcp 8001; a connection she starts FROM port 8001 is still hers
    (original direction) and still needs a client rule for where it goes."""
    a = site.users["a"]
    peer = site.serve(None, ["tcp:7005", "tcp:7001"], site.nsp)
    try:
        argv = as_user(a, "connect", "tcp", PEER, "7005", "", "1.5", "8001")
        got = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        assert got.startswith("fail"), got
        argv = as_user(a, "connect", "tcp", PEER, "7001", "", "1.5", "8001")
        got = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        assert got == "ok", got
    finally:
        site.stop(peer)


def test_the_hosts_other_tables_are_untouched(site, outcomes):
    listing = sh("nft", "list", "table", "ip", "hostfw").stdout
    rules = [line for line in listing.splitlines() if "packets" not in line]
    assert 'counter name "seen"' in listing and "priority filter + 10" in listing
    # one more policy change: our table is replaced, theirs stays as it was
    b = site.users["b"]
    out = site.run(
        ROOT, "policy_set", user=b, part="firewall", action="add", value="client tcp 7010"
    )
    assert out["applied"], out
    after = sh("nft", "list", "table", "ip", "hostfw").stdout
    assert [line for line in after.splitlines() if "packets" not in line] == rules
    tables = sh("nft", "list", "tables").stdout.splitlines()
    assert tables == ["table ip hostfw", "table inet domtool"]

    def seen() -> int:
        text = sh("nft", "list", "counter", "ip", "hostfw", "seen").stdout
        return int(text.split("packets ")[1].split()[0])

    count = seen()
    site.connect(None, "tcp", PEER, 9)  # still counting: their chain is still hooked
    assert seen() > count


def test_a_ruleset_nft_refuses_never_goes_live(site, outcomes):
    a = site.users["a"]
    before, stored = site.table(), site.store.policy_of(a)
    site.store.grant(a, "user", "dtghost")  # granted, but no such user on this host
    try:
        out = site.run(
            ROOT,
            "policy_set",
            user=a,
            part="firewall",
            action="add",
            value="dtghost client tcp 7009",
        )
        assert not out["applied"]
        assert any("User does not exist" in r or "dtghost" in r for r in out["refused"]), out
        assert site.table() == before and site.store.policy_of(a) == stored
    finally:
        site.store.revoke(a, "user", "dtghost")
    # and the members' traffic still follows the old table
    peer = site.serve(None, ["tcp:7001"], site.nsp)
    try:
        assert site.connect(a, "tcp", PEER, 7001) == "ok"
        assert site.connect(site.users["b"], "tcp", PEER, 7001).startswith("fail")
    finally:
        site.stop(peer)


@pytest.mark.parametrize(
    "value, words",
    [
        ("client tcp 70000", "out of range"),
        ("client tcp 80-20", "backwards"),
        ("server tcp 80 to 10.0.0.1", "only a client rule"),
    ],
)
def test_bad_input_changes_nothing_on_the_host(site, outcomes, value, words):
    a = site.users["a"]
    before = site.table()
    with pytest.raises(OpError) as e:
        site.run(ROOT, "policy_set", user=a, part="firewall", action="add", value=value)
    assert words in e.value.failure.message
    b = site.users["b"]
    with pytest.raises(OpError) as e:
        site.run(
            ROOT, "policy_set", user=a, part="firewall", action="add", value=f"{b} client tcp 1"
        )
    assert f"{b}'s user" in e.value.failure.message
    assert site.table() == before


def test_rate_limit_and_outbound_counters(site, outcomes):
    a, b = site.users["a"], site.users["b"]
    rate = 100 * 1024
    nft_bin = shutil.which("nft")
    before = nft.read_counters(nft_bin)
    assert before[a]["packets"] > 0  # the matrix's traffic, counted by socket owner
    out = site.run(ROOT, "policy_set", user=a, part="firewall", action="rate", value="100k")
    assert out["applied"], out
    assert "rate over 100 kbytes/second" in site.table()  # nft shows it in kbytes
    # a change of rules only is loaded member by member: nobody's counters start again
    kept = nft.read_counters(nft_bin)
    assert kept[a]["packets"] >= before[a]["packets"] and kept[b] == before[b]
    peer = site.serve(None, ["udp:7003"], site.nsp)
    try:
        argv = as_user(a, "blast", PEER, "7003", "1.0")
        sent = int(subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout)
    finally:
        site.stop(peer)
    after = nft.read_counters(nft_bin)[a]
    packets = sent // 1000
    grew = {k: after[k] - kept[a].get(k, 0) for k in after}
    # what the kernel let through is about one second at the rate (plus the burst),
    # what it counted is what sendto() reported sent (plus IP and UDP headers)
    assert sent <= 2 * rate + 5 * 1024, sent
    assert grew["dropped_packets"] > 0
    assert grew["packets"] >= packets and grew["bytes"] >= sent + 28 * packets
    assert grew["bytes"] <= sent + 28 * packets + 2_000, (grew, sent)


def test_a_failed_probe_rolls_the_kernel_back_to_the_old_rules(site, outcomes):
    """The table is loaded, then its probe fails (as if the kernel held something else):
    the engine switches back and loads the previous rules again; the member's change is
    refused with the probe's reason and the stored policy stays as it was."""
    a = site.users["a"]
    before, stored = site.table(), site.store.policy_of(a)
    real = site.engine.prober

    class Failing:
        def probe(self, probe):
            if probe.owner == a:
                return "the kernel says no (test)"
            return real.probe(probe)

    site.engine.prober = Failing()
    try:
        out = site.run(
            ROOT, "policy_set", user=a, part="firewall", action="add", value="client tcp 7444"
        )
    finally:
        site.engine.prober = real
    assert not out["applied"] and any("the kernel says no" in r for r in out["refused"]), out
    assert site.store.policy_of(a) == stored
    chain = sh("nft", "list", "chain", "inet", "domtool", f"u_{a}").stdout
    assert "7444" not in chain
    strip = lambda t: [x for x in t.splitlines() if "packets" not in x]  # noqa: E731
    assert strip(site.table()) == strip(before)
