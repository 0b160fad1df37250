"""Fixtures: a throwaway site (both CAs, the dispatcher's host certificate, a store holding
alice) and its member front door, recording why OpenSSL refused each peer."""

from __future__ import annotations

import attrs
import pytest

from domtool.dispatcher import auth, ca
from domtool.dispatcher.store import Store
from domtool.net import tls

from .loopback import Outcome, connect, member_login

SITE = "example.coop"
DISPATCHER = "dispatcher.example.coop"


@attrs.define
class Site:
    """One site's CAs, store and dispatcher listener, with helpers to connect as anyone."""

    ca_dir: object
    store: Store
    dispatcher: tls.KeyPair
    server: tls.ServerTLS
    verify_errors: list

    def host_trust(self) -> tls.Trust:
        """What members trust the dispatcher with: the host CA (and its CRL)."""
        return tls.Trust(
            ca.ca_certificate(self.ca_dir, ca.HOST), ca.current_crl(self.ca_dir, ca.HOST)
        )

    def client(self, pair: tuple[bytes, bytes]) -> tls.ClientTLS:
        """A member client presenting ``pair`` = (cert_pem, key_pem) to the dispatcher."""
        return tls.member_client(tls.KeyPair(*pair), self.host_trust(), DISPATCHER)

    def connect(self, pair: tuple[bytes, bytes]) -> Outcome:
        """Connect to the dispatcher presenting ``pair``; what each side saw."""
        return self.connect_with(self.client(pair))

    def connect_with(self, client) -> Outcome:
        """Connect any client creator to the dispatcher."""
        return connect(self.server, client, member_login(auth.member_portal(self.store)))

    def reload_crl(self) -> None:
        """What the dispatcher does when the admin tool re-signs the member CRL."""
        self.server.reload_crl(ca.current_crl(self.ca_dir, ca.MEMBER))

    def error_codes(self) -> list[int]:
        """The X509_V_ERR codes the server's verification reported so far."""
        return [e.code for e in self.verify_errors]


@pytest.fixture
def site(tmp_path) -> Site:
    """A fresh site whose store knows alice (active, not admin)."""
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, SITE)
    dispatcher = tls.KeyPair(*ca.issue_host(ca_dir, DISPATCHER))
    store = Store.open(tmp_path)
    store.add_member("alice")
    errors: list = []
    server = tls.member_front_door(
        dispatcher,
        tls.Trust(ca.ca_certificate(ca_dir, ca.MEMBER), ca.current_crl(ca_dir, ca.MEMBER)),
        errors.append,
    )
    yield Site(ca_dir, store, dispatcher, server, errors)
    store.close()
