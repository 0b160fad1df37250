"""The dispatcher's SQLite store: members, grants, sources, generations, audit, migrations."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.dispatcher import store as store_mod
from domtool.dispatcher.store import Store, StoreError
from domtool.perms import Permissions

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def db(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


def test_database_file_is_private_and_versioned(tmp_path, db):
    """The file is mode 0600 and records that every migration was applied."""
    mode = stat.S_IMODE(os.stat(tmp_path / store_mod.DB_NAME).st_mode)
    assert mode == 0o600
    assert db.schema_version() == len(store_mod.MIGRATIONS)


def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path, db):
    """Data survives a close and reopen; migrations run once."""
    db.add_member("alice")
    db.close()
    again = Store.open(tmp_path)
    assert again.member("alice").active
    assert again.schema_version() == len(store_mod.MIGRATIONS)
    again.close()


def test_a_newer_database_is_refused(tmp_path, db):
    """A database migrated by a newer domtool is refused, not misread."""
    db.close()
    raw = sqlite3.connect(tmp_path / store_mod.DB_NAME)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(tmp_path)


def test_migrations_apply_in_order(tmp_path, monkeypatch):
    """A new migration appended to MIGRATIONS is applied to an existing database."""
    Store.open(tmp_path).close()
    monkeypatch.setattr(
        store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, "ALTER TABLE members ADD note TEXT"]
    )
    s = Store.open(tmp_path)
    assert s.schema_version() == len(store_mod.MIGRATIONS)
    cols = [r[1] for r in s._db.execute("PRAGMA table_info(members)")]
    assert "note" in cols
    s.close()


def test_members_add_remove_readd(db):
    """Removing keeps the record (with its time); adding again brings the member back."""
    db.add_member("alice", is_admin=True, cert_serial=0xABC, now=T0)
    assert db.member("alice").is_admin and db.member("alice").cert_serial == 0xABC
    with pytest.raises(StoreError, match="already a member"):
        db.add_member("alice")
    db.remove_member("alice", now=T0)
    rec = db.member("alice")
    assert not rec.active and rec.removed == T0
    assert db.members() == []
    assert [m.name for m in db.members(include_removed=True)] == ["alice"]
    with pytest.raises(StoreError, match="not an active member"):
        db.remove_member("alice")
    db.add_member("alice")
    assert db.member("alice").active and not db.member("alice").is_admin


def test_grants_and_whohas(db):
    """Grants come back as permissions by class; whohas lists active holders only."""
    db.add_member("alice")
    db.add_member("bob")
    assert db.grant("alice", "domain", "example.org") is True
    assert db.grant("alice", "domain", "example.org") is False
    db.grant("alice", "path", "/home/alice")
    db.grant("alice", "user", "alice")
    db.grant("alice", "group", "alice")
    db.grant("bob", "domain", "example.org", shared=True)  # an admin says: shared
    perms = db.grants_of("alice")
    assert perms.user == "alice"
    assert set(perms.domains) == {"example.org"}
    assert set(perms.paths) == {"/home/alice"}
    assert set(perms.users) == {"alice"} and set(perms.groups) == {"alice"}
    assert db.whohas("domain", "example.org") == ["alice", "bob"]
    db.remove_member("bob")
    assert db.whohas("domain", "example.org") == ["alice"]
    assert db.revoke("alice", "domain", "example.org") is True
    assert db.revoke("alice", "domain", "example.org") is False
    assert set(db.grants_of("alice").domains) == set()


def test_removed_or_unknown_member_has_no_permissions(db):
    """Fail closed: a removed member's grants are not returned, nor anyone's for a stranger."""
    db.add_member("alice")
    db.grant("alice", "domain", "example.org")
    db.remove_member("alice")
    assert set(db.grants_of("alice").domains) == set()
    assert set(db.grants_of("nobody").domains) == set()


def test_grant_refuses_unknown_class_and_inactive_member(db):
    """Only known grant classes, only to active members."""
    db.add_member("alice")
    with pytest.raises(StoreError, match="unknown grant class"):
        db.grant("alice", "root", "yes")
    with pytest.raises(StoreError, match="not an active member"):
        db.grant("mallory", "domain", "example.org")


def test_sources_history_and_latest(db):
    """Versions number per domain; history keeps refused ones; latest picks accepted ones."""
    db.add_member("alice")
    assert db.put_source("alice", "example.org", "v1", accepted=True, now=T0) == 1
    assert db.put_source("alice", "example.org", "v2", accepted=True) == 2
    assert db.put_source("alice", "example.org", "bad", accepted=False) == 3
    assert db.put_source("alice", "other.org", "o1", accepted=True) == 1
    assert [(s.version, s.accepted) for s in db.history("example.org")] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    assert db.history("example.org")[0].submitted_at == T0
    assert [(s.domain, s.text) for s in db.latest_sources()] == [
        ("example.org", "v2"),
        ("other.org", "o1"),
    ]
    assert db.source("example.org", 1).text == "v1"
    assert db.source("example.org", 9) is None


def test_one_members_latest_sources_are_the_sites_latest_of_that_member(db):
    """``latest_sources(member)`` (asked on every submit, a query of its own) is exactly
    the site's latest accepted versions that belong to the member: a domain another member
    took over since is not the member's any more, a refused newer version does not count."""
    for m in ("alice", "bob"):
        db.add_member(m)
    db.put_source("alice", "a.org", "a1", accepted=True)
    db.put_source("alice", "a.org", "a2", accepted=True)
    db.put_source("alice", "a.org", "a3?", accepted=False)
    db.put_source("alice", "moved.org", "m1", accepted=True)
    db.put_source("bob", "moved.org", "m2", accepted=True)
    db.put_source("bob", "b.org", "b1", accepted=False)
    db.put_source("alice", "z.org", "z1", accepted=True)
    everyone = db.latest_sources()
    for m in ("alice", "bob", "carol"):
        assert db.latest_sources(m) == [s for s in everyone if s.member == m]
    assert [(s.domain, s.text) for s in db.latest_sources("alice")] == [
        ("a.org", "a2"),
        ("z.org", "z1"),
    ]


