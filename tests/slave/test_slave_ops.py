"""The slave ops' schemas (size limits, closed fields, never a crash on random JSON) and the
slave's local re-check of an owner's part (owners, names, users, symlinked paths)."""

from __future__ import annotations

import grp
import os
import pwd

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool import model, wire
from domtool.model import TLS, BasicAuth, Block, DesiredState, Record, Vhost, WebSettings, Zone
from domtool.slave import ops
from domtool.slave.ops import BadArgs, Grants, OwnerChange


def vhost(root: str, **kw) -> Vhost:
    """A vhost of alice's on node web1, document root ``root``."""
    values = dict(
        fqdn="www.alice.org",
        owner="alice",
        domain="alice.org",
        nodes=("web1",),
        document_root=root,
        user="alice",
        group="alice",
        server_admin="alice@alice.org",
    )
    values.update(kw)
    return Vhost(**values)


def prepare_args(state: DesiredState, owner: str = "alice", grants: dict | None = None) -> dict:
    """The wire arguments of a prepare carrying one owner's state."""
    change = {"state": model.to_json(state)}
    if grants is not None:
        change["grants"] = grants
    return {"txid": "tx-1", "changes": {owner: change}}


@pytest.fixture
def homes(tmp_path):
    """alice's and bob's home directories under tmp_path, alice's with a www directory."""
    alice = tmp_path / "home" / "alice"
    bob = tmp_path / "home" / "bob"
    (alice / "www").mkdir(parents=True)
    (bob / "secret").mkdir(parents=True)
    return alice, bob


def change(state: DesiredState, alice) -> OwnerChange:
    """alice's change with her home directory, user and group granted."""
    return OwnerChange(state, Grants(paths=(str(alice),), users=("alice",), groups=("alice",)))


# -- schema ------------------------------------------------------------------------


def test_the_schema_table_is_exactly_the_slave_ops():
    """Every op the wire allows has a schema, and no other."""
    assert set(ops.OP_SCHEMAS) == set(wire.SLAVE_OPS)


def test_a_prepare_round_trips_the_model():
    """A prepare built from model.to_json parses back to equal model values and grants."""
    state = DesiredState(
        zones=(Zone("alice.org", "alice", (Record("www", "A", ("192.0.2.1",)),), ("ns1",)),),
        vhosts=(
            vhost(
                "/home/alice/www",
                tls=TLS("/home/alice/c.pem", "/home/alice/k.pem"),
                blocks=(Block("directory", "/home/alice/www/x"), Block("location", "/y")),
                settings=WebSettings(auth=BasicAuth("r", "/home/alice/.htpasswd")),
            ),
        ),
    )
    args = ops.parse(
        "prepare", prepare_args(state, grants={"paths": ["/home/alice"], "users": ["alice"]})
    )
    assert args.txid == "tx-1"
    assert args.changes["alice"].state == state.normalised()
    assert args.changes["alice"].grants == Grants(paths=("/home/alice",), users=("alice",))


def test_other_ops_parse_to_their_typed_arguments():
    """commit/abort carry a txid, describe a domain (lower-cased), status nothing."""
    assert ops.parse("commit", {"txid": "a1"}) == ops.TxArgs("a1")
    assert ops.parse("abort", {"txid": "a1"}) == ops.TxArgs("a1")
    assert ops.parse("status", {}) == ops.StatusArgs()
    assert ops.parse("describe", {"domain": "Alice.ORG"}) == ops.DescribeArgs("alice.org")


@pytest.mark.parametrize(
    "op, args, where",
    [
        ("commit", {"txid": "x" * 65}, "txid"),
        ("commit", {"txid": "a b"}, "txid"),
        ("commit", {}, "txid"),
        ("commit", {"txid": "a", "extra": 1}, ""),
        ("status", {"verbose": True}, ""),
        ("describe", {"domain": "a" * 254}, "domain"),
        ("prepare", {"txid": "t", "changes": {"Root": {"state": {}}}}, "changes.Root"),
        ("prepare", {"txid": "t", "changes": []}, "changes"),
    ],
)
def test_malformed_arguments_are_refused_with_their_path(op, args, where):
    """Wrong types, unknown fields, bad txids and oversize strings name the field."""
    with pytest.raises(BadArgs) as e:
        ops.parse(op, args)
    assert where in [p for p, _ in e.value.problems]


def test_oversize_lists_are_refused_before_building_anything():
    """More records than a zone may have, or a string past its limit, is a BadArgs."""
    zone = model.to_json(Zone("alice.org", "alice", (), ("ns1",)))
    zone["records"] = [model.to_json(Record("@", "A", ("192.0.2.1",)))] * (ops.MAX_RECORDS + 1)
    args = {"txid": "t", "changes": {"alice": {"state": {"kind": "DesiredState", "zones": [zone]}}}}
    with pytest.raises(BadArgs, match="too many items"):
        ops.parse("prepare", args)
    big = model.to_json(vhost("/home/alice/" + "a" * 5000))
    args = {"txid": "t", "changes": {"alice": {"state": {"kind": "DesiredState", "vhosts": [big]}}}}
    with pytest.raises(BadArgs, match="too long"):
        ops.parse("prepare", args)


