"""The dispatcher as a Twisted service: the member listener and the ``domtool-dispatcher``
command.

One connection = one :class:`MemberProtocol` behind the member front door
(``tls.member_front_door``: member CA pinned, CRL checked, client certificate required);
its login, framing, timeouts and answers are ``session.AuthenticatedFrameProtocol``'s,
shared with the slave's listener. It only decodes: after the TLS handshake it logs the member in (``auth.login_member``)
and ignores every frame until that succeeded (with TLS 1.3 a client may send before the
server has judged its certificate); then each frame is checked in order, before any
logic: the envelope (``wire.decode_request`` with ``MEMBER_OPS``, plus ``ADMIN_OPS`` for
an admin avatar), the arguments (``protocol.read_request``, which builds the op's request object), and only then handed to the
controller (``controller.py``), whose progress and answer go back as frames with the
request's id. A handshake and login that take longer than ``handshake_timeout``, or a
connection idle for ``idle_timeout`` with nothing in flight, is closed.

:class:`DispatcherService` binds its port in ``privilegedStartService`` (backlog 1024: a
burst of member connections must not overflow the SYN queue, see docs/tls.md), resumes
the convergence of hosts with a pending change, and reloads the member CRL file when it
changes (and when ``rmuser`` re-signs it).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from domtool import protocol, wire
from domtool.dispatcher import auth
from domtool.dispatcher.controller import Controller, OpError
from domtool.dispatcher.tlspush import TlsPush
from domtool.net import session, tls
from domtool.net.tlswatch import FileWatch

log = Logger()

BACKLOG = 1024
CRL_POLL = session.CRL_POLL
#: The soft open-file limit ``main`` asks for (capped by the hard limit): one descriptor
#: per member connection; at systemd's default soft limit of 1024 the listener stops
#: accepting at about 1,010 connections and a new request is refused (bench_connections).
NOFILE = 65536


def raise_open_file_limit(want: int = NOFILE) -> int:
    """Raise the soft RLIMIT_NOFILE to ``want`` (at most the hard limit; never lowered);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class MemberProtocol(session.AuthenticatedFrameProtocol):
    """One member connection: log in after the handshake, decode, hand to the controller."""

    peer_noun = "member"
    known_errors = (OpError,)
    internal_failure = wire.Failure("internal", "internal error (see the dispatcher's log)")
    login_fault = "internal error (see the dispatcher's log)"
    factory: MemberFactory

    @property
    def member(self) -> auth.Member | None:
        return self.avatar

    def login(self, certificate: Any) -> defer.Deferred:
        return defer.ensureDeferred(auth.login_member(self.factory.portal, certificate))

    def known_failure(self, error: BaseException) -> wire.Failure:
        assert isinstance(error, OpError)
        return error.failure

    def frame_received(self, avatar: auth.Member, frame: bytes) -> None:
        # Re-read the member at each request: removed since login -> out; admin status
        # granted or withdrawn -> in force now.
        record = self.factory.controller.store.member(avatar.name)
        if record is None or not record.active:
            self.send_error(
                session.request_id(frame),
                wire.Failure("unauthorized", f"{avatar.name} is no longer a member"),
            )
            self.transport.loseConnection()
            return
        # The certificate against the CRL and pin in force NOW, not at the handshake.
        why = self.factory.session_refusal(tls.peer_certificate(self.transport), record)
        if why is not None:
            self.send_error(session.request_id(frame), wire.Failure("unauthorized", why))
            self.transport.loseConnection()
            return
        member = self.avatar = auth.Member(record.name, record.is_admin)
        allowed = self.factory.admin_ops if member.is_admin else wire.MEMBER_OPS
        try:
            request = wire.decode_request(frame, allowed)
        except wire.WireError as e:
            failure = wire.Failure("bad_request", str(e))
            if not member.is_admin:
                try:
                    admin = wire.decode_request(frame, wire.ADMIN_OPS)
                except wire.WireError:
                    pass
                else:
                    failure = wire.Failure("unauthorized", f"{admin.op} is for administrators only")
            self.send_error(session.request_id(frame), failure)
            return
        try:
            typed = protocol.read_request(request.op, request.args, admin=member.is_admin)
        except protocol.SchemaError as e:
            details = tuple(f"{p}: {m}" if p else m for p, m in e.problems[:100])
            failure = wire.Failure("bad_request", f"bad arguments for {request.op}", details)
            self.send_error(request.id, failure)
            return
        rid = request.id

        def progress(done: int, total: int, what: str) -> None:
            self.send(wire.progress(rid, done, total, what))

        self.respond(rid, self.factory.controller.handle(member, request.op, typed, progress))


class MemberFactory(session.SessionFactory):
    """Builds :class:`MemberProtocol`s sharing one controller, portal and clock."""

    protocol = MemberProtocol
    admin_ops = wire.MEMBER_OPS | wire.ADMIN_OPS

    def __init__(
        self,
        controller: Controller,
        portal: Portal,
        clock: IReactorTime,
        server_tls: Any = None,
        **timeouts: float,
    ) -> None:
        super().__init__(portal, clock, **timeouts)
        self.controller = controller
        self.server_tls = server_tls  # its current CRL re-checks each request

    def session_refusal(self, certificate: Any, record: Any) -> str | None:
        """Why this session's certificate may not make another request, or None."""
        from domtool.net.revocation import session_refusal

        crl = None if self.server_tls is None else self.server_tls.trust.crl_pem
        return session_refusal(certificate, crl, record)


tls_factory = session.tls_factory


