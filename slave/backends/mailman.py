"""The Mailman 3 backend: one unit per list domain, applied through Mailman's REST API.

Mailman keeps its lists in its own database, so the unit files are not read by Mailman
itself: each unit is the desired state of one domain's lists (JSON: the domain, its
member, the web host, every list with its owners), and the index names every unit file.
The "daemon's check" and "reload" are the two commands of :mod:`domtool.slave.mailman_sync`,
which talks plain HTTP to Mailman core's REST port (never to its database):

- check (before the switch, on the staged index): every name passes Mailman's rules again,
  Mailman answers, and no list of the staged state already exists in Mailman under
  another member (or outside domtool): the sync's ledger records which member created
  each list. A failing check makes the engine bisect by owner, so only that member is
  refused.
- reload (after the switch, on ``state_dir/current/mailman/lists.json``): create missing
  domains and lists, make each list's owners exactly the configured ones. A list no
  longer in the state is left in Mailman (its mail is no longer routed to it); deleting
  it is ``domtool list rm`` (dry run unless ``--doit``), which keeps its archive.

Files and commands::

    state_dir/units/mailman/<sha256>.json   one list domain (its lists and owners)
    generation/mailman/lists.json           {"units": [unit file, ...]} (sorted)

Probes (kind ``"mailman_list"``): after a reload, each list of a changed unit exists in
Mailman with exactly its owners (read back over REST, credentials from ``rest_config``).
A rollback re-applies the previous state's owners, but keeps lists the failed generation
created (empty; they receive no mail once routing follows the previous state).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import PurePosixPath

import attrs

from domtool import validate
from domtool.model import DesiredState, ListDomain
from domtool.slave.backend import (
    Command,
    Probe,
    RenderRefused,
    Unit,
    UnitRefused,
    memo_get,
    memo_put,
)

INDEX_FILE = "lists.json"
MAX_PROBES = 50


class ListDomainRefused(UnitRefused):
    kind = "list domain"


@attrs.frozen
class MailmanConfig:
    """How this host reaches Mailman: ``rest_config`` is a JSON file (readable by the
    slave only) with ``url`` (``http://127.0.0.1:8001/3.1``), ``user``, ``password`` and
    ``ledger`` (the sync's record of which member created which list); ``live_index`` is
    ``state_dir/current/mailman/lists.json``; ``python`` runs the sync module."""

    rest_config: str
    live_index: str
    python: str = sys.executable
    node: str | None = None
    check_timeout: float = 120.0

    def sync_argv(self, verb: str, index: str) -> tuple[str, ...]:
        return (
            self.python,
            "-m",
            "domtool.slave.mailman_sync",
            verb,
            "--config",
            self.rest_config,
            index,
        )


def unit_content(d: ListDomain) -> bytes:
    """The unit of one list domain, after every value passed its grammar again."""
    problems: list[UnitRefused] = []

    def check(field: str, checker, value):
        try:
            return checker(value)
        except validate.Invalid as e:
            problems.append(ListDomainRefused(d.owner, str(d.name), field, value, str(e)))
            return None

    name = check("name", validate.check_domain, d.name)
    web = check("web_host", validate.check_domain, d.web_host)
    check("owner", validate.check_unix_name, d.owner)
    lists = []
    seen: set[str] = set()
    for i, ml in enumerate(d.lists):
        ln = check(f"lists[{i}].name", validate.check_list_name, ml.name)
        if ln is not None and ln != ml.name:
            problems.append(
                ListDomainRefused(
                    d.owner, str(d.name), f"lists[{i}].name", ml.name, "not lower-case"
                )
            )
        if ln in seen:
            problems.append(
                ListDomainRefused(d.owner, str(d.name), f"lists[{i}].name", ml.name, "twice")
            )
        seen.add(ln)
        owners = [
            check(f"lists[{i}].owners[{j}]", validate.check_email, o)
            for j, o in enumerate(ml.owners)
        ]
        if not ml.owners:
            problems.append(
                ListDomainRefused(d.owner, str(d.name), f"lists[{i}].owners", (), "no owner")
            )
        lists.append({"name": ln, "owners": sorted(set(owners))})
    if problems:
        raise RenderRefused(problems)
    data = {"domain": name, "member": d.owner, "web_host": web, "lists": lists}
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


@attrs.define
class MailmanBackend:
    """Renders list domains; checks, applies and probes through the sync module."""

    config: MailmanConfig
    name: str = "mailman"
    pure_index = True  # index() depends only on the units (the config is frozen)
    _changed: list[tuple[str, str, tuple[str, ...], str]] = attrs.Factory(list)
    _memo: dict = attrs.Factory(dict)

    def _domains(self, state: DesiredState) -> list[ListDomain]:
        node = self.config.node
        return [d for d in state.lists if node is None or node in d.nodes]

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        errors: list[UnitRefused] = []
        units: list[Unit] = []
        changed = []
        memo: dict = {}
        for d in self._domains(state):
            unit = memo_get(self._memo, d)
            if unit is None:
                try:
                    content = unit_content(d)
                except RenderRefused as e:
                    errors.extend(e.errors)
                    continue
                unit = Unit(f"lists:{str(d.name).lower()}", d.owner, "json", content)
            memo_put(memo, d, unit)
            units.append(unit)
            prev = previous.get(unit.key)
            if prev is None or prev.content != unit.content:
                for ml in d.lists:
                    changed.append((f"{ml.name}@{d.name}", d.owner, tuple(ml.owners), unit.key))
        if errors:
            raise RenderRefused(errors)
        keys = [u.key for u in units]
        if len(keys) != len(set(keys)):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise RenderRefused(
                [
                    ListDomainRefused(u.owner, u.key, "name", u.key, "twice")
                    for u in units
                    if u.key in dup
                ]
            )
        self._memo = memo
        self._changed = changed
        return sorted(units, key=lambda u: u.key)

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        for key in units:
            if not key.startswith("lists:"):
                raise ValueError(f"not a list domain unit key: {key!r}")
        data = {"units": [str(units[k]) for k in sorted(units)]}
        return {INDEX_FILE: (json.dumps(data, indent=1) + "\n").encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        staged = str(PurePosixPath(generation_dir) / self.name / INDEX_FILE)
        return (Command(self.config.sync_argv("check", staged), timeout=self.config.check_timeout),)

    def reload(self) -> tuple[Command, ...]:
        argv = self.config.sync_argv("apply", self.config.live_index)
        return (Command(argv, timeout=self.config.check_timeout),)

    def actions(self) -> dict:
        """The typed operation of this backend at the slave's edge: ``list_remove``."""
        from domtool.slave import mailman_ops

        rest = self.config.rest_config
        return {
            "list_remove": lambda owner, fq, doit: mailman_ops.remove_list(rest, owner, fq, doit)
        }

    def probes(self, state: DesiredState) -> list[Probe]:
        """Each list of the units the last :meth:`units` call changed (at most
        ``MAX_PROBES``): it exists in Mailman with exactly its owners."""
        wanted = {(fq, owner) for d in self._domains(state) for fq, owner in _lists_of(d)}
        out = []
        for fq, member, owners, _key in self._changed:
            if (fq, member) in wanted:
                target = (self.config.rest_config, fq, tuple(sorted(set(owners))))
                out.append(Probe("mailman_list", target, member))
        return sorted(out, key=lambda p: p.target[1])[:MAX_PROBES]


def _lists_of(d: ListDomain):
    for ml in d.lists:
        yield f"{ml.name}@{d.name}", d.owner


# ---------------------------------------------------------------------------
# The site's Mailman configuration (written once by the site setup, like bind's)

MAILMAN_BIN = "/usr/lib/mailman3/bin"


def site_config(
    var_dir: str,
    *,
    rest_port: int,
    lmtp_port: int,
    smtp_port: int,
    rest_user: str,
    rest_password: str,
    address: str = "127.0.0.1",
    site_owner: str = "postmaster@localhost.localdomain",
    bin_dir: str = MAILMAN_BIN,
) -> bytes:
    """``mailman.cfg`` for a Mailman core of its own: every path under ``var_dir``, a
    SQLite database there, REST and LMTP on ``address``, outgoing mail to the local MTA
    at ``smtp_port``. The MTA integration is ``NullMTA``: Exim routes list mail by the
    lookups the Exim backend renders from the model, not by Mailman's generated maps."""
    for value in (var_dir, bin_dir):
        if not value.startswith("/") or any(c in value for c in "\n\r\t $%"):
            raise ValueError(f"not a plain absolute path for mailman.cfg: {value!r}")
    for value in (rest_user, rest_password):
        if not value or any(c in value for c in "\n\r\t %:@/"):
            raise ValueError("REST credentials must be plain tokens")
    address = validate.check_ipv4(address)
    owner = validate.check_email(site_owner)
    text = f"""# domtool: this site's Mailman core. Written by the site setup.
[mailman]
layout: domtool
site_owner: {owner}

[paths.domtool]
var_dir: {var_dir}
bin_dir: {bin_dir}
pid_file: {var_dir}/master.pid
lock_file: {var_dir}/locks/master.lck

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///{var_dir}/data/mailman.db

[webservice]
hostname: {address}
port: {int(rest_port)}
admin_user: {rest_user}
admin_pass: {rest_password}

[mta]
incoming: mailman.mta.null.NullMTA
lmtp_host: {address}
lmtp_port: {int(lmtp_port)}
smtp_host: {address}
smtp_port: {int(smtp_port)}

[archiver.prototype]
enable: yes
"""
    return text.encode()
