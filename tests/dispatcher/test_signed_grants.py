"""Admin-signed grant records: kept by the dispatcher (``put_grants``), relayed in prepare,
verified by the slave; made by ``domtool-admin grant-key`` / ``sign-grants``."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from domtool import grantsig
from domtool.client import grant_signing
from domtool.dispatcher.controller import OpError
from domtool.dispatcher.signed_grants import SignedGrantFiles
from domtool.slave import ops
from domtool.slave.verified import GrantBook
from tests.dispatcher.harness import ALICE, ROOT, files, make_dispatcher

KEY, PUB = grantsig.new_signing_key()


def alices_record(d, serial=5):
    grants = d.store.grants_of("alice").grants()
    return grantsig.GrantRecord.of("alice", serial, grants)


@pytest.fixture
def d(tmp_path):
    d = make_dispatcher()
    d.controller.signed_grants = SignedGrantFiles(tmp_path / "signed-grants")
    return d


def test_a_signed_record_of_the_current_grants_is_kept_and_relayed_in_prepare(d):
    signed = grantsig.sign(alices_record(d), KEY)
    out = d.run(ROOT, "put_grants", signed=signed.to_json())
    assert out == {"user": "alice", "serial": 5, "key": grantsig.key_id(PUB)}
    d.run(ALICE, "submit", files=files(example_org='dom "example.org" with end'))
    prepares = [a for link in d.links.values() for op, a in link.calls if op == "prepare"]
    assert prepares
    for args in prepares:
        relayed = args["changes"]["alice"]["signed_grants"]
        assert relayed == signed.to_json()
        # What the slave makes of it: parsed by the op schema, verified by its key.
        parsed = ops.parse("prepare", json.loads(json.dumps(args)))
        vg = GrantBook([PUB]).verified("alice", parsed.changes["alice"].signed)
        assert vg.perms == d.store.grants_of("alice")


def test_a_record_that_differs_from_the_store_is_refused_with_the_difference(d):
    rec = grantsig.GrantRecord.of(
        "alice", 5, d.store.grants_of("alice").grants() + (("domain", "bob.org"),)
    )
    e = d.refusal(ROOT, "put_grants", signed=grantsig.sign(rec, KEY).to_json())
    assert "not alice's grants as they are now" in e.failure.message
    assert e.failure.details == ("signed but not granted: domain bob.org",)
    before = grantsig.sign(alices_record(d), KEY)  # signed before a revoke
    d.store.revoke("alice", "domain", "example.net")
    e = d.refusal(ROOT, "put_grants", signed=before.to_json())
    assert e.failure.details == ("signed but not granted: domain example.net",)


def test_an_older_serial_and_a_non_member_are_refused(d):
    d.run(ROOT, "put_grants", signed=grantsig.sign(alices_record(d, 7), KEY).to_json())
    e = d.refusal(ROOT, "put_grants", signed=grantsig.sign(alices_record(d, 7), KEY).to_json())
    assert "not newer than the kept one (7)" in e.failure.message
    rec = grantsig.GrantRecord.of("nobody", 1, [])
    e = d.refusal(ROOT, "put_grants", signed=grantsig.sign(rec, KEY).to_json())
    assert "nobody is not an active member" in e.failure.message


def test_put_grants_is_for_admins_only(d):
    signed = grantsig.sign(alices_record(d), KEY)
    with pytest.raises(OpError, match="for administrators only"):
        d.run(ALICE, "put_grants", signed=signed.to_json())


def test_a_relayed_record_edited_by_the_dispatcher_does_not_verify(d, tmp_path):
    d.run(ROOT, "put_grants", signed=grantsig.sign(alices_record(d), KEY).to_json())
    path = tmp_path / "signed-grants" / "alice.json"
    obj = json.loads(path.read_text())
    obj["record"]["grants"].append(["domain", "bob.org"])
    with pytest.raises(grantsig.GrantSigError, match="does not verify"):
        GrantBook([PUB]).verified("alice", grantsig.SignedGrants.from_json(obj))


def test_grant_key_writes_a_private_key_0600_and_its_public_key(tmp_path, capsys):
    path = str(tmp_path / "signing.key")
    assert grant_signing.cmd_grant_key(argparse.Namespace(path=path)) == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    pub = (tmp_path / "signing.key.pub").read_bytes()
    assert grantsig.key_id(pub) in capsys.readouterr().out
    assert grantsig.public_key_of((tmp_path / "signing.key").read_bytes()) == pub
    assert grant_signing.cmd_grant_key(argparse.Namespace(path=path)) == 1  # never overwrites
    assert grantsig.public_key_of((tmp_path / "signing.key").read_bytes()) == pub


def test_sign_grants_signs_what_the_dispatcher_shows_and_hands_it_back(d, tmp_path, monkeypatch):
    """``sign-grants alice``: perms_of, sign, put_grants, through the real controller."""
    from domtool.client import config as client_config
    from domtool.client import connection
    from tests.dispatcher.harness import result_of

    key = tmp_path / "k"
    key.write_bytes(KEY)
    monkeypatch.setattr(client_config, "load", lambda path: object())
    monkeypatch.setattr(
        connection,
        "call",
        lambda config, op, args, progress: result_of(d.controller.handle(ROOT, op, args)),
    )
    args = argparse.Namespace(user="alice", key=str(key), config=None)
    assert grant_signing.cmd_sign_grants(args) == 0
    kept = d.controller.signed_grants.get("alice")
    vg = GrantBook([PUB]).verified("alice", grantsig.SignedGrants.from_json(kept))
    assert vg.perms == d.store.grants_of("alice")


def test_the_slave_config_names_its_trusted_grant_keys(tmp_path):
    from domtool.slave import config as slave_config
    from tests.slave.test_slave_service import CONFIG

    text = CONFIG.format(port=1999).replace("[tls]\n", '[tls]\ngrant_keys = ["grant.pub"]\n')
    assert "grant_keys" in text
    cfg = slave_config.parse(text, str(tmp_path))
    assert cfg.grant_keys == (str(tmp_path / "grant.pub"),)
    assert slave_config.parse(CONFIG.format(port=1999), str(tmp_path)).grant_keys == ()
    bad = CONFIG.format(port=1999).replace("[tls]\n", "[tls]\ngrant_keys = 3\n")
    with pytest.raises(slave_config.ConfigError, match="grant_keys"):
        slave_config.parse(bad, str(tmp_path))


def test_grant_and_revoke_say_the_signed_record_is_now_stale(d):
    d.run(ROOT, "put_grants", signed=grantsig.sign(alices_record(d), KEY).to_json())
    out = d.run(ROOT, "grant", user="alice", **{"class": "domain", "value": "alice.example"})
    assert "sign-grants alice" in out["sign"]
    out = d.run(ROOT, "revoke", user="alice", **{"class": "domain", "value": "alice.example"})
    assert "sign-grants alice" in out["sign"]
    assert "sign" not in d.run(
        ROOT, "grant", user="bob", **{"class": "domain", "value": "b.example"}
    )