class DispatcherService(session.ListenerService):
    """Listens for members (bound in ``privilegedStartService``), converges pending hosts,
    and picks up a renewed member CRL file."""

    backlog = BACKLOG

    def __init__(
        self,
        config: Any,
        controller: Controller,
        server_tls: tls.ServerTLS,
        reactor: Any,
        eval_pool: Any = None,
    ) -> None:
        super().__init__(config, server_tls, reactor, config.member_crl)
        self.controller = controller
        self.eval_pool = eval_pool  # dispatcher.evalpool.EvalPool, closed at stop

    def listen_factory(self) -> MemberFactory:
        return MemberFactory(
            self.controller,
            auth.member_portal(self.controller.store),
            self.reactor,
            self.server_tls,
            **self.timeouts(),
        )

    def reload_own(self, own: tls.KeyPair) -> None:
        """The renewed dispatcher certificate, for members and for the links to slaves."""
        super().reload_own(own)
        self._own = own
        self.relink()

    def relink(self) -> None:
        """New connections to slaves with the current certificate and host CRL (renewed
        files: ``tlswatch``); open links keep theirs until they reconnect."""
        own = getattr(self, "_own", None) or tls.KeyPair.from_files(
            self.config.certificate, self.config.key
        )
        host_trust = tls.Trust.from_files(self.config.host_ca, self.config.host_crl)
        for link in self.controller.coordinator.links.values():
            if hasattr(link, "client_tls"):
                link.client_tls = tls.slave_client(own, host_trust, link.host)

    def _host_files_changed(self) -> None:
        self.relink()
        self.tls_push.push()

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        super().startService()
        # Slaves get the host CRL and their renewed certificates (tlspush.py).
        self.tls_push = TlsPush(
            self.controller.coordinator.links,
            getattr(self.config, "host_crl", None),
            getattr(self.config, "hosts_dir", None),
            self.reactor,
            getattr(self.config, "tls_push", 3600.0),
        )
        self.host_crl = FileWatch(
            self.tls_push.files(),
            self._host_files_changed,
            self.reactor,
            getattr(self.config, "tls_poll", CRL_POLL),
        )
        self.host_crl.start()
        self.tls_push.start()
        if self.eval_pool is not None:
            self.eval_pool.warm()
        self.controller.coordinator.resume()

    def stopService(self) -> defer.Deferred | None:  # noqa: N802 (Twisted API)
        if hasattr(self, "host_crl"):
            self.host_crl.stop()
            self.tls_push.stop()
        self.controller.coordinator.stop()
        if self.eval_pool is not None:
            self.eval_pool.close()
        return super().stopService()


def make_service(config: Any, reactor: Any) -> DispatcherService:
    """The dispatcher's service from its configuration (``config.DispatcherConfig``)."""
    from twisted.internet.endpoints import HostnameEndpoint

    from domtool.dispatcher.apply import Coordinator
    from domtool.dispatcher.evalpool import EvalPool
    from domtool.dispatcher.links import TLSLink
    from domtool.dispatcher.signed_grants import SignedGrantFiles
    from domtool.dispatcher.store import Store

    own = tls.KeyPair.from_files(config.certificate, config.key)
    server_tls = tls.member_front_door(
        own,
        tls.Trust.from_files(config.member_ca, config.member_crl),
        lambda e: log.warn("refused a member certificate: {why}", why=e.reason),
    )
    if config.host_crl is None:  # config.load requires it; a hand-built config too
        raise ValueError("host_crl is required: a revoked slave must be refused")
    host_trust = tls.Trust.from_files(config.host_ca, config.host_crl)
    links = {
        s.node: TLSLink(
            s.host,
            HostnameEndpoint(reactor, s.address, s.port),
            tls.slave_client(own, host_trust, s.host),
            reactor,
            timeout=config.slave_timeout,
        )
        for s in config.slaves
    }
    store = Store.open(config.state_dir)
    coordinator = Coordinator(
        store, links, reactor, retry_initial=config.retry_initial, retry_max=config.retry_max
    )
    pool = EvalPool(reactor)  # members' files are evaluated off the reactor thread
    controller = Controller(
        store,
        config.site,
        coordinator,
        site_domains=config.site_domains,
        quota_defaults=config.quotas,
        ca_dir=config.ca_dir,
        on_crl=server_tls.reload_crl,
        check_source=pool.check,
        check_each=pool.check_each,
        signed_grants=SignedGrantFiles(Path(config.state_dir) / "signed-grants"),
    )
    # The host CRL (required) is watched in startService: a change relinks every slave
    # link with the current CRL, which each link's per-request check then reads.
    return DispatcherService(config, controller, server_tls, reactor, eval_pool=pool)


def main(argv: list[str] | None = None) -> int:
    """``domtool-dispatcher --config PATH``: run the dispatcher until stopped."""
    from domtool.dispatcher import config as dispatcher_config

    parser = argparse.ArgumentParser(
        prog="domtool-dispatcher", description="Run the site's domtool dispatcher."
    )
    parser.add_argument("--config", required=True, help="the dispatcher's TOML configuration")
    args = parser.parse_args(argv)
    try:
        config = dispatcher_config.load(args.config)
    except dispatcher_config.ConfigError as e:
        print(f"domtool-dispatcher: {e}", file=sys.stderr)
        return 2
    raise_open_file_limit()
    return session.serve(
        "domtool-dispatcher", lambda reactor: make_service(config, reactor), (OSError, ValueError)
    )


if __name__ == "__main__":
    sys.exit(main())
