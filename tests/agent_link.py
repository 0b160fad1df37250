"""A SlaveLink to the real slave agent in-process, for dispatcher tests that run against
both a :class:`~domtool.dispatcher.testing.FakeSlave` and the real agent: ``ops.parse``
then ``Agent.handle``, with arguments and answers through a JSON round trip as over the
wire. It needs the dispatcher's link errors and the slave's ops, so it lives here and not
in either package (``tests/test_purity.py``: neither imports the other)."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet import defer

from domtool.dispatcher.links import LinkError, RemoteError
from domtool.slave import ops
from domtool.slave.agent import AgentError


@attrs.define
class AgentLink:
    """A SlaveLink to the real slave agent (``domtool.slave.agent.Agent``) in-process."""

    host: str
    agent: Any
    up: bool = True
    calls: list[tuple[str, dict]] = attrs.field(factory=list)

    def call(self, op: str, args: dict[str, Any]) -> defer.Deferred:
        args = json.loads(json.dumps(args))
        self.calls.append((op, args))
        if not self.up:
            return defer.fail(LinkError(f"connection to {self.host} refused"))
        try:
            parsed = ops.parse(op, args)
        except ops.BadArgs as e:
            return defer.fail(RemoteError("bad_request", f"bad arguments for {op}", e.details))

        def translate(failure):
            failure.trap(AgentError)
            e = failure.value
            raise RemoteError(e.kind, e.message, tuple(e.details))

        d = self.agent.handle(op, parsed)
        d.addCallback(lambda r: json.loads(json.dumps(r)))
        d.addErrback(translate)
        return d
