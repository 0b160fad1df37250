"""A small client of Mailman 3 core's REST API (plain HTTP with basic auth, stdlib only).

Used at the slave's privileged edge: by the sync commands (``mailman_sync``), the
``mailman_list`` probe and the list removal operation. It speaks to the REST port given
in the site's REST config file (JSON: ``url``, ``user``, ``password``, ``ledger``), never
to Mailman's database. The ledger (:class:`Ledger`) is this host's record of which member
created which list, so one member can never take over a list another member (or the
site) created.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import urllib.parse
from typing import Any

from domtool.util.files import atomic_write

TIMEOUT = 30.0


class RestError(Exception):
    """Mailman's REST API refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class RestConfig:
    url: str  # http://HOST:PORT/3.1
    user: str
    password: str
    ledger: str

    @classmethod
    def load(cls, path: str) -> RestConfig:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        try:
            return cls(
                str(data["url"]), str(data["user"]), str(data["password"]), str(data["ledger"])
            )
        except KeyError as e:
            raise RestError(f"{path}: missing {e.args[0]!r}") from None

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"


def quote(part: str) -> str:
    """One path segment of a REST URL (a list id or address), fully escaped."""
    return urllib.parse.quote(part, safe="@")


@dataclasses.dataclass
class Client:
    """Blocking REST calls; each answer is decoded JSON (or None for an empty body)."""

    config: RestConfig
    timeout: float = TIMEOUT

    def _conn(self) -> tuple[http.client.HTTPConnection, str]:
        u = urllib.parse.urlsplit(self.config.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise RestError(f"bad Mailman REST url {self.config.url!r}")
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        return cls(u.hostname, u.port, timeout=self.timeout), u.path.rstrip("/")

    def request(self, method: str, path: str, fields: dict[str, Any] | None = None) -> Any:
        conn, base = self._conn()
        token = base64.b64encode(f"{self.config.user}:{self.config.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Connection": "close"}
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, base + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(16 * 1024 * 1024)
        except (OSError, http.client.HTTPException) as e:
            raise RestError(f"Mailman REST at {self.config.url} unreachable: {e}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                why = json.loads(raw).get("description") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                why = raw.decode(errors="replace")[:200]
            raise RestError(f"{method} {path}: {resp.status} {why}", resp.status)
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except RestError as e:
            if e.status == 404:
                return False
            raise
        return True

    # -- what the sync needs ------------------------------------------------------

    def domains(self) -> set[str]:
        return {d["mail_host"] for d in self.get("/domains?count=100000&page=1").get("entries", [])}

    def lists(self) -> set[str]:
        data = self.get("/lists?count=100000&page=1")
        return {e["fqdn_listname"] for e in data.get("entries", [])}

    def owners(self, fqdn: str) -> dict[str, str]:
        """email -> member id of the list's owners."""
        data = self.get(f"/lists/{quote(list_id(fqdn))}/roster/owner")
        return {e["email"]: e["member_id"] for e in data.get("entries", [])}

    def create_domain(self, mail_host: str) -> None:
        self.request("POST", "/domains", {"mail_host": mail_host})

    def create_list(self, fqdn: str) -> None:
        self.request("POST", "/lists", {"fqdn_listname": fqdn})

    def add_owner(self, fqdn: str, email: str) -> None:
        self.request(
            "POST",
            "/members",
            {
                "list_id": list_id(fqdn),
                "subscriber": email,
                "role": "owner",
                "pre_verified": "true",
                "pre_confirmed": "true",
                "pre_approved": "true",
            },
        )

    def remove_member(self, member_id: str) -> None:
        self.request("DELETE", f"/members/{quote(member_id)}")


def list_id(fqdn: str) -> str:
    """Mailman's list id: ``team@example.org`` -> ``team.example.org``."""
    name, _, domain = fqdn.partition("@")
    return f"{name}.{domain}"


# ---------------------------------------------------------------------------
# The ledger


@dataclasses.dataclass
class Ledger:
    """``{"lists": {fqdn: member}, "applied": {domain: sha256 of the unit applied}}`` in
    one JSON file, replaced atomically (temporary file, fsync, rename)."""

    path: str
    lists: dict[str, str] = dataclasses.field(default_factory=dict)
    applied: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> Ledger:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return cls(path)
        return cls(path, dict(data.get("lists", {})), dict(data.get("applied", {})))

    def save(self) -> None:
        data = json.dumps({"lists": self.lists, "applied": self.applied}, sort_keys=True, indent=1)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        atomic_write(self.path, (data + "\n").encode())
