"""The Exim backend's rendering: lookup files that read back exactly as the model, and
nothing escapes its slot (hypothesis, as the DNS and web backends' render tests).

Each mail domain becomes one lsearch file of ``KEY: VALUE`` lines. The property: for any
hostile value in a member-controlled field (alias source, target, relay host, domain
name, owner, spam settings), the unit is refused naming the owner, the domain and the
field, or the file parses back as exactly the model's rules and nothing else: no extra
key, no continuation line, no ``|pipe``, ``/file``, ``:include:``, ``${`` expansion, NUL,
newline, or a source outside the domain. Also the slave's re-check of mail units.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.model import Alias, DesiredState, MailDomain
from domtool.slave.backends.exim import (
    EximBackend,
    EximConfig,
    RenderRefused,
    check_addresses,
    site_config,
    unit_addresses,
)
from domtool.slave.ops import Grants, OwnerChange, recheck

CONFIG = EximConfig(
    live_config="/etc/exim4/exim4.conf",
    state_dir="/var/lib/domtool/slave",
    spool_dir="/var/spool/exim4",
    log_dir="/var/log/exim4",
    pid_file="/run/exim4/exim.pid",
    vmail_map="/var/lib/domtool/vmail.map",
    vmail_root="/var/mail/vmail",
    spamd="127.0.0.1 783",
)


def md(aliases=(), **kw) -> MailDomain:
    base = dict(name="example.net", owner="alice", nodes=("local",), aliases=tuple(aliases))
    base.update(kw)
    return MailDomain(**base)


def render(m: MailDomain, config: EximConfig = CONFIG):
    return EximBackend(config).render_domain(m)


LINE = re.compile(r"([a-z0-9._+-]+|@default|@catchall|@relay|@spam): (.+)")
ADDR = re.compile(r"[A-Za-z0-9._+-]+@[a-z0-9.-]+")


def parse(content: bytes) -> dict[str, str]:
    """The unit's keys and values, refusing anything but the shapes the renderer writes."""
    text = content.decode("ascii")
    assert "\x00" not in text and "${" not in text and "\r" not in text
    out = {}
    lines = text.split("\n")
    assert lines[-1] == "" and lines[0].startswith("# domtool: mail of ")
    for line in lines[1:-1]:
        m = LINE.fullmatch(line)
        assert m, line
        key, value = m.groups()
        assert key not in out
        out[key] = value
    return out


def expected(m: MailDomain) -> dict[str, str]:
    out = {}
    if m.handle == "relay":
        out["@relay"] = m.relay_host.lower()
    for a in m.aliases:
        key = {"default": "@default", "catchall": "@catchall"}.get(a.source[0])
        key = key or a.source[1].lower()
        targets = [t if "@" in t else f"{t}@localhost" for t in a.targets]
        out[key] = (
            ", ".join(
                dict.fromkeys(t.split("@")[0] + "@" + t.split("@")[1].lower() for t in targets)
            )
            or ":blackhole:"
        )
    if m.spam_filter:
        out["@spam"] = f"threshold={m.spam_threshold * 10} action={m.spam_action}"
    return out


def test_alice_example_net_renders_as_lookup_lines():
    m = md(
        [
            Alias(("user", "sales"), ("alice@example.org",)),
            Alias(("user", "team"), ("alice", "carol@elsewhere.example")),
            Alias(("user", "noreply"), ()),
            Alias(("default",), ("alice",)),
        ]
    )
    u = render(m)
    assert u.key == "mail:example.net" and u.owner == "alice" and u.ext == "mail"
    assert parse(u.content) == {
        "sales": "alice@example.org",
        "team": "alice@localhost, carol@elsewhere.example",
        "noreply": ":blackhole:",
        "@default": "alice@localhost",
    }
    assert u.checks == ()  # routed by the batched check_units instead
    batch = EximBackend(CONFIG).check_units(
        {u.key: u}, {u.key: PurePosixPath("/var/lib/domtool/units/exim/ab.mail")}
    )
    assert batch.files == {"units.map": b"example.net: /var/lib/domtool/units/exim/ab.mail\n"}
    (check,) = batch.commands
    assert check.argv[:3] == ("/usr/sbin/exim4", "-C", "/etc/exim4/exim4.conf")
    assert "-DUNIT_MAP={dir}/units.map" in check.argv
    assert check.argv[-5:] == ("-bt", *unit_addresses(m))
    assert check_addresses("example.net", u.content) == unit_addresses(m)
    assert unit_addresses(m) == [
        "sales@example.net",
        "team@example.net",
        "noreply@example.net",
        "domtool-check--unknown@example.net",
    ]


