"""The dispatcher's database ops: ``domtool db create|drop|list|passwd|grant``.

Each member op is checked here before any host is contacted, and so before any SQL runs:

- ``kind`` is ``postgres`` or ``mysql``; every database and role name passes
  ``domtool.dbnames.check_name`` for the member (the grammar, the member's prefix
  ``alice`` / ``alice_*``, the servers' reserved names);
- the name is the member's and no other's: when another member's name is a longer
  prefix of it (``alice_b_x`` with a member ``alice_b``), it is that member's and refused;
- ``create`` counts the member's databases of both kinds as the server reports them
  (``db_list``) against the ``databases`` quota.

The arguments' schemas are ``domtool.protocol.MEMBER_REQUESTS``'. Then the op goes to the
site's database host (the first node with the ``db`` role) as the typed slave op of the
same name (``domtool.protocol.DbArgs`` and its siblings), which checks it all
again. ``drop`` is a dry run (what would go, with its size) unless ``apply``. Every
change and refusal is audited in the store; a password is never stored, logged or
echoed. ``usage(member)`` is what ``domtool-admin quota USER`` shows of databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import defer

from domtool import dbnames, protocol, wire
from domtool.dispatcher.auth import Member
from domtool.dispatcher.links import LinkError, RemoteError
from domtool.dispatcher.opbase import OpError
from domtool.protocol import DbArgs, DbGrantArgs, DbListArgs, DbPasswdArgs
from domtool.validate import Invalid

if TYPE_CHECKING:
    from domtool.dispatcher.controller import Controller

__all__ = ["Databases"]


def _reply(answer: Any, **extra: Any) -> dict[str, Any]:
    """The member's answer (``protocol.DbReply``): the slave's answer (a ``Db*Answer``)
    with what the dispatcher adds (``extra``)."""
    return protocol.DbReply(**attrs.asdict(answer, recurse=False), **extra).to_json()


def _error(kind: str, message: str, details: tuple[str, ...] = ()) -> Exception:

    return OpError(kind, message, details)


class Databases:
    """The ``db_*`` member ops of a :class:`~domtool.dispatcher.controller.Controller`
    (its store, site, coordinator and quota limits)."""

    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self._lock = defer.DeferredLock()

    def ops(self) -> dict[str, Callable]:
        return {
            "db_create": self.create,
            "db_drop": self.drop,
            "db_list": self.list,
            "db_passwd": self.passwd,
            "db_grant": self.grant,
        }

    # -- checks ----------------------------------------------------------------------

    def host(self) -> str:
        """The site's database host: the first node with the ``db`` role."""
        hosts = self.c.site.nodes_with("db")
        if not hosts:
            raise _error("refused", "this site has no database host (no node has the db role)")
        return hosts[0]

    def _name(self, member: str, value: str, what: str) -> str:
        try:
            name = dbnames.check_name(value, member, what)
        except Invalid as e:
            raise _error("refused", str(e)) from None
        members = [m.name for m in self.c.store.members()]
        owner = dbnames.owner_of(name, members)
        if owner not in (None, member):
            raise _error("refused", f"{what} {name!r} is under {owner}'s prefix, not {member}'s")
        return name

    async def _call(self, op: str, args: Any) -> Any:
        """The database host's answer to ``op``, decoded (``protocol.SLAVE_ANSWERS``)."""
        host = self.host()
        try:
            return await self.c.coordinator.ask(host, op, args)
        except LinkError as e:
            raise _error("failed", f"the database host {host} is unreachable: {e}") from None
        except RemoteError as e:
            kind = e.kind if e.kind in wire.ERROR_KINDS else "failed"
            raise _error(kind, f"{host}: {e.message}", tuple(e.details)) from None

    def _audit(self, who: str, action: str, detail: dict[str, Any], outcome: str) -> None:
        self.c.store.audit(who, action, detail, outcome)

    async def _audited(self, who: str, action: str, detail: dict, fn) -> dict[str, Any]:

        try:
            result = await fn()
        except OpError as e:
            self._audit(who, action, {**detail, "why": e.failure.message[:300]}, "refused")
            raise
        self._audit(who, action, detail, "applied")
        return result

    # -- member ops --------------------------------------------------------------------

    async def create(self, member: Member, args, progress) -> dict[str, Any]:
        kind, me = args.kind, member.name
        detail = {"kind": kind, "name": args.name}

        async def run() -> dict[str, Any]:
            name = self._name(me, args.name, "a database name")
            await self._lock.acquire()
            try:
                held = await self._call("db_list", DbListArgs(me))
                mine = held.databases
                if any(d.kind == kind and d.name == name for d in mine):
                    raise _error("refused", f"{me} already has the {kind} database {name}")
                limit = self.c._limits(me)["databases"]
                if len(mine) >= limit:
                    raise _error(
                        "policy",
                        f"{me} has {len(mine)} databases, the quota is {limit}; drop one or "
                        "ask an administrator to raise it (domtool-admin set-quota)",
                    )
                progress(1, 2, f"creating {kind} database {name}")
                result = await self._call("db_create", DbArgs(kind, me, name))
            finally:
                self._lock.release()
            progress(2, 2, f"{kind} database {name} created")
            quota = protocol.DbQuota(len(mine) + 1, limit)
            return _reply(result, host=self.host(), quota=quota)

        return await self._audited(me, "db_create", detail, run)

    async def drop(self, member: Member, args, progress) -> dict[str, Any]:
        kind, me, apply = args.kind, member.name, bool(args.apply)
        detail = {"kind": kind, "name": args.name, "apply": apply}

        async def run() -> dict[str, Any]:
            name = self._name(me, args.name, "a database name")
            if not apply:
                held = await self._call("db_list", DbListArgs(me))
                found = [d for d in held.databases if d.kind == kind and d.name == name]
                if not found:
                    raise _error("refused", f"{me} has no {kind} database {name}")
                return protocol.DbReply(
                    kind=kind,
                    name=name,
                    apply=False,
                    size=found[0].size,
                    message=f"dry run: would drop {kind} database {name} "
                    f"({found[0].size} bytes); pass --doit to drop it",
                ).to_json()
            result = await self._call("db_drop", DbArgs(kind, me, name))
            return _reply(result, apply=True, message=f"dropped {kind} database {name}")

        if not apply:
            return await run()  # a dry run changes nothing: not audited
        return await self._audited(me, "db_drop", detail, run)

    async def list(self, member: Member, args, progress) -> dict[str, Any]:
        result = await self._call("db_list", DbListArgs(member.name))
        limit = self.c._limits(member.name)["databases"]
        return _reply(result, quota=protocol.DbQuota(len(result.databases), limit))

    async def passwd(self, member: Member, args, progress) -> dict[str, Any]:
        kind, me = args.kind, member.name
        detail = {"kind": kind, "role": args.role}  # never the password

        async def run() -> dict[str, Any]:
            role = self._name(me, args.role, "a role name")
            if not args.password:
                raise _error("refused", "the password is empty")
            answer = await self._call("db_passwd", DbPasswdArgs(kind, me, role, args.password))
            return _reply(answer)

        return await self._audited(me, "db_passwd", detail, run)

    async def grant(self, member: Member, args, progress) -> dict[str, Any]:
        kind, me = args.kind, member.name
        detail = {"kind": kind, "database": args.database, "role": args.role}

        async def run() -> dict[str, Any]:
            database = self._name(me, args.database, "a database name")
            role = self._name(me, args.role, "a role name")
            return _reply(await self._call("db_grant", DbGrantArgs(kind, me, database, role)))

        return await self._audited(me, "db_grant", detail, run)

    # -- admin ------------------------------------------------------------------------

    async def usage(self, member: str) -> dict[str, Any]:
        """The member's databases with their sizes as the servers report them, or why
        they could not be asked (``error``)."""
        if not self.c.site.nodes_with("db"):
            return {"databases": [], "total_size": 0}
        try:
            result = await self._call("db_list", DbListArgs(member))
        except Exception as e:  # noqa: BLE001 - reported beside the rest of the quota answer
            return {"databases": [], "total_size": 0, "error": str(e)}
        dbs = result.databases
        out = {"databases": [d.to_json() for d in dbs], "total_size": sum(d.size or 0 for d in dbs)}
        if result.errors:
            out["error"] = "; ".join(f"{k}: {v}" for k, v in sorted(result.errors.items()))
        return out
