"""The Exim backend's batched routing check against a real Exim: one ``exim -bt`` routes
every changed domain of a round (the staged units named by ``-DUNIT_MAP``); one bad
domain among several good ones is found by the engine's bisection and refused alone,
with Exim's own message, while the others go live in the same apply and route."""

from __future__ import annotations

import smtplib

import pytest

from domtool.model import Alias, DesiredState, MailDomain

pytestmark = [pytest.mark.daemons, pytest.mark.slow]

GOOD = [f"batch{i}" for i in range(6)]


def domain(owner: str, *aliases: Alias) -> MailDomain:
    return MailDomain(
        name=f"{owner}.example", owner=owner, nodes=("local",), aliases=tuple(aliases)
    )


def rcpt(site, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=10) as s:
        s.ehlo("test.invalid")
        s.mail("someone@outside.example")
        return s.rcpt(address)[0]


def test_one_bad_domain_among_good_ones_is_refused_alone(mail_site):
    site = mail_site
    ran = []
    real = site.engine.runner

    class Recording:
        def run(self, cmd):
            ran.append(cmd.argv)
            return real.run(cmd)

    site.engine.runner = Recording()
    try:
        # Each good domain also forwards to the next one's new alias: only the batch (the
        # staged units together) routes that; the live config has none of them yet.
        good = [
            domain(
                o,
                Alias(("user", "info"), (f"{o}@elsewhere.example",)),
                Alias(("user", "next"), (f"info@{GOOD[(i + 1) % len(GOOD)]}.example",)),
            )
            for i, o in enumerate(GOOD)
        ]
        bad = domain("batchbad", Alias(("user", "x"), ("ghost@batch0.example",)))
        out = site.apply(DesiredState(mail=(*good, bad)))
    finally:
        site.engine.runner = real
    assert out.status == "applied", out.message
    assert out.refused.keys() == {"batchbad"}, out.message
    why = out.refused["batchbad"]
    assert "ghost@batch0.example" in why and "Unrouteable" in why, why
    assert set(out.applied) >= set(GOOD)  # (and the removal of earlier tests' domains)
    bts = [a for a in ran if "-bt" in a]
    first = bts[0]
    assert any(a.startswith("-DUNIT_MAP=") for a in first)
    # The first batch asked every domain's addresses in one exim run.
    for o in [*GOOD, "batchbad"]:
        assert any(a.endswith(f"@{o}.example") for a in first), (o, first)
    assert len(bts) < 1 + 2 * len(GOOD)  # bisected, not one run per domain
    for o in GOOD:
        assert rcpt(site, f"info@{o}.example") == 250
        assert rcpt(site, f"next@{o}.example") == 250
    assert rcpt(site, "x@batchbad.example") == 550  # its domain is not live


def test_many_smtp_probes_share_one_session_and_keep_their_meaning(mail_site, monkeypatch):
    """The real prober's grouped SMTP probes: one connection to the running Exim for a
    round's probes of many domains, each answer what the probe alone says, and a failing
    probe names its address (so its domain and owner)."""
    from domtool.slave import mailprobe
    from domtool.slave.backend import Probe
    from domtool.slave.probes import RealProber

    site = mail_site
    good = [
        domain(o, Alias(("user", "info"), (f"{o}@elsewhere.example",)), Alias(("user", "nul"), ()))
        for o in GOOD
    ]
    catch = domain("batchcatch", Alias(("catchall",), ("batch0@elsewhere.example",)))
    out = site.apply(DesiredState(mail=(*good, catch)))
    assert out.status in ("applied", "unchanged"), out.message
    a, p = "127.0.0.1", site.config.port
    asks = []
    for o in GOOD:
        asks += [
            ("expn", f"info@{o}.example", (f"{o}@elsewhere.example",)),
            ("expn", f"nul@{o}.example", ()),
            ("refused", f"nobody@{o}.example", ()),
        ]
    asks += [
        ("accepted", "anyone@batchcatch.example", ()),
        ("expn", "info@batch3.example", ("wrong@elsewhere.example",)),  # fails
        ("refused", "info@batch4.example", ()),  # fails: it is accepted
        ("accepted", "nobody@batch5.example", ()),  # fails: refused
    ]
    alone = [mailprobe.smtp_probe(a, p, *ask) for ask in asks]
    connects = []
    real_connect = smtplib.SMTP.connect

    def connect(self, *args, **kw):
        connects.append(args)
        return real_connect(self, *args, **kw)

    monkeypatch.setattr(smtplib.SMTP, "connect", connect)
    probes = [Probe("smtp", (a, p, *ask), "m") for ask in asks]
    grouped = RealProber().probe_many(probes, workers=4)
    assert len(connects) == 1  # one session for all 22 probes
    assert grouped == alone
    assert grouped[: len(GOOD) * 3 + 1] == [True] * (len(GOOD) * 3 + 1)
    wrong, accepted, refused = grouped[-3:]
    assert "info@batch3.example" in wrong and "routes to" in wrong
    assert "info@batch4.example" in accepted and "expected a refusal" in accepted
    assert "nobody@batch5.example" in refused and "expected acceptance" in refused