def test_relay_and_spam_lines():
    u = render(
        md(
            handle="relay",
            relay_host="MX.Home.Example",
            spam_filter=True,
            spam_threshold=8,
            spam_action="refuse",
        )
    )
    assert parse(u.content) == {"@relay": "mx.home.example", "@spam": "threshold=80 action=refuse"}
    assert u.checks == ()
    path = PurePosixPath("/s/units/exim/x.mail")
    assert EximBackend(CONFIG).check_units({u.key: u}, {u.key: path}) is None  # nothing local


def test_a_batch_check_is_cut_into_argv_runs_under_32_kb():
    b = EximBackend(CONFIG)
    units, paths = {}, {}
    for i in range(400):
        aliases = [Alias(("user", f"user{j:02d}-with-a-long-name"), ("alice",)) for j in range(8)]
        u = render(md(name=f"domain-number-{i:04d}.example", aliases=aliases))
        units[u.key] = u
        paths[u.key] = PurePosixPath(f"/var/lib/domtool/units/exim/{i:064d}.mail")
    batch = b.check_units(units, paths)
    assert len(batch.files["units.map"].splitlines()) == 400
    assert len(batch.commands) > 1
    asked = []
    for cmd in batch.commands:
        assert sum(len(a) + 1 for a in cmd.argv) < 32 * 1024
        assert cmd.argv[:5] == b.config.argv("-DUNIT_MAP={dir}/units.map", "-bt")
        asked += cmd.argv[5:]
    want = [a for k in sorted(units) for a in check_addresses(k[5:], units[k].content)]
    assert asked == want and len(asked) == 400 * 8


def test_spam_needs_a_spamd():
    no_spamd = attrs.evolve(CONFIG, spamd=None)
    with pytest.raises(RenderRefused) as info:
        render(md(spam_filter=True), no_spamd)
    assert info.value.errors[0].field == "spam_filter"


def test_a_domain_claimed_twice_is_refused_for_both():
    b = EximBackend(CONFIG)
    st_ = DesiredState(mail=(md(), md(owner="bob", name="EXAMPLE.net")))
    units, errors = b.render(st_)
    assert units == [] and sorted(e.owner for e in errors) == ["alice", "bob"]


def test_index_and_commands():
    b = EximBackend(CONFIG)
    idx = b.index(
        {
            "mail:example.net": PurePosixPath("/var/lib/domtool/slave/units/exim/ab.mail"),
            "lists:example.net": PurePosixPath("/var/lib/domtool/slave/units/exim/cd.lists"),
        }
    )
    assert idx["domains"].endswith(b"example.net: /var/lib/domtool/slave/units/exim/ab.mail\n")
    assert idx["lists"].endswith(b"example.net: /var/lib/domtool/slave/units/exim/cd.lists\n")
    with pytest.raises(ValueError):
        b.index({"mail:x.example": PurePosixPath("/a b/c")})
    (chk,) = b.check_all(PurePosixPath("/s/staging/7"))
    assert chk.argv == (
        "/usr/sbin/exim4",
        "-C",
        "/etc/exim4/exim4.conf",
        "-DGEN=/s/staging/7",
        "-bV",
    )
    assert b.reload() == ()  # lookups are read per connection: nothing to signal
    (rl,) = EximBackend(attrs.evolve(CONFIG, reload_on_apply=True)).reload()
    assert rl.argv[0] == "/usr/sbin/start-stop-daemon" and "HUP" in rl.argv
    assert rl.argv[-2:] == ("--exec", "/usr/sbin/exim4")
    conf = site_config(CONFIG).decode()
    assert "GEN = /var/lib/domtool/slave/current" in conf
    assert "forbid_pipe" in conf and "forbid_file" in conf and "forbid_include" in conf


def test_probes_expn_each_alias_and_refuse_unknown_without_a_default():
    b = EximBackend(CONFIG)
    st_ = DesiredState(
        mail=(
            md([Alias(("user", "a"), ("x@y.example",)), Alias(("user", "d"), ())]),
            md([Alias(("default",), ("alice",))], name="other.example"),
        )
    )
    kinds = {(p.target[2], p.target[3], p.target[4]) for p in b.probes(st_)}
    assert kinds == {
        ("expn", "a@example.net", ("x@y.example",)),
        ("expn", "d@example.net", ()),
        ("refused", "domtool-check--unknown@example.net", ()),
        ("accepted", "domtool-check--unknown@other.example", ()),
    }


# ---------------------------------------------------------------------------
# Hostile values

