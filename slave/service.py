"""The slave agent's network face: a mutual-TLS listener that only its dispatcher may use.

Layers, from the socket in:

- TLS (``domtool.net.tls.slave_listener``): the host CA pinned with its CRL, a client
  certificate required. ``TLSMemoryBIOFactory`` wraps :class:`SlaveFactory`.
- :class:`SlaveProtocol` (a ``net.session.AuthenticatedFrameProtocol``, shared
  with the dispatcher's member listener; ``MAX_LENGTH = wire.MAX_FRAME``): after the
  handshake it logs the peer in (``cred.login_host`` against
  ``cred.host_portal({dispatcher})``); a refused peer gets one ``unauthorized`` error frame
  and the connection is closed. Frames that arrive before a successful login are ignored
  (with TLS 1.3 the client may write before the server has judged its certificate). Then
  every frame: ``wire.decode_request(frame, SLAVE_OPS)`` → ``ops.parse`` (schema and size
  limits) → ``Agent.handle`` → one response frame with the request's id. Errors are
  ``wire.error`` frames of kind ``bad_request``, ``unauthorized``, ``refused`` or ``failed``.
  The protocol decides nothing itself.
- :class:`SlaveService`: binds in ``privilegedStartService``, starts the agent (engine
  recovery, state load), re-reads the CRL file when it changes, stops listening on stop.
- :func:`main`: the ``domtool-slave --config PATH`` entry point.

Timeouts: a connection must complete its handshake and login within
``handshake_timeout`` seconds, and is closed after ``idle_timeout`` seconds without a frame
while no request is running.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.cred.portal import Portal
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from domtool import wire
from domtool.net import cred, session, tls
from domtool.slave import ops
from domtool.slave.agent import Agent, AgentError
from domtool.slave.config import ConfigError, SlaveConfig
from domtool.slave.tlsupdate import TlsUpdater

__all__ = [
    "BACKENDS",
    "SlaveFactory",
    "SlaveProtocol",
    "SlaveService",
    "build_backends",
    "main",
    "make_service",
    "tls_factory",
]

log = Logger()

CRL_POLL = session.CRL_POLL  # seconds between checks of the CRL file
BACKLOG = 64


class SlaveProtocol(session.AuthenticatedFrameProtocol):
    """One connection from the dispatcher: decode frames, hand them to the agent, answer."""

    log_sessions = True
    known_errors = (AgentError,)
    internal_failure = wire.Failure("failed", "internal error (see the slave's log)")
    factory: SlaveFactory

    @property
    def peer(self) -> cred.Host | None:
        return self.avatar

    def login(self, certificate: Any) -> defer.Deferred:
        return defer.ensureDeferred(cred.login_host(self.factory.portal, certificate))

    def known_failure(self, error: BaseException) -> wire.Failure:
        assert isinstance(error, AgentError)
        return wire.Failure(error.kind, error.message, tuple(error.details))

    def frame_received(self, avatar: cred.Host, frame: bytes) -> None:
        # Decoding a complete prepare of 10,000 domains makes millions of objects: with
        # the collector off, and frozen after (slave/gcpolicy.py).
        policy = getattr(self.factory, "gc_policy", None)
        if policy is not None:
            policy.call(self._frame_received, avatar, frame)
        else:
            self._frame_received(avatar, frame)

    def _frame_received(self, avatar: cred.Host, frame: bytes) -> None:
        server_tls = getattr(self.factory, "server_tls", None)
        if server_tls is not None:  # the dispatcher's certificate against the CRL in force now
            from domtool.net import revocation, tls

            cert = tls.peer_certificate(self.transport)
            if cert is not None and revocation.revoked(cert, server_tls.trust.crl_pem):
                why = f"certificate {cert.serial_number:x} has been revoked"
                self.send_error(session.request_id(frame), wire.Failure("unauthorized", why))
                self.transport.loseConnection()
                return
        try:
            request = wire.decode_request(frame, wire.SLAVE_OPS)
        except wire.WireError as e:
            self.send_error(session.request_id(frame), wire.Failure("bad_request", str(e)))
            return
        try:
            args = ops.parse(request.op, request.args)
        except ops.BadArgs as e:
            failure = wire.Failure(
                "bad_request", f"bad arguments for {request.op}", e.details[:100]
            )
            self.send_error(request.id, failure)
            return
        if request.op == "tls_update":  # the listener's own files, not the agent's state
            self.respond(request.id, defer.maybeDeferred(self.factory.tls_update, args))
            return
        self.respond(request.id, self.factory.agent.handle(request.op, args))


class SlaveFactory(session.SessionFactory):
    """Builds :class:`SlaveProtocol`s sharing one agent, portal and clock."""

    protocol = SlaveProtocol

    def __init__(
        self,
        agent: Agent,
        portal: Portal,
        clock: IReactorTime,
        server_tls: Any = None,
        **timeouts: float,
    ) -> None:
        super().__init__(portal, clock, **timeouts)
        self.agent = agent
        self.server_tls = server_tls  # its current CRL re-checks each request


tls_factory = session.tls_factory


# ---------------------------------------------------------------------------
# Backends and engine from the configuration


def _apache(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends.apache import ApacheBackend, ApacheConfig
    from domtool.slave.backends.limits import cgi_limits

    # RLimitCPU/NPROC/MEM per member from the state's member policies (limits part).
    return ApacheBackend(_settings(ApacheConfig, "apache", table, config), cgi_limits_of=cgi_limits)


def _limits(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends import limits

    values = dict(table)
    values.setdefault("live_index", f"{config.state_dir}/current/limits/{limits.INDEX_FILE}")
    return limits.LimitsBackend(_settings(limits.LimitsConfig, "limits", values, config))


def _bind(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends import bind

    return bind.BindBackend(_settings(bind.BindConfig, "bind", table, config))


def _mailman(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends import mailman

    values = dict(table)
    values.setdefault("live_index", f"{config.state_dir}/current/mailman/{mailman.INDEX_FILE}")
    return mailman.MailmanBackend(_settings(mailman.MailmanConfig, "mailman", values, config))


def _exim(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends import exim

    settings = dict(table)
    settings.setdefault("state_dir", config.state_dir)
    return exim.EximBackend(_settings(exim.EximConfig, "exim", settings, config))


def _nft(table: Mapping[str, Any], config: SlaveConfig) -> Any:
    from domtool.slave.backends import nft

    return nft.NftBackend(_settings(nft.NftConfig, "nft", table, config))


def _settings(cls: type, name: str, table: Mapping[str, Any], config: SlaveConfig) -> Any:
    fields = {f.name for f in attrs.fields(cls)}
    unknown = sorted(set(table) - fields)
    if unknown:
        raise ConfigError(f"[backends.{name}]", [f"unknown key(s): {', '.join(unknown)}"])
    # TOML arrays become tuples (the settings classes are frozen values).
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    if "node" in fields and "node" not in values:
        values["node"] = config.node_name
    if "state_dir" in fields and "state_dir" not in values:
        values["state_dir"] = config.state_dir
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"[backends.{name}]", [str(e)]) from None


# The backends a slave can drive: a closed table (a config names them; nothing else can).
BACKENDS: dict[str, Callable[[Mapping[str, Any], SlaveConfig], Any]] = {
    "apache": _apache,
    "bind": _bind,
    "mailman": _mailman,
    "exim": _exim,
    "limits": _limits,
    "nft": _nft,
}


def build_backends(config: SlaveConfig) -> dict[str, Any]:
    """The enabled backends, by name, built from their config tables."""
    unknown = sorted(set(config.backends) - set(BACKENDS))
    if unknown:
        raise ConfigError(
            "[backends]", [f"unknown backend(s): {', '.join(unknown)}; known: {sorted(BACKENDS)}"]
        )
    return {name: BACKENDS[name](table, config) for name, table in config.backends.items()}


def build_engine(config: SlaveConfig) -> Any:
    """The apply engine over the real file system, process runner and clock."""
    from domtool.slave import engine, probes, seams

    return engine.Engine(
        config.state_dir,
        build_backends(config),
        seams.RealFileSystem(),
        seams.SubprocessRunner(),
        seams.RealClock(),
        probes.RealProber(),
        # rndc reload ZONE queues the load: ask again soon rather than every 0.1 s
        probe_interval=0.02,
        check_workers=2,  # per-unit checkers (named-checkzone) two at a time
        probe_workers=16,  # a round of many new zones and vhosts probes them together
    )


# ---------------------------------------------------------------------------
# The service


class SlaveService(session.ListenerService):
    """Listens for the dispatcher (bound in ``privilegedStartService``), starts the agent,
    and picks up a renewed CRL file."""

    backlog = BACKLOG

    def __init__(
        self,
        config: SlaveConfig,
        agent: Agent,
        server_tls: tls.ServerTLS,
        reactor: Any,
    ) -> None:
        super().__init__(config, server_tls, reactor, config.crl)
        self.agent = agent
        self.started: defer.Deferred | None = None
        self.gc_policy: Any = None  # slave.gcpolicy.GcPolicy (make_service sets it)
        self._idle_gc: Any = None

    def listen_factory(self) -> SlaveFactory:
        portal = cred.host_portal(set(self.config.dispatcher))
        factory = SlaveFactory(self.agent, portal, self.reactor, self.server_tls, **self.timeouts())
        factory.tls_update = TlsUpdater(self.config, self.server_tls).update
        factory.gc_policy = self.gc_policy
        return factory

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        super().startService()
        self.started = self.agent.start()
        self.started.addErrback(lambda f: log.failure("the agent failed to start", f))
        if self.gc_policy is not None:
            from twisted.internet.task import LoopingCall

            from domtool.slave.gcpolicy import IDLE_COLLECT

            policy, agent = self.gc_policy, self.agent
            self._idle_gc = LoopingCall(policy.idle_collect, lambda: agent.pending_txid is None)
            self._idle_gc.clock = self.reactor
            self._idle_gc.start(IDLE_COLLECT, now=False)

    def stopService(self) -> defer.Deferred | None:  # noqa: N802 (Twisted API)
        stopped = super().stopService()
        if self._idle_gc is not None and self._idle_gc.running:
            self._idle_gc.stop()
        self.agent.databases.close()  # the database servers' admin connections
        return stopped


def make_service(
    config: SlaveConfig,
    reactor: Any,
    engine: Any = None,
    run_blocking: Callable[..., Any] | None = None,
) -> SlaveService:
    """The slave's service from its configuration (``engine`` built from it if not given)."""
    own = tls.KeyPair.from_files(config.certificate, config.key)
    trust = tls.Trust.from_files(config.ca, config.crl)
    server_tls = tls.slave_listener(
        own, trust, lambda e: log.warn("refused a peer certificate: {why}", why=e.reason)
    )
    if engine is None:
        engine = build_engine(config)
    if run_blocking is None:
        run_blocking = threads.deferToThread
    from domtool.slave.gcpolicy import GcPolicy

    gc_policy = GcPolicy()  # the collector off during blocking work, then freeze
    run_blocking = gc_policy.wrap(run_blocking)
    from domtool.slave.dbagent import DatabaseOps, build_servers

    databases = DatabaseOps(
        build_servers(config.databases),
        audit_path=f"{config.state_dir}/agent/db-audit.jsonl",
        host=config.host,
        run_blocking=run_blocking,
    )

    from domtool.slave.snapshot import Snapshotter

    grant_book = None
    if config.grant_keys:
        from domtool.slave.verified import GrantBook

        grant_book = GrantBook.from_files(
            config.grant_keys, os.path.join(config.state_dir, "agent", "grant-serials.json")
        )
    else:
        log.warn(
            "no grant_keys configured: this slave takes members' grants on the dispatcher's "
            "word and does not re-check domain ownership"
        )
    agent = Agent(
        engine,
        host=config.host,
        node=config.node_name,
        state_dir=config.state_dir,
        clock=reactor,
        prepare_timeout=config.prepare_timeout,
        run_blocking=run_blocking,
        actions=backend_actions(getattr(engine, "backends", {})),
        databases=databases,
        grant_book=grant_book,
        snapshotter=Snapshotter(os.path.join(config.state_dir, "tls")),
    )
    from domtool.slave.vmail import mailboxes_for

    agent.mailboxes = mailboxes_for(getattr(engine, "backends", {}), config.state_dir)
    service = SlaveService(config, agent, server_tls, reactor)
    service.gc_policy = gc_policy
    return service


def backend_actions(backends: Mapping[str, Any]) -> dict[str, Any]:
    """The typed operations the backends offer (``actions()``: op name -> callable)."""
    out: dict[str, Any] = {}
    for b in backends.values():
        out.update(getattr(b, "actions", dict)())
    return out


def main(argv: list[str] | None = None) -> int:
    """``domtool-slave --config PATH``: run the slave agent until stopped."""
    from domtool.slave import config as slave_config

    parser = argparse.ArgumentParser(
        prog="domtool-slave", description="Run this host's domtool slave agent."
    )
    parser.add_argument("--config", required=True, help="the slave's TOML configuration file")
    args = parser.parse_args(argv)
    try:
        config = slave_config.load(args.config)
    except ConfigError as e:
        print(f"domtool-slave: {e}", file=sys.stderr)
        return 2
    return session.serve(
        "domtool-slave",
        lambda reactor: make_service(config, reactor),
        (ConfigError, OSError, ValueError),
    )


if __name__ == "__main__":
    sys.exit(main())
