"""The nftables backend's rendering (pure): one unit per member, only our table named in
the index, a version digest per member, refusals with the owner named (a user in two
members' policies, a malformed rule), only this node's policies; and the rendered text
passes ``nft -c`` (the real check, in a network namespace of its own)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import PurePosixPath

import attrs
import pytest

from domtool.model import DesiredState, Firewall, FirewallRule, MemberPolicy
from domtool.slave.backend import RenderRefused
from domtool.slave.backends.nft import INDEX_FILE, NftBackend, NftConfig, rule_lines, unit_content


def pol(owner, users=None, rules=None, nodes=("h1",), rate=None) -> MemberPolicy:
    users = users or (owner,)
    rules = (
        rules
        if rules is not None
        else (FirewallRule(users[0], "client", "tcp", ((80, 80), (443, 443))),)
    )
    return MemberPolicy(owner, nodes, users, Firewall(rules, ("10.0.0.5", "2001:db8::5"), rate))


def backend() -> NftBackend:
    return NftBackend(NftConfig(state_dir="/var/lib/domtool-slave", node="h1"))


def test_one_unit_per_member_and_an_index_naming_only_our_table():
    b = backend()
    state = DesiredState(policies=(pol("alice"), pol("bob"), pol("carol", nodes=("h2",))))
    units = b.units(state, {}, 0)
    assert [(u.key, u.owner) for u in units] == [("policy:alice", "alice"), ("policy:bob", "bob")]
    files = b.index(
        {u.key: PurePosixPath(f"/s/units/nft/{u.owner}.sha.nft") for u in units},
        live={u.key: PurePosixPath(f"/s/live/nft/{u.owner}.nft") for u in units},
    )
    text, check = files[INDEX_FILE].decode(), files["check.nft"].decode()
    # only our table is named, by every command of the index and of each unit
    for body in [text, check] + [u.content.decode() for u in units]:
        for line in body.splitlines():
            if line and not line.startswith(("#", "include")):
                assert " inet domtool" in line, line
    assert text.splitlines()[1:3] == ["table inet domtool", "delete table inet domtool"]
    assert 'include "/s/live/nft/alice.nft"' in text and "meta skuid vmap @owners" in text
    assert 'include "/s/units/nft/alice.sha.nft"' in check and "/live/" not in check
    assert [u.live for u in units] == ["alice.nft", "bob.nft"]
    assert b.check_all(PurePosixPath("/g/7"))[0].argv == (
        "/usr/sbin/nft",
        "-c",
        "-f",
        "/g/7/nft/check.nft",
    )
    assert b.reload()[0].argv[-1] == "/var/lib/domtool-slave/current/nft/ruleset.nft"
    narrow = b.reload_units(["policy:bob"])
    assert [c.argv for c in narrow] == [
        ("/usr/sbin/nft", "-f", "/var/lib/domtool-slave/live/nft/bob.nft")
    ]
    assert b.reload_units([f"policy:m{i}" for i in range(21)]) == b.reload()
    assert units[0].checks[0].argv == ("/usr/sbin/nft", "-c", "-f", "{path}")
    two = b.units(DesiredState(policies=(pol("alice", ("alice", "alice_d")),)), {}, 0)
    assert two[0].key == "policy:alice:alice+alice_d"


def test_probes_follow_changed_members_with_their_digest():
    b = backend()
    first = b.units(DesiredState(policies=(pol("alice"), pol("bob"))), {}, 0)
    assert {p.owner for p in b.probes(DesiredState(policies=(pol("alice"), pol("bob"))))} == {
        "alice",
        "bob",
    }
    previous = {u.key: u for u in first}
    changed = pol("bob", rate=1000)
    b.units(DesiredState(policies=(pol("alice"), changed)), previous, 0)
    (probe,) = b.probes(DesiredState(policies=(pol("alice"), changed)))
    assert probe.owner == "bob" and probe.kind == "nft_table"
    assert f'comment "domtool {probe.target[3]}"' in unit_content(changed).decode()


def test_refusals_name_the_owner():
    b = backend()
    with pytest.raises(RenderRefused) as e:
        b.units(
            DesiredState(
                policies=(pol("alice", ("alice", "shared")), pol("bob", ("bob", "shared")))
            ),
            {},
            0,
        )
    assert e.value.owners == ("bob",) and "shared" in str(e.value)
    bad = pol("carol", rules=(FirewallRule("carol", "client", "tcp", ((9, 1),)),))
    with pytest.raises(RenderRefused) as e:
        b.units(DesiredState(policies=(pol("alice"), bad)), {}, 0)
    assert e.value.owners == ("carol",) and "backwards" in str(e.value)
    evil = pol("dave", users=('dave" ; flush ruleset',))
    with pytest.raises(RenderRefused):
        b.units(DesiredState(policies=(evil,)), {}, 0)


def test_rule_lines_by_mode():
    web = ("10.0.0.5", "2001:db8::5")
    r = FirewallRule("a", "client", "udp", ((53, 53),), ("10.0.0.53/32", "2001:db8::/64"))
    assert rule_lines(r, web, "a_x") == [
        "ct direction original ip daddr 10.0.0.53/32 udp dport 53 goto a_x",
        "ct direction original ip6 daddr 2001:db8::/64 udp dport 53 goto a_x",
    ]
    r = FirewallRule("a", "proxied", "tcp", ((8080, 8081),))
    assert rule_lines(r, web, "a_x") == [
        "ct direction reply ip daddr 10.0.0.5/32 tcp sport 8080-8081 goto a_x",
        "ct direction reply ip6 daddr 2001:db8::5/128 tcp sport 8080-8081 goto a_x",
    ]
    assert rule_lines(attrs.evolve(r, mode="local"), web, "a_x") == [
        'ct direction reply oif "lo" tcp sport 8080-8081 goto a_x'
    ]
    assert rule_lines(r, (), "a_x") == []  # no web server: a proxied rule admits nothing


@pytest.mark.daemons
def test_the_rendered_ruleset_passes_nft_check(tmp_path):
    """Real nft -c in a network namespace of its own, users that exist here (root's
    group of system users is refused by the slave, but nft only needs the name)."""
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("nft and unshare are installed by scripts/setup")
    b = backend()
    state = DesiredState(
        policies=(
            pol(
                "nobody",
                rate=5000,
                rules=(FirewallRule("nobody", "server", "udp", ((53, 53), (5353, 5360))),),
            ),
            pol("daemon"),
        )
    )
    units = b.units(state, {}, 0)
    paths = {}
    for u in units:
        path = tmp_path / f"{u.owner}.nft"
        path.write_bytes(u.content)
        paths[u.key] = PurePosixPath(path)
    (tmp_path / INDEX_FILE).write_bytes(b.index(paths)["check.nft"])
    proc = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(tmp_path / INDEX_FILE)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "daemon.nft").write_text(
        (tmp_path / "daemon.nft").read_text().replace("goto", "gogo")
    )
    proc = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(tmp_path / INDEX_FILE)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "daemon.nft" in proc.stderr