HOSTILE_CHARS = "\"\\\n\r\t :,;|/$@{}<>#'\x00\x7fé\u2028"
TOKENS = (
    "|/bin/sh -c id",
    "/etc/passwd",
    ":include:/etc/aliases",
    "${run{/bin/id}}",
    "${readfile{/etc/shadow}}",
    "a\nb: evil@x.example",
    "x@y.example, /tmp/f",
    ":fail: no",
    ":defer:",
    ":blackhole:",
    '"a b"@x.example',
    "root",
    "-oQ",
    "a\x00b",
    "x" * 300,
)

FIELDS = {
    "aliases[0].source": (lambda v: md([Alias(("user", v), ("a@b.example",))]), "sales"),
    "aliases[0].targets[0]": (lambda v: md([Alias(("user", "s"), (v,))]), "alice@example.org"),
    "aliases[0].targets[1]": (lambda v: md([Alias(("default",), ("alice", v))]), "bob"),
    "relay_host": (lambda v: md(handle="relay", relay_host=v), "mx.home.example"),
    "name": (lambda v: md(name=v), "example.net"),
    "spam_action": (lambda v: md(spam_filter=True, spam_action=v), "junk"),
}


def check_one(field: str, value: object) -> bool:
    m = FIELDS[field][0](value)
    try:
        unit = render(m)
    except RenderRefused as e:
        # the spam settings are checked (and reported) as one field, spam_filter
        want = "spam_filter" if field == "spam_action" else field
        assert {(err.owner, err.name, err.field) for err in e.errors} == {
            ("alice", m.name, want)
        }, (field, value, e.errors)
        return False
    assert parse(unit.content) == expected(m), (field, value)
    return True


def hostile_text(benign: str):
    splice = st.builds(
        lambda i, junk: benign[: i % (len(benign) + 1)] + junk + benign[i % (len(benign) + 1) :],
        st.integers(0, 100),
        st.text(alphabet=HOSTILE_CHARS, min_size=1, max_size=4) | st.sampled_from(TOKENS),
    )
    return st.one_of(
        splice,
        st.sampled_from(TOKENS),
        st.text(alphabet=HOSTILE_CHARS + "ab0", max_size=40),
        st.text(max_size=100),
        st.just(benign.upper()),
    )


@pytest.mark.parametrize("field", sorted(FIELDS))
@settings(max_examples=200)
@given(data=st.data())
def test_hostile_values_are_refused_or_read_back_exactly(field, data):
    check_one(field, data.draw(hostile_text(FIELDS[field][1])))


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_refuses_a_newline_and_accepts_its_benign_value(field):
    benign = FIELDS[field][1]
    assert check_one(field, benign)
    assert not check_one(field, benign[:-1] + "\n" + benign[-1])


@pytest.mark.parametrize("token", TOKENS)
def test_no_token_reaches_a_file_as_a_target(token):
    assert not check_one("aliases[0].targets[0]", token) or token == "root"


# ---------------------------------------------------------------------------
# The slave's own re-check


def change(m: MailDomain, users=("alice",)) -> OwnerChange:
    return OwnerChange(DesiredState(mail=(m,)), Grants(paths=("/home/alice",), users=users))


def test_recheck_refuses_a_local_mailbox_that_is_not_the_owners():
    """issue 13: bob may not send mail to alice's local mailbox, whatever the dispatcher
    let through; root and system accounts never."""
    m = md([Alias(("default",), ("alice",))], owner="bob", name="bob.example")
    (p,) = recheck("bob", change(m, users=("bob",)), node="local")
    assert "aliases[0].targets[0]" in p and "'alice' is not one of bob's granted users" in p
    m = md([Alias(("user", "x"), ("root",)), Alias(("user", "y"), ("daemon",))])
    probs = recheck("alice", change(m, users=("alice", "root", "daemon")), node="local")
    assert len(probs) == 2 and "superuser" in probs[0] and "system account" in probs[1]
    assert recheck("alice", change(md([Alias(("default",), ("alice",))])), node="local") == []


def test_recheck_refuses_foreign_sources_and_bad_targets():
    m = md(
        [
            Alias(("user", "a@other.example"), ("x@y.example",)),
            Alias(("weird",), ("x@y.example",)),
            Alias(("user", "b"), ("|/bin/sh",)),
        ],
        spam_action="delete",
    )
    probs = recheck("alice", change(m), node="local")
    fields = sorted(p.split(": ")[2] for p in probs)
    assert fields == [
        "aliases[0].source",
        "aliases[1].source",
        "aliases[2].targets[0]",
        "spam_action",
    ]


def test_recheck_refuses_another_members_unit():
    m = md(owner="bob")
    (p,) = recheck("alice", change(m), node="local")
    assert "belongs to 'bob'" in p
