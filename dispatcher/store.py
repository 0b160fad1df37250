"""The dispatcher's knowledge in embedded SQLite: members, grants, sources, generations, audit.

One file (``<state_dir>/domtool.sqlite3``, mode 0600) opened by the dispatcher only.
Every write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any
error), so a crash leaves either the whole change or none of it. The schema is versioned:
``schema_version`` holds the number of migrations applied, ``MIGRATIONS`` lists them in
order, and opening a database applies the missing ones (a database newer than this code
is refused rather than misread).

Synchronous on purpose: calls are small and local; the Twisted side may run them in a
thread if they ever show up in latency figures.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrs import frozen

from domtool import identity, perms
from domtool.perms import Permissions
from domtool.validate import Invalid

DB_NAME = "domtool.sqlite3"

# Grant classes (domain, path, user, group): the ones domtool.perms defines.
GRANT_CLASSES = perms.CLASSES

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE members (
        name TEXT PRIMARY KEY,
        added TEXT NOT NULL,
        removed TEXT,
        is_admin INTEGER NOT NULL DEFAULT 0,
        cert_serial TEXT
    );
    CREATE TABLE grants (
        member TEXT NOT NULL REFERENCES members(name),
        class TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (member, class, value)
    );
    CREATE INDEX grants_by_value ON grants (class, value);
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        member TEXT NOT NULL REFERENCES members(name),
        domain TEXT NOT NULL,
        version INTEGER NOT NULL,
        text TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        accepted INTEGER NOT NULL,
        UNIQUE (domain, version)
    );
    CREATE TABLE generations (
        host TEXT NOT NULL,
        number INTEGER NOT NULL,
        applied_at TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (host, number)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX audit_by_who ON audit (who, id);
    """,
    # 2: the dispatcher service: quota overrides, what each host holds per member, and
    # the changes a host has prepared but not yet committed (retried until it converges).
    """
    CREATE TABLE quotas (
        member TEXT NOT NULL,
        resource TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (member, resource)
    );
    CREATE TABLE deployed (
        member TEXT NOT NULL,
        host TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (member, host)
    );
    CREATE TABLE pending (
        host TEXT PRIMARY KEY,
        txid TEXT NOT NULL,
        changes TEXT NOT NULL,
        created TEXT NOT NULL,
        last_error TEXT
    );
    """,
    # 3: admin-set member policy (domtool.policies.member_policy): one JSON record per
    # member, and the site's defaults under the name "*".
    """
    CREATE TABLE policies (
        member TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
    """,
]

SELECT_DEPLOYED = "SELECT member, host, state FROM deployed"

#: The name the site's default policy is stored under (no member can be called that).
SITE_POLICY = "*"


class StoreError(Exception):
    """The store refused an operation (the message says which and why)."""


class GrantOverlap(StoreError):
    """A grant overlapping other members' (``overlaps``: one line each)."""

    def __init__(self, member: str, cls: str, value: str, overlaps: list[str]) -> None:
        self.overlaps = overlaps
        super().__init__(
            f"{cls} {value} for {member} overlaps another member's grant: {overlaps[0]}"
            + (f" (and {len(overlaps) - 1} more)" if len(overlaps) > 1 else "")
            + "; grant it with --shared if it really is shared"
        )


@frozen
class MemberRecord:
    """A member as the store knows them (``removed`` is set once they are removed)."""

    name: str
    added: datetime.datetime
    removed: datetime.datetime | None
    is_admin: bool
    cert_serial: int | None

    @property
    def active(self) -> bool:
        """Whether the member may still authenticate."""
        return self.removed is None


@frozen
class SourceRecord:
    """One submitted version of a domain's source."""

    member: str
    domain: str
    version: int
    text: str
    submitted_at: datetime.datetime
    accepted: bool


@frozen
class GenerationRecord:
    """One generation a host was sent, and how it went."""

    host: str
    number: int
    applied_at: datetime.datetime
    status: str


@frozen
class AuditEntry:
    """One audited action."""

    time: datetime.datetime
    who: str
    action: str
    detail: Any
    outcome: str


def _ts(now: datetime.datetime | None) -> str:
    return (now or datetime.datetime.now(datetime.UTC)).isoformat()


def _dt(text: str | None) -> datetime.datetime | None:
    return None if text is None else datetime.datetime.fromisoformat(text)


