"""Renewed TLS files picked up while running (``net/tlswatch.py``): the one file poll.

``FileWatch`` retries a change whose loading failed at every poll (the renewal job writes
a key and then its certificate, so a poll may fall between the two); ``CrlWatch``, the same
poll over a listener's CRL, tries a bad CRL again only once the file changes again. Both
keep the old files in force until a change loads.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from domtool.dispatcher import ca
from domtool.net import tls
from domtool.net.session import CrlWatch as SessionCrlWatch
from domtool.net.tlswatch import CrlWatch, FileWatch


def touch(path, seconds: int = 5) -> None:
    """A change of ``path`` the poll sees (its mtime moves on)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


class Flaky:
    """An ``on_change`` that fails its first ``failures`` calls."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError("half-written")


def test_a_failed_change_is_retried_at_each_poll_until_it_loads(tmp_path, logged):
    f = tmp_path / "cert.pem"
    f.write_bytes(b"one")
    load = Flaky(failures=2)
    watch = FileWatch([f], load, Clock())
    assert watch.check() is False and load.calls == 0  # unchanged since it was made
    touch(f)
    assert [watch.check(), watch.check(), watch.check()] == [False, False, True]
    assert load.calls == 3
    assert watch.check() is False and load.calls == 3  # loaded: nothing until the next change
    warned = [e for e in logged if e.get("log_level") == LogLevel.warn]
    assert len(warned) == 2 and warned[0]["what"] == "TLS files"


def test_without_retry_a_failed_change_waits_for_the_next_one(tmp_path):
    f = tmp_path / "crl.pem"
    f.write_bytes(b"one")
    load = Flaky(failures=1)
    watch = FileWatch([f], load, Clock(), retry=False)
    touch(f)
    assert [watch.check(), watch.check()] == [False, False]
    assert load.calls == 1
    touch(f)
    assert watch.check() is True and load.calls == 2


def test_a_missing_file_changes_nothing_and_a_started_watch_polls_on_its_clock(tmp_path):
    f = tmp_path / "key.pem"
    load = Flaky(failures=0)
    clock = Clock()
    watch = FileWatch([f, ""], load, clock, interval=30.0)
    assert watch.paths == [f] and watch.check() is False
    watch.start()
    f.write_bytes(b"now here")
    clock.advance(29)
    assert load.calls == 0
    clock.advance(1)
    assert load.calls == 1
    watch.stop()
    touch(f)
    clock.advance(60)
    assert load.calls == 1  # stopped


def test_the_crl_watch_keeps_the_old_crl_until_a_good_one_is_written(tmp_path, logged):
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    listener = tls.slave_listener(
        tls.KeyPair(*ca.issue_host(ca_dir, "ns1.example.coop")),
        tls.Trust(ca.ca_certificate(ca_dir, ca.HOST), ca.current_crl(ca_dir, ca.HOST)),
    )
    crl = tmp_path / "crl.pem"
    crl.write_bytes(ca.current_crl(ca_dir, ca.HOST))
    watch = CrlWatch(crl, listener, Clock())
    assert SessionCrlWatch is CrlWatch  # (what session.ListenerService runs)
    before = listener.trust
    crl.write_bytes(ca.current_crl(ca_dir, ca.MEMBER))  # signed by the wrong CA
    touch(crl)
    assert watch.check() is False and listener.trust == before
    errors = [e for e in logged if e.get("log_level") == LogLevel.error]
    assert len(errors) == 1 and errors[0]["what"] == "CRL"
    assert watch.check() is False  # the same bad file, unchanged
    assert sum(e.get("log_level") == LogLevel.error for e in logged) == 1  # not tried again
    ca.revoke(ca_dir, "ns1.example.coop", kind=ca.HOST)
    good = ca.current_crl(ca_dir, ca.HOST)
    crl.write_bytes(good)
    touch(crl, 10)
    assert watch.check() is True and listener.trust.crl_pem == good
    assert any(e.get("log_level") == LogLevel.info and e.get("what") == "CRL" for e in logged)
