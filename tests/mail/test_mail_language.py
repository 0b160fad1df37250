"""The mail directives' semantics that this backend relies on: a bare user name as an
alias target must be one of the member's own users (security review, issue 13), and the
SpamAssassin switches land in the model."""

from __future__ import annotations

from domtool.lang.api import check_source
from domtool.model import Alias
from domtool.perms import parse_perms

BOB = parse_perms("domain: bob.example\npath: /home/bob\nuser: bob\ngroup: bob\n", "bob")
ALICE = parse_perms("domain: example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice")


def run(text: str, perms=BOB):
    return check_source([("f", text)], perms)


def domain(body: str, name: str = "bob.example") -> str:
    return f'domain "{name}" with\n  handleMail;\n{body}\nend;\n'


def test_an_alias_cannot_target_another_members_local_mailbox():
    for body in (
        '  defaultAlias "alice";',
        '  catchAllAlias "alice";',
        '  emailAlias "x" "alice";',
        '  aliasMulti "team" ["bob", "alice"];',
    ):
        r = run(domain(body))
        assert r.state is None, body
        (d,) = r.diagnostics
        assert "'alice' is not your_user for bob" in d.message, (body, d.message)


def test_own_user_and_addresses_are_fine():
    r = run(domain('  defaultAlias "bob";\n  emailAlias "a" "alice@example.net";'))
    assert r.diagnostics == ()
    (m,) = r.state.mail
    assert set(m.aliases) == {
        Alias(("default",), ("bob",)),
        Alias(("user", "a"), ("alice@example.net",)),
    }


def test_spam_switches():
    r = run(domain('  spamFilter true;\n  spamThreshold 8;\n  spamAction "junk";'))
    assert r.diagnostics == ()
    (m,) = r.state.mail
    assert (m.spam_filter, m.spam_threshold, m.spam_action) == (True, 8, "junk")
    (m,) = run(domain("  spamFilter true;")).state.mail
    assert (m.spam_threshold, m.spam_action) == (5, "tag")


def test_bad_spam_switches_are_refused_with_a_reason():
    r = run(domain('  spamAction "delete";'))
    assert r.state is None and "expected one of 'tag', 'refuse', 'junk'" in r.diagnostics[0].message
    r = run(domain("  spamThreshold 1000;"))
    assert r.state is None and "from -100 to 100" in r.diagnostics[0].message
