"""The real prober: after a reload, ask the running daemon whether it serves what it should.

The engine calls ``probe(Probe)`` through the :class:`~domtool.slave.engine.Prober` seam
and gets ``True`` or a reason string. Kinds (see ``domtool.slave.backend.Probe``):

- ``"dns"``: (server, port, qname, rtype, expected SOA serial or None). One UDP query
  with dnspython (if it is not installed, the probe says so and fails); the answer must
  be authoritative NOERROR with an answer of that type, and for SOA with a serial, that
  serial.
- ``"http"``: (address, port, host header, expected status[, URL path]). One GET with
  ``http.client`` (no redirects followed, no proxy from the environment), the status
  must match.
- ``"mailman_list"``: (REST config file, list address, owners). The list exists in
  Mailman core and its owners are exactly these (``domtool.slave.mailman_rest``).
- ``"smtp"``: (address, port, mode, address, expected): an SMTP EXPN or RCPT on
  loopback (``domtool.slave.mailprobe``). :meth:`RealProber.probe_many` asks the SMTP
  probes of one daemon in shared sessions (one connection, many EXPN and RCPT).
- ``"nft_table"``: (nft, table, chain, digest): ``nft list chain inet TABLE CHAIN``
  shows that member's chain with this version's digest (``domtool.slave.backends.nft``).

:class:`FakeProber` answers as a test says and records what it was asked.

Probes talk to the daemons on the host's own addresses (loopback in tests); they never
resolve names through the system resolver.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from domtool.slave.backend import Probe


@attrs.define
class RealProber:
    """Probes daemons over the network seam of the standard library (and dnspython)."""

    timeout: float = 2.0

    def probe(self, probe: Probe) -> bool | str:
        try:
            if probe.kind == "http":
                return self._http(*probe.target)
            if probe.kind == "dns":
                return self._dns(*probe.target)
            if probe.kind == "mailman_list":
                return self._mailman_list(*probe.target)
            if probe.kind == "nft_table":
                from domtool.slave.backends.nft import probe_table

                return probe_table(*probe.target)
            if probe.kind == "smtp":
                from domtool.slave.mailprobe import smtp_probe

                return smtp_probe(*probe.target, timeout=self.timeout)
        except (TypeError, ValueError) as exc:
            return f"bad {probe.kind} probe target {probe.target!r}: {exc}"
        return f"unknown probe kind {probe.kind!r}"

    def probe_many(self, probes: Sequence[Probe], workers: int = 1) -> list[bool | str]:
        """The answers to many probes, in order, as :meth:`probe` would give each: the SMTP
        probes of one daemon share sessions (one connection, many EXPN and RCPT, up to
        ``mailprobe.SESSION_MAX`` each) instead of one connection and one forked Exim
        each; the others are asked one by one. Up to ``workers`` at a time."""
        from domtool.slave import mailprobe

        answers: list[bool | str | None] = [None] * len(probes)
        sessions: dict[tuple, list[int]] = {}
        jobs: list[tuple[bool, list[int]]] = []  # (one SMTP session?, the probes' indexes)
        for i, p in enumerate(probes):
            target = p.target
            if p.kind == "smtp" and isinstance(target, tuple) and len(target) == 5:
                sessions.setdefault((target[0], target[1]), []).append(i)
            else:
                jobs.append((False, [i]))
        for idx in sessions.values():
            for k in range(0, len(idx), mailprobe.SESSION_MAX):
                jobs.append((True, idx[k : k + mailprobe.SESSION_MAX]))

        def run(job: tuple[bool, list[int]]) -> None:
            session, group = job
            if not session:
                answers[group[0]] = self.probe(probes[group[0]])
                return
            address, port = probes[group[0]].target[:2]
            try:
                got = mailprobe.smtp_probe_many(
                    address, int(port), [probes[i].target[2:] for i in group], self.timeout
                )
            except (TypeError, ValueError) as exc:
                got = [f"bad smtp probe target {probes[i].target!r}: {exc}" for i in group]
            for i, answer in zip(group, got, strict=True):
                answers[i] = answer

        if workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                list(pool.map(run, jobs))
        else:
            for job in jobs:
                run(job)
        return answers  # type: ignore[return-value]

    def _http(self, address: str, port: int, host: str, status: int, path: str = "/"):
        where = f"http://{host}{path} at {address}:{port}"
        if not path.startswith("/") or any(c in path for c in " \r\n") or "\n" in host:
            return f"{where}: bad path or host"
        conn = http.client.HTTPConnection(address, int(port), timeout=self.timeout)
        try:
            conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            conn.putheader("Connection", "close")
            conn.endheaders()
            resp = conn.getresponse()
            resp.read(65536)
        except (OSError, http.client.HTTPException) as exc:
            return f"{where}: {exc or type(exc).__name__}"
        finally:
            conn.close()
        if resp.status != int(status):
            return f"{where} answered {resp.status}, expected {status}"
        return True

    def _mailman_list(self, rest_config: str, fqdn: str, owners) -> bool | str:
        from domtool.slave import mailman_rest

        try:
            client = mailman_rest.Client(mailman_rest.RestConfig.load(rest_config), self.timeout)
            have = sorted(client.owners(fqdn))
        except (OSError, ValueError, mailman_rest.RestError) as exc:
            return f"list {fqdn}: {exc}"
        if have != sorted(owners):
            return f"list {fqdn}: owners {', '.join(have) or '(none)'}, not {', '.join(owners)}"
        return True

    def _dns(self, server: str, port: int, qname: str, rtype: str, serial: int | None):
        try:
            import dns.exception
            import dns.flags
            import dns.message
            import dns.query
            import dns.rcode
            import dns.rdatatype
        except ImportError:
            return "dnspython is not installed: cannot probe DNS"
        where = f"{qname} {rtype} at {server}:{port}"
        query = dns.message.make_query(qname, rtype)
        try:
            answer = dns.query.udp(query, server, port=int(port), timeout=self.timeout)
        except (OSError, dns.exception.DNSException) as exc:
            return f"{where}: {exc or type(exc).__name__}"
        if answer.rcode() != dns.rcode.NOERROR:
            return f"{where}: {dns.rcode.to_text(answer.rcode())}"
        if not answer.flags & dns.flags.AA:
            return f"{where}: answer is not authoritative"
        want = dns.rdatatype.from_text(rtype)
        rrsets = [r for r in answer.answer if r.rdtype == want]
        if not rrsets:
            return f"{where}: no {rtype} in the answer"
        if serial is not None and want == dns.rdatatype.SOA:
            got = rrsets[0][0].serial
            if got != int(serial):
                return f"{where}: serial {got}, expected {serial}"
        return True


@attrs.define
class FakeProber:
    """A prober for tests: ``answer(probe)`` decides (default: every probe passes);
    ``probed`` records every probe asked, in order."""

    answer: Callable[[Probe], bool | str] = lambda probe: True
    probed: list[Probe] = attrs.field(factory=list)

    def probe(self, probe: Probe) -> bool | str:
        self.probed.append(probe)
        return self.answer(probe)