def test_a_foreign_model_kind_is_refused():
    """Only model objects of the expected class are accepted in each slot."""
    v = model.to_json(vhost("/home/alice/www"))
    v["kind"] = "Zone"
    args = {"txid": "t", "changes": {"alice": {"state": {"kind": "DesiredState", "vhosts": [v]}}}}
    with pytest.raises(BadArgs, match="must be 'Vhost'"):
        ops.parse("prepare", args)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["kind", "txid", "changes", "state", "grants", "name", "owner", "x"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150)
@given(op=st.sampled_from(sorted(wire.SLAVE_OPS)), args=json_values)
def test_random_json_never_crashes_the_parser(op, args):
    """Whatever JSON arrives as args, parse either builds typed arguments or raises BadArgs."""
    try:
        ops.parse(op, args)
    except BadArgs as e:
        assert e.problems


model_like = st.fixed_dictionaries(
    {"kind": st.sampled_from(["DesiredState", "Vhost", "Zone", "Record", "Block", "location"])},
    optional={
        "zones": st.lists(json_values, max_size=2),
        "vhosts": st.lists(json_values, max_size=2),
        "name": st.text(max_size=10),
        "owner": st.text(max_size=10),
        "records": st.lists(json_values, max_size=2),
    },
)


@settings(max_examples=150)
@given(state=model_like)
def test_random_model_shaped_json_never_crashes_the_parser(state):
    """Model-shaped noise in a prepare's state gives typed arguments or BadArgs, nothing else."""
    try:
        ops.parse("prepare", {"txid": "t", "changes": {"alice": {"state": state}}})
    except BadArgs as e:
        assert e.problems


# -- re-check ------------------------------------------------------------------------


def test_a_good_part_passes_the_recheck(homes):
    """alice's vhost under her granted home, as her own user, is accepted."""
    alice, _ = homes
    state = DesiredState(vhosts=(vhost(str(alice / "www")),))
    assert ops.recheck("alice", change(state, alice), node="web1") == []


def test_a_unit_of_another_owner_is_refused(homes):
    """A part sent under alice that carries bob's vhost or zone is refused, naming both."""
    alice, _ = homes
    state = DesiredState(
        vhosts=(vhost(str(alice / "www"), owner="bob"),),
        zones=(Zone("bob.org", "bob", (), ("web1",)),),
    )
    problems = ops.recheck("alice", change(state, alice), node="web1")
    assert "alice: vhost www.alice.org: owner: belongs to 'bob', not to 'alice'" in problems
    assert "alice: zone bob.org: owner: belongs to 'bob', not to 'alice'" in problems


def test_root_is_refused_even_when_granted(homes):
    """user or group root never passes, whatever the grants say."""
    alice, _ = homes
    state = DesiredState(vhosts=(vhost(str(alice / "www"), user="root", group="root"),))
    c = OwnerChange(state, Grants(paths=(str(alice),), users=("root",), groups=("root",)))
    problems = ops.recheck("alice", c)
    assert "alice: vhost www.alice.org: user: 'root' is the superuser" in problems
    assert "alice: vhost www.alice.org: group: 'root' is the superuser's group" in problems


def test_an_ungranted_user_is_refused(homes):
    """A vhost running as bob is refused for alice, who was not granted bob."""
    alice, _ = homes
    state = DesiredState(vhosts=(vhost(str(alice / "www"), user="bob"),))
    problems = ops.recheck("alice", change(state, alice))
    assert problems == [
        "alice: vhost www.alice.org: user: 'bob' is not one of alice's granted users"
    ]


def test_a_document_root_symlinked_to_another_member_is_refused(homes):
    """/home/alice/www/site -> /home/bob/secret lies lexically under alice's home but
    really in bob's: refused, naming the owner and the field."""
    alice, bob = homes
    os.symlink(bob / "secret", alice / "www" / "site")
    state = DesiredState(vhosts=(vhost(str(alice / "www" / "site")),))
    problems = ops.recheck("alice", change(state, alice))
    assert len(problems) == 1
    assert problems[0].startswith("alice: vhost www.alice.org: document_root: ")
    assert "resolves to" in problems[0] and str(bob / "secret") in problems[0]


def test_every_member_path_field_is_checked(homes):
    """Alias and script alias targets, directory blocks, TLS files and the htpasswd file
    outside alice's grants are each refused under their own field."""
    alice, bob = homes
    os.symlink(bob, alice / "bob")
    out = str(bob / "secret")
    via_link = str(alice / "bob" / "secret")
    v = vhost(
        str(alice / "www"),
        url_aliases=(("/a", out),),
        script_aliases=(("/cgi", via_link),),
        tls=TLS(out + "/c.pem", out + "/k.pem", out + "/chain.pem"),
        settings=WebSettings(auth=BasicAuth("r", out + "/.htpasswd")),
        blocks=(
            Block("directory", via_link),
            Block("location", "/loc", WebSettings(auth=BasicAuth("r", via_link + "/.ht"))),
        ),
    )
    problems = ops.recheck("alice", change(DesiredState(vhosts=(v,)), alice))
    fields = sorted(p.split(": ")[2] for p in problems)
    assert fields == sorted(
        [
            "url_aliases[0].path",
            "script_aliases[0].path",
            "tls.certificate",
            "tls.key",
            "tls.chain",
            "settings.auth.user_file",
            "blocks[0].path",
            "blocks[1].settings.auth.user_file",
        ]
    )


