"""The wire format between members, the dispatcher and the slaves (pure encode/decode).

Transport: a TLS connection (see ``domtool.net.tls``) carrying frames of a 4-byte
big-endian length followed by that many bytes of UTF-8 JSON (Twisted's
``Int32StringReceiver`` with ``MAX_LENGTH = MAX_FRAME``). One JSON object per frame.

Request::   {"v": 1, "id": 7, "op": "submit", "args": {...}}
Progress::  {"id": 7, "progress": {"done": 3, "total": 10, "what": "host web1 prepared"}}
Response::  {"id": 7, "ok": true, "result": {...}}
            {"id": 7, "ok": false, "error": {"kind": "refused", "message": "...",
                                            "details": ["...", ...]}}

Requests on one connection may be pipelined; responses carry the request's id. The op
names are a closed set per listener (``MEMBER_OPS``, ``ADMIN_OPS``, ``SLAVE_OPS``); a
frame naming anything else is refused before any logic runs. The arguments of each op
are checked against a schema with size limits (``domtool.protocol``) before they reach
a controller or the slave's agent.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

VERSION = 1
MAX_FRAME = (
    20 * 1024 * 1024
)  # bytes; a submit is at most 64 files of 256 KiB (16 MiB) plus JSON escaping headroom

# What a member may ask the dispatcher.
MEMBER_OPS = frozenset(
    {"submit", "check", "plan", "perms", "describe", "history", "undo", "rmdom", "whoami"}
    # virtual mailboxes (domtool.dispatcher.vmail)
    | {"vmail"}
    # databases (domtool.dispatcher.databases)
    | {"db_create", "db_drop", "db_list", "db_passwd", "db_grant"}
    # mailing lists (domtool.dispatcher.list_ops)
    | {"list_rm"}
    # admin-set member policy, the member's own (domtool.dispatcher.policy_ops)
    | {"policy"}
    # what the member uses, as the hosts report it (domtool.dispatcher.usage_ops)
    | {"usage"}
)
# What an admin may ask in addition.
ADMIN_OPS = frozenset(
    {
        "adduser",
        "rmuser",
        "grant",
        "revoke",
        "perms_of",
        "whohas",
        "regen",
        "admin_rmdom",
        "hosts",
        "ping",
        "admin_describe",
        "audit",
        "quota",
        "set_quota",
        "put_grants",
        # admin-set member policy (domtool.dispatcher.policy_ops)
        "policy_show",
        "policy_set",
        "policy_check",
        # what members use (domtool.dispatcher.usage_ops)
        "usage_of",
    }
)
# What the dispatcher may ask a slave: a closed set of typed operations.
SLAVE_OPS = frozenset(
    {"prepare", "commit", "abort", "status", "describe", "tls_update"}
    # databases: typed operations at the slave's edge (domtool.protocol.DbArgs and its siblings)
    | {"db_create", "db_drop", "db_list", "db_passwd", "db_grant"}
    # virtual mailboxes (domtool.slave.vmail)
    | {"vmail"}
    # mailing lists: removing one (domtool.slave.mailman_ops)
    | {"list_remove"}
    # admin-set member policy as this host holds and enforces it (slave/agent.py)
    | {"policy_held"}
    # what a member uses on the host (domtool.slave.usage)
    | {"usage"}
)

ERROR_KINDS = frozenset(
    {"bad_request", "unauthorized", "refused", "type_errors", "policy", "failed", "internal"}
)


class WireError(ValueError):
    """A frame that is not a well-formed message of this protocol."""


@attrs.frozen
class Request:
    id: int
    op: str
    args: dict[str, Any]


@attrs.frozen
class Failure:
    kind: str
    message: str
    details: tuple[str, ...] = ()


def encode(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return data


def request(id: int, op: str, args: dict[str, Any]) -> bytes:
    return encode({"v": VERSION, "id": id, "op": op, "args": args})


def ok(id: int, result: Any) -> bytes:
    return encode({"id": id, "ok": True, "result": result})


def error(id: int, failure: Failure) -> bytes:
    return encode(
        {
            "id": id,
            "ok": False,
            "error": {
                "kind": failure.kind,
                "message": failure.message,
                "details": list(failure.details),
            },
        }
    )


def progress(id: int, done: int, total: int, what: str) -> bytes:
    return encode({"id": id, "progress": {"done": done, "total": total, "what": what}})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(frame: bytes) -> Any:
    """One frame's JSON value. Not UTF-8, not JSON, NaN/Infinity (not JSON), an integer of
    thousands of digits, or nesting deeper than the parser's recursion bound are all a
    WireError, never another exception."""
    try:
        return json.loads(frame.decode("utf-8"), parse_constant=_no_constant)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise WireError(f"not a JSON message: {str(e)[:200]}") from None
    except RecursionError:
        raise WireError("not a JSON message: nested too deeply") from None


def decode_request(frame: bytes, allowed_ops: frozenset[str]) -> Request:
    """Parse and check the envelope of a request frame; refuse unknown ops."""
    if len(frame) > MAX_FRAME:
        raise WireError("frame too large")
    obj = _loads(frame)
    if not isinstance(obj, dict):
        raise WireError("a request must be a JSON object")
    if obj.get("v") != VERSION:
        raise WireError(
            f"unsupported protocol version {obj.get('v')!r} (this side speaks {VERSION})"
        )
    rid = obj.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < 2**53:
        raise WireError("request id must be a non-negative integer")
    op = obj.get("op")
    if not isinstance(op, str) or op not in allowed_ops:
        raise WireError(f"unknown operation {str(op)[:40]!r}")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise WireError("args must be a JSON object")
    extra = set(obj) - {"v", "id", "op", "args"}
    if extra:
        raise WireError(f"unexpected fields {sorted(extra)}")
    return Request(rid, op, args)


def decode_response(frame: bytes) -> dict[str, Any]:
    """Parse a response or progress frame (client side)."""
    obj = _loads(frame)
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
        raise WireError("a response must be a JSON object with an integer id")
    return obj