def test_latest_texts_are_every_members_stored_files_at_once(db):
    """``latest_texts()`` (regen's one read of the whole site) is, for every member,
    exactly what ``latest_sources(member)`` gives, removed domains (empty text) left out."""
    for m in ("alice", "bob"):
        db.add_member(m)
    db.put_source("alice", "a.org", "a1", accepted=True)
    db.put_source("alice", "a.org", "a2", accepted=True)
    db.put_source("alice", "a.org", "a3?", accepted=False)
    db.put_source("alice", "moved.org", "m1", accepted=True)
    db.put_source("bob", "moved.org", "m2", accepted=True)
    db.put_source("bob", "gone.org", "g1", accepted=True)
    db.put_source("bob", "gone.org", "", accepted=True)  # rmdom's tombstone
    texts = db.latest_texts()
    assert texts == {"alice": {"a.org": "a2"}, "bob": {"moved.org": "m2"}}
    for m in ("alice", "bob", "carol"):
        want = {s.domain: s.text for s in db.latest_sources(m) if s.text}
        assert texts.get(m, {}) == want


def test_deployed_texts_are_the_stored_parts_undecoded(db):
    """``deployed_texts()`` holds the text each committed part was written as; decoded it
    is ``deployed()``; a part taken off a host is gone from both."""
    parts = {"alice": {"kind": "DesiredState", "zones": [1]}, "bob": {"kind": "DesiredState"}}
    db.record_commit("ns1", 1, "applied", parts)
    db.record_commit("web1", 1, "applied", {"alice": {"b": 2, "a": 1}})
    texts = db.deployed_texts()
    assert texts[("alice", "web1")] == '{"a": 1, "b": 2}'
    assert {k: json.loads(v) for k, v in texts.items()} == db.deployed()
    db.record_commit("ns1", 2, "applied", {"bob": None})
    assert set(db.deployed_texts()) == {("alice", "ns1"), ("alice", "web1")}


def test_a_failed_write_leaves_nothing(db):
    """A write that fails half way is rolled back whole (a source from a stranger)."""
    with pytest.raises(StoreError):
        db.put_source("mallory", "example.org", "x", accepted=True)
    assert db.history("example.org") == []