class Store:
    """The dispatcher's SQLite store. Open with ``Store.open(state_dir)``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._depth = 0  # transactions open (batch() and the steps inside it)

    @classmethod
    def open(cls, state_dir: str | os.PathLike) -> Store:
        """Open (creating and migrating as needed) the store in ``state_dir``."""
        path = Path(state_dir) / DB_NAME
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return cls.connect(str(path))

    @classmethod
    def connect(cls, target: str) -> Store:
        """Open a store at an SQLite path (``":memory:"`` for a throwaway one)."""
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA foreign_keys = ON")
        if target != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
        store = cls(db)
        try:
            store._migrate()
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        depth = self._depth
        if depth:  # inside batch(): a savepoint, so a failing step still undoes only itself
            name = f"step{depth}"
            self._db.execute(f"SAVEPOINT {name}")
            self._depth = depth + 1
            try:
                yield self._db
            except BaseException:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
                raise
            finally:
                self._depth = depth
            self._db.execute(f"RELEASE {name}")
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self._db.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one transaction (one fsync): a group-commit
        round records its members' versions and audit lines together."""
        with self._tx():
            yield

    # -- schema ---------------------------------------------------------------

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the database is at schema version {version}, newer than this domtool "
                f"({len(MIGRATIONS)}); upgrade domtool instead of opening it"
            )
        for number in range(version, len(MIGRATIONS)):
            # One transaction per migration, the version bump included: all or nothing.
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]};\n"
                    f"UPDATE schema_version SET version = {number + 1};\nCOMMIT;"
                )
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """How many migrations this database has had."""
        return self._db.execute("SELECT version FROM schema_version").fetchone()[0]

    # -- members --------------------------------------------------------------

    def add_member(
        self,
        name: str,
        *,
        is_admin: bool = False,
        cert_serial: int | None = None,
        now: datetime.datetime | None = None,
    ) -> MemberRecord:
        """Add a member (or bring a removed one back); an active member is a StoreError."""
        if not identity.valid_name(identity.MEMBER, name):
            raise StoreError(f"{name!r} is not a valid member (Unix user) name")
        with self._tx() as db:
            row = db.execute("SELECT removed FROM members WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise StoreError(f"{name} is already a member")
            serial = None if cert_serial is None else format(cert_serial, "x")
            db.execute(
                "INSERT INTO members (name, added, removed, is_admin, cert_serial)"
                " VALUES (?, ?, NULL, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET added = excluded.added, removed = NULL,"
                " is_admin = excluded.is_admin, cert_serial = excluded.cert_serial",
                (name, _ts(now), int(is_admin), serial),
            )
        record = self.member(name)
        assert record is not None
        return record

    def remove_member(self, name: str, *, now: datetime.datetime | None = None) -> None:
        """Mark a member removed (kept for history); their certificate stops working."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE members SET removed = ? WHERE name = ? AND removed IS NULL",
                (_ts(now), name),
            )
            if cur.rowcount != 1:
                raise StoreError(f"{name} is not an active member")

    def set_admin(self, name: str, is_admin: bool) -> None:
        """Make an active member an admin or not."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE members SET is_admin = ? WHERE name = ? AND removed IS NULL",
                (int(is_admin), name),
            )
            if cur.rowcount != 1:
                raise StoreError(f"{name} is not an active member")

    def set_cert_serial(self, name: str, serial: int | None) -> None:
        """Record the serial of the member's current certificate (None: any valid one)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE members SET cert_serial = ? WHERE name = ?",
                (None if serial is None else format(serial, "x"), name),
            )
            if cur.rowcount != 1:
                raise StoreError(f"{name} is not a member")

    def member(self, name: str) -> MemberRecord | None:
        """The member called ``name`` (removed or not), or None if never added."""
        row = self._db.execute(
            "SELECT name, added, removed, is_admin, cert_serial FROM members WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else _member(row)

    def members(self, *, include_removed: bool = False) -> list[MemberRecord]:
        """All members, by name."""
        sql = "SELECT name, added, removed, is_admin, cert_serial FROM members"
        if not include_removed:
            sql += " WHERE removed IS NULL"
        return [_member(r) for r in self._db.execute(sql + " ORDER BY name")]

    # -- grants ---------------------------------------------------------------

    def _active(self, db: sqlite3.Connection, name: str) -> None:
        row = db.execute("SELECT removed FROM members WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] is not None:
            raise StoreError(f"{name} is not an active member")

    def grant(self, member: str, cls: str, value: str, *, shared: bool = False) -> bool:
        """Grant ``member`` the ``cls`` value (True if new, False if already held).

        The value is validated and canonicalised by ``domtool.perms`` (a domain is
        lower-cased, a path normalised); an invalid one is a StoreError, never stored.
        A value that overlaps another active member's grant (``policies.grant_overlap``)
        is a :class:`GrantOverlap` unless ``shared``."""
        value = _canonical(cls, value)
        with self._tx() as db:
            self._active(db, member)
            found = self.grant_overlaps(member, cls, value, db)
            if found and not shared:
                raise GrantOverlap(member, cls, value, found)
            cur = db.execute(
                "INSERT OR IGNORE INTO grants (member, class, value) VALUES (?, ?, ?)",
                (member, cls, value),
            )
            return cur.rowcount == 1

    def grant_overlaps(self, member: str, cls: str, value: str, db=None) -> list[str]:
        """How ``cls value`` overlaps other active members' grants (one line each)."""
        from domtool.policies.grant_overlap import overlaps

        rows = (
            (db or self._db)
            .execute(
                "SELECT g.member, g.value FROM grants g JOIN members m ON m.name = g.member"
                " WHERE g.class = ? AND g.member != ? AND m.removed IS NULL",
                (cls, member),
            )
            .fetchall()
        )
        return overlaps(cls, _canonical(cls, value), [(m, v) for m, v in rows])

    def revoke(self, member: str, cls: str, value: str) -> bool:
        """Take a grant away (True if it was held)."""
        value = _canonical(cls, value)
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM grants WHERE member = ? AND class = ? AND value = ?",
                (member, cls, value),
            )
            return cur.rowcount == 1

    def grants_of(self, member: str) -> Permissions:
        """The member's ``domtool.perms.Permissions``; a removed or unknown member has none."""
        record = self.member(member)
        if record is None or not record.active:
            return Permissions.none(member)
        rows = self._db.execute(
            "SELECT class, value FROM grants WHERE member = ? ORDER BY class, value", (member,)
        ).fetchall()
        return Permissions.from_grants(member, rows)

    def whohas(self, cls: str, value: str) -> list[str]:
        """Active members holding exactly the ``cls`` grant ``value``, by name."""
        value = _canonical(cls, value)
        return [
            r[0]
            for r in self._db.execute(
                "SELECT g.member FROM grants g JOIN members m ON m.name = g.member"
                " WHERE g.class = ? AND g.value = ? AND m.removed IS NULL ORDER BY g.member",
                (cls, value),
            )
        ]

    # -- sources --------------------------------------------------------------

    def put_source(
        self,
        member: str,
        domain: str,
        text: str,
        *,
        accepted: bool,
        now: datetime.datetime | None = None,
    ) -> int:
        """Record a submitted source for ``domain``; returns its version (1, 2, ...)."""
        with self._tx() as db:
            self._active(db, member)
            (last,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM sources WHERE domain = ?", (domain,)
            ).fetchone()
            db.execute(
                "INSERT INTO sources (member, domain, version, text, submitted_at, accepted)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (member, domain, last + 1, text, _ts(now), int(accepted)),
            )
            return last + 1

    def history(self, domain: str) -> list[SourceRecord]:
        """Every version submitted for ``domain``, oldest first (refused ones included)."""
        return [
            _source(r)
            for r in self._db.execute(
                "SELECT member, domain, version, text, submitted_at, accepted FROM sources"
                " WHERE domain = ? ORDER BY version",
                (domain,),
            )
        ]

    def source(self, domain: str, version: int) -> SourceRecord | None:
        """One version of a domain's source (for undo), or None."""
        row = self._db.execute(
            "SELECT member, domain, version, text, submitted_at, accepted FROM sources"
            " WHERE domain = ? AND version = ?",
            (domain, version),
        ).fetchone()
        return None if row is None else _source(row)

    def latest_sources(self, member: str | None = None) -> list[SourceRecord]:
        """The newest accepted version of every domain (of ``member`` if given), by domain.

        This is what ``regen`` replays."""
        cols = "s.member, s.domain, s.version, s.text, s.submitted_at, s.accepted"
        if member is not None:
            # One member's (every submit asks): its rows, each kept if it is its domain's
            # newest accepted version (looked up by the (domain, version) index), not a
            # grouping of every domain of the site (10,000 domains: ~60 ms against ~5).
            sql = (
                f"SELECT {cols} FROM sources s WHERE s.member = ? AND s.accepted = 1"
                " AND s.version = (SELECT MAX(t.version) FROM sources t"
                " WHERE t.domain = s.domain AND t.accepted = 1) ORDER BY s.domain"
            )
            return [_source(r) for r in self._db.execute(sql, (member,))]
        sql = (
            f"SELECT {cols} FROM sources s JOIN (SELECT domain, MAX(version) AS v FROM sources"
            " WHERE accepted = 1 GROUP BY domain) l ON s.domain = l.domain AND s.version = l.v"
        )
        return [_source(r) for r in self._db.execute(sql + " ORDER BY s.domain")]

    def latest_texts(self) -> dict[str, dict[str, str]]:
        """Every member's current files, member -> {domain: text}: the text of the newest
        accepted version of each domain (``latest_sources`` without the records), those
        whose newest text is empty (removed domains) left out. One query for the whole
        site: ``regen`` reads every member's files (one query per member was ~200 ms at
        10,000 domains)."""
        out: dict[str, dict[str, str]] = {}
        sql = (
            "SELECT s.member, s.domain, s.text FROM sources s JOIN (SELECT domain,"
            " MAX(version) AS v FROM sources WHERE accepted = 1 GROUP BY domain) l"
            " ON s.domain = l.domain AND s.version = l.v ORDER BY s.member, s.domain"
        )
        for member, domain, text in self._db.execute(sql):
            if text:
                out.setdefault(member, {})[domain] = text
        return out

    # -- generations ----------------------------------------------------------

    def record_generation(
        self, host: str, number: int, status: str, *, now: datetime.datetime | None = None
    ) -> None:
        """Record (or update the status of) generation ``number`` on ``host``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO generations (host, number, applied_at, status) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (host, number) DO UPDATE SET"
                " applied_at = excluded.applied_at, status = excluded.status",
                (host, number, _ts(now), status),
            )

    def generations(self, host: str | None = None) -> list[GenerationRecord]:
        """Generations (of ``host`` if given), by host then number."""
        sql = "SELECT host, number, applied_at, status FROM generations"
        args: tuple = ()
        if host is not None:
            sql += " WHERE host = ?"
            args = (host,)
        return [
            GenerationRecord(r[0], r[1], _dt(r[2]), r[3])
            for r in self._db.execute(sql + " ORDER BY host, number", args)
        ]

    # -- audit ----------------------------------------------------------------

    def audit(
        self,
        who: str,
        action: str,
        detail: Any,
        outcome: str,
        *,
        now: datetime.datetime | None = None,
    ) -> None:
        """Append an audit entry (``detail`` must be JSON-serialisable)."""
        text = json.dumps(detail, sort_keys=True)
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (time, who, action, detail, outcome) VALUES (?, ?, ?, ?, ?)",
                (_ts(now), who, action, text, outcome),
            )

    def audit_log(self, *, who: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` audit entries (of ``who`` if given), oldest first."""
        sql = "SELECT time, who, action, detail, outcome FROM audit"
        args: tuple = ()
        if who is not None:
            sql += " WHERE who = ?"
            args = (who,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [AuditEntry(_dt(r[0]), r[1], r[2], json.loads(r[3]), r[4]) for r in reversed(rows)]

    # -- quotas (migration 2) -------------------------------------------------

    def set_quota(self, member: str, resource: str, value: int | None) -> None:
        """Override one of ``member``'s quotas (None: back to the site default)."""
        with self._tx() as db:
            if value is None:
                db.execute(
                    "DELETE FROM quotas WHERE member = ? AND resource = ?", (member, resource)
                )
            else:
                db.execute(
                    "INSERT INTO quotas (member, resource, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (member, resource) DO UPDATE SET value = excluded.value",
                    (member, resource, int(value)),
                )

    def quotas_of(self, member: str) -> dict[str, int]:
        """``member``'s quota overrides, resource -> limit."""
        return dict(
            self._db.execute("SELECT resource, value FROM quotas WHERE member = ?", (member,))
        )

    # -- admin-set member policy (migration 3) ---------------------------------

    def set_policy(self, member: str, record: Mapping[str, Any] | None) -> None:
        """Store ``member``'s policy record (JSON object of parts; None or empty: none).
        ``SITE_POLICY`` holds the site's defaults."""
        with self._tx() as db:
            if not record:
                db.execute("DELETE FROM policies WHERE member = ?", (member,))
            else:
                db.execute(
                    "INSERT INTO policies (member, record) VALUES (?, ?)"
                    " ON CONFLICT (member) DO UPDATE SET record = excluded.record",
                    (member, json.dumps(record, sort_keys=True)),
                )

    def policy_of(self, member: str) -> dict[str, Any] | None:
        """``member``'s stored policy record, or None."""
        row = self._db.execute("SELECT record FROM policies WHERE member = ?", (member,)).fetchone()
        return None if row is None else json.loads(row[0])

    def policies(self) -> dict[str, dict[str, Any]]:
        """Every stored policy record by member (``SITE_POLICY``: the site's)."""
        return {
            m: json.loads(r) for m, r in self._db.execute("SELECT member, record FROM policies")
        }

    # -- what each host holds, and pending commits (migration 2) ---------------

    def deployed(self, *, member: str | None = None) -> dict[tuple[str, str], Any]:
        """What each host was last committed for each member: (member, host) -> model JSON."""
        sql = SELECT_DEPLOYED
        args: tuple = ()
        if member is not None:
            sql += " WHERE member = ?"
            args = (member,)
        return {(r[0], r[1]): json.loads(r[2]) for r in self._db.execute(sql, args)}

    def deployed_texts(self) -> dict[tuple[str, str], str]:
        """What each host was last committed for each member, as stored: (member, host)
        -> the JSON text (sorted keys) that :meth:`deployed` decodes. ``regen`` compares
        a member's new parts with it as text and decodes nothing when they are equal."""
        return {(r[0], r[1]): r[2] for r in self._db.execute(SELECT_DEPLOYED)}

    def record_commit(
        self,
        host: str,
        number: int,
        status: str,
        parts: dict[str, Any],
        *,
        txid: str | None = None,
        now: datetime.datetime | None = None,
    ) -> None:
        """In one transaction: generation ``number`` of ``host`` with its status, the
        committed part of each member in ``parts`` (model JSON; None: nothing left on the
        host), and, if ``txid`` is that host's pending change, its removal."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO generations (host, number, applied_at, status) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (host, number) DO UPDATE SET"
                " applied_at = excluded.applied_at, status = excluded.status",
                (host, number, _ts(now), status),
            )
            for member, state in parts.items():
                if state is None:
                    db.execute("DELETE FROM deployed WHERE member = ? AND host = ?", (member, host))
                else:
                    db.execute(
                        "INSERT INTO deployed (member, host, state) VALUES (?, ?, ?)"
                        " ON CONFLICT (member, host) DO UPDATE SET state = excluded.state",
                        (member, host, json.dumps(state, sort_keys=True)),
                    )
            if txid is not None:
                db.execute("DELETE FROM pending WHERE host = ? AND txid = ?", (host, txid))

    def set_pending(
        self, host: str, txid: str, changes: Any, *, now: datetime.datetime | None = None
    ) -> None:
        """Remember that ``host`` prepared ``changes`` (JSON) under ``txid`` and must commit."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO pending (host, txid, changes, created, last_error)"
                " VALUES (?, ?, ?, ?, NULL) ON CONFLICT (host) DO UPDATE SET"
                " txid = excluded.txid, changes = excluded.changes,"
                " created = excluded.created, last_error = NULL",
                (host, txid, json.dumps(changes, sort_keys=True), _ts(now)),
            )

    def note_pending_error(self, host: str, message: str) -> None:
        """Why the last attempt to converge ``host`` failed."""
        with self._tx() as db:
            db.execute("UPDATE pending SET last_error = ? WHERE host = ?", (message, host))

    def pending(self) -> dict[str, dict[str, Any]]:
        """Hosts with a change still to commit: host -> {txid, changes, created, last_error}."""
        return {
            r[0]: {"txid": r[1], "changes": json.loads(r[2]), "created": r[3], "last_error": r[4]}
            for r in self._db.execute(
                "SELECT host, txid, changes, created, last_error FROM pending ORDER BY host"
            )
        }


def _canonical(cls: str, value: str) -> str:
    if cls not in GRANT_CLASSES:
        raise StoreError(f"unknown grant class {cls!r} (one of {', '.join(GRANT_CLASSES)})")
    try:
        return GRANT_CLASSES[cls][1](value)
    except Invalid as e:
        raise StoreError(f"{cls}: {e}") from None


def _member(row: tuple) -> MemberRecord:
    return MemberRecord(
        name=row[0],
        added=_dt(row[1]),
        removed=_dt(row[2]),
        is_admin=bool(row[3]),
        cert_serial=None if row[4] is None else int(row[4], 16),
    )


def _source(row: tuple) -> SourceRecord:
    return SourceRecord(row[0], row[1], row[2], row[3], _dt(row[4]), bool(row[5]))