def test_bad_names_are_refused(homes):
    """Names that fail domtool.validate's grammars are refused with the field."""
    alice, _ = homes
    state = DesiredState(
        zones=(Zone("alice..org", "alice", (Record("a b", "A", ("192.0.2.1",)),), ("web1",)),),
        vhosts=(vhost(str(alice / "www"), fqdn="-www.alice.org", aliases=("x_y.alice.org",)),),
    )
    problems = ops.recheck("alice", change(state, alice))
    fields = sorted(p.split(": ")[1:3] for p in problems)
    assert fields == [
        ["vhost -www.alice.org", "aliases[0]"],
        ["vhost -www.alice.org", "fqdn"],
        ["zone alice..org", "name"],
        ["zone alice..org", "records[0].name"],
    ]


def test_a_unit_for_another_node_is_refused(homes):
    """The dispatcher sends a host only its own part: a unit not listing this node is refused."""
    alice, _ = homes
    state = DesiredState(vhosts=(vhost(str(alice / "www"), nodes=("web2",)),))
    assert ops.recheck("alice", change(state, alice), node="web1") == [
        "alice: vhost www.alice.org: nodes: not served by this host (web1)"
    ]


def _with_path(v: Vhost, field: str, path: str) -> Vhost:
    """``v`` with one member path field set to ``path``."""
    if field == "document_root":
        return attrs.evolve(v, document_root=path)
    if field == "url_aliases[0].path":
        return attrs.evolve(v, url_aliases=(("/u", path),))
    if field == "script_aliases[0].path":
        return attrs.evolve(v, script_aliases=(("/s", path),))
    if field.startswith("tls."):
        ok = v.document_root + "/f.pem"
        files = {"certificate": ok, "key": ok, "chain": ok, field[4:]: path}
        return attrs.evolve(v, tls=TLS(**files))
    if field == "settings.auth.user_file":
        return attrs.evolve(v, settings=WebSettings(auth=BasicAuth("r", path)))
    if field == "blocks[0].path":
        return attrs.evolve(v, blocks=(Block("directory", path),))
    if field == "blocks[0].settings.auth.user_file":
        ws = WebSettings(auth=BasicAuth("r", path))
        return attrs.evolve(v, blocks=(Block("location", "/l", ws),))
    raise AssertionError(field)


PATH_FIELDS = [
    "document_root",
    "url_aliases[0].path",
    "script_aliases[0].path",
    "tls.certificate",
    "tls.key",
    "tls.chain",
    "settings.auth.user_file",
    "blocks[0].path",
    "blocks[0].settings.auth.user_file",
]


@pytest.mark.parametrize("how", ["direct", "symlink", "dotdot"])
@pytest.mark.parametrize("field", PATH_FIELDS)
def test_every_path_field_into_another_members_home_is_refused(homes, field, how):
    """The (member path field x way into bob's home) matrix: bob's directory named
    directly, through a symlink in alice's home, or with '..' out of alice's home, is
    refused in every field, naming alice, the vhost and that field; the same field
    pointing inside alice's home passes."""
    alice, bob = homes
    os.symlink(bob / "secret", alice / "www" / "link")
    target = {
        "direct": str(bob / "secret"),
        "symlink": str(alice / "www" / "link"),
        "dotdot": str(alice / "www") + "/../../bob/secret",
    }[how]
    good = vhost(str(alice / "www"))
    assert ops.recheck("alice", change(DesiredState(vhosts=(good,)), alice)) == []
    inside = _with_path(good, field, str(alice / "www" / "inside"))
    assert ops.recheck("alice", change(DesiredState(vhosts=(inside,)), alice)) == []
    bad = _with_path(good, field, target)
    problems = ops.recheck("alice", change(DesiredState(vhosts=(bad,)), alice))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"alice: vhost www.alice.org: {field}: ")
    assert "not under any granted path" in problems[0]


def test_a_system_account_is_refused_even_when_granted(homes):
    """An account of this host below uid/gid 1000 (here: daemon, and the root group by
    another name if any) never runs a member's site, whatever the grants say."""
    alice, _ = homes
    state = DesiredState(vhosts=(vhost(str(alice / "www"), user="daemon", group="daemon"),))
    c = OwnerChange(state, Grants(paths=(str(alice),), users=("daemon",), groups=("daemon",)))
    problems = ops.recheck("alice", c)
    uid, gid = pwd.getpwnam("daemon").pw_uid, grp.getgrnam("daemon").gr_gid
    assert problems == [
        f"alice: vhost www.alice.org: user: 'daemon' is a system account (uid {uid} on this host)",
        f"alice: vhost www.alice.org: group: 'daemon' is a system group (gid {gid} on this host)",
    ]
    assert ops.recheck("alice", c, min_id=0) == []