def test_generations(db):
    """Generations are recorded per host, and a status update replaces the old one."""
    db.record_generation("ns1", 1, "prepared", now=T0)
    db.record_generation("ns1", 1, "applied")
    db.record_generation("www", 4, "failed")
    assert [(g.host, g.number, g.status) for g in db.generations()] == [
        ("ns1", 1, "applied"),
        ("www", 4, "failed"),
    ]
    assert [g.number for g in db.generations("www")] == [4]


def test_audit_log(db):
    """Audit entries keep JSON detail and come back oldest first, filtered by who."""
    db.audit("alice", "submit", {"domain": "example.org", "files": 1}, "applied", now=T0)
    db.audit("admin", "grant", {"member": "alice"}, "ok")
    log = db.audit_log()
    assert [(e.who, e.action, e.outcome) for e in log] == [
        ("alice", "submit", "applied"),
        ("admin", "grant", "ok"),
    ]
    assert log[0].detail == {"domain": "example.org", "files": 1} and log[0].time == T0
    assert [e.who for e in db.audit_log(who="admin")] == ["admin"]
    assert len(db.audit_log(limit=1)) == 1


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    """A migration that fails half way leaves the schema and its version as they were."""
    Store.open(tmp_path).close()
    bad = "ALTER TABLE members ADD note TEXT; ALTER TABLE nosuchtable ADD x TEXT"
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, bad])
    with pytest.raises(sqlite3.OperationalError, match="nosuchtable"):
        Store.open(tmp_path)
    monkeypatch.undo()
    s = Store.open(tmp_path)
    assert s.schema_version() == len(store_mod.MIGRATIONS)
    assert "note" not in [r[1] for r in s._db.execute("PRAGMA table_info(members)")]
    s.close()


def test_write_ahead_log_files_are_private_too(tmp_path, db):
    """SQLite's -wal and -shm files get the database file's 0600 mode."""
    db.add_member("alice")
    side = [p for p in tmp_path.iterdir() if p.name.startswith(store_mod.DB_NAME + "-")]
    assert side
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in side)


def test_grants_are_validated_and_canonical(db):
    """Grant values go through domtool.perms: canonicalised, invalid ones never stored;
    grants_of gives a real Permissions whose ownership rules apply."""
    db.add_member("alice")
    db.grant("alice", "domain", "Example.ORG")
    assert db.whohas("domain", "example.org") == ["alice"]
    for cls, bad in [
        ("path", "/"),
        ("path", "relative/x"),
        ("domain", "a b.org"),
        ("user", "Root!"),
    ]:
        with pytest.raises(StoreError):
            db.grant("alice", cls, bad)
    p = db.grants_of("alice")
    assert isinstance(p, Permissions)
    assert p.owns_domain("www.example.org") and not p.owns_domain("notexample.org")
    assert p.grants() == (("domain", "example.org"),)


def test_malformed_member_names_are_refused(db):
    """Only Unix user names become members."""
    with pytest.raises(StoreError, match="not a valid member"):
        db.add_member("Alice; DROP TABLE members")


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["grant", "revoke"]),
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["a.org", "b.org", "www.a.org"]),
        ),
        max_size=20,
    )
)
def test_grants_match_a_simple_model(ops):
    """Any sequence of grants and revokes leaves exactly what a set model predicts; a
    grant overlapping the other member's domains (same, parent or subdomain) is refused."""
    from domtool.dispatcher.store import GrantOverlap

    s = Store.connect(":memory:")
    s.add_member("alice")
    s.add_member("bob")
    model: set[tuple[str, str]] = set()
    for op, who, dom in ops:
        if op == "grant":
            others = {d for w, d in model if w != who}
            if any(dom == d or dom.endswith("." + d) or d.endswith("." + dom) for d in others):
                with pytest.raises(GrantOverlap):
                    s.grant(who, "domain", dom)
                continue
            assert s.grant(who, "domain", dom) == ((who, dom) not in model)
            model.add((who, dom))
        else:
            assert s.revoke(who, "domain", dom) == ((who, dom) in model)
            model.discard((who, dom))
    for who in ("alice", "bob"):
        assert set(s.grants_of(who).domains) == {d for w, d in model if w == who}
    for dom in ("a.org", "b.org", "www.a.org"):
        assert s.whohas("domain", dom) == sorted(w for w, d in model if d == dom)
    s.close()
