"""The request schemas (``domtool.protocol``): checked at the edge, with size limits, before
any logic; the frame itself (size, UTF-8, JSON, nesting) is ``domtool.wire``'s."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool import protocol, wire
from domtool.protocol import Request, SchemaError, validate_args

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _frame(kind, **args):
    return json.dumps({"v": 1, "id": 1, "op": kind, "args": args}).encode()


def decode(raw: bytes, *, admin: bool = False) -> Request:
    """The listener's path: the frame's envelope (``wire``), then the op's schema."""
    ops = wire.MEMBER_OPS | wire.ADMIN_OPS if admin else wire.MEMBER_OPS
    request = wire.decode_request(raw, ops)
    return validate_args(request.op, request.args, admin=admin)


def validate(obj, *, admin: bool = False) -> Request:
    """A request written as one object (``{"kind": ..., **args}``), checked by its schema."""
    if not isinstance(obj, dict):
        return validate_args("?", obj, admin=admin)
    return validate_args(
        obj.get("kind"), {k: v for k, v in obj.items() if k != "kind"}, admin=admin
    )


def test_a_valid_submit_passes():
    """A well-formed submit decodes to a Request with its files."""
    req = decode(_frame("submit", files=[{"name": "example.org", "text": 'web "www";'}]))
    assert req == Request("submit", {"files": [{"name": "example.org", "text": 'web "www";'}]})


@pytest.mark.parametrize(
    "kind,args",
    [
        ("check", {"files": [{"name": "a.example", "text": ""}]}),
        ("plan", {"files": [{"name": "a.example", "text": "x"}]}),
        ("perms", {}),
        ("describe", {"domain": "example.org"}),
        ("history", {"domain": "example.org"}),
        ("undo", {"domain": "example.org", "version": 3}),
        ("rmdom", {"domain": "example.org"}),
    ],
)
def test_every_kind_accepts_its_shape(kind, args):
    """Each request kind accepts a well-formed request."""
    assert decode(_frame(kind, **args)) == Request(kind, args)


def test_all_problems_are_reported_at_once():
    """Several problems in one request are all reported, each with its JSON path."""
    with pytest.raises(SchemaError) as e:
        validate({"kind": "undo", "domain": "bad domain!", "version": 0, "extra": 1})
    assert e.value.problems == [
        ("domain", "not a valid name"),
        ("version", "must be at least 1"),
        ("", "unknown field(s): 'extra'"),
    ]


def test_unknown_kind_and_missing_field_are_refused():
    """An unknown kind, or a missing required field, is refused by name."""
    with pytest.raises(SchemaError, match="kind: must be one of"):
        validate({"kind": "shell", "cmd": "rm -rf /"})
    with pytest.raises(SchemaError, match="domain: required"):
        validate({"kind": "rmdom"})


def test_booleans_are_not_integers():
    """JSON true is not accepted where an integer version is expected."""
    with pytest.raises(SchemaError, match="version: expected int, got bool"):
        validate({"kind": "undo", "domain": "example.org", "version": True})


def test_oversize_file_is_refused_with_a_clear_error():
    """A file one byte over 256 KiB is refused, saying how big it was and the limit."""
    ok = "x" * protocol.MAX_FILE_BYTES
    assert validate({"kind": "submit", "files": [{"name": "a.org", "text": ok}]})
    with pytest.raises(SchemaError) as e:
        validate({"kind": "submit", "files": [{"name": "a.org", "text": ok + "x"}]})
    assert str(e.value) == "files[0].text: too long: 262145 bytes, at most 262144"


def test_length_is_counted_in_utf8_bytes():
    """A file of 256 KiB characters that are 2 bytes each is over the limit."""
    with pytest.raises(SchemaError, match="too long: 524288 bytes"):
        validate({"kind": "check", "files": [{"name": "a.org", "text": "é" * (256 * 1024)}]})


def test_too_many_files_are_refused():
    """65 files are refused (64 is the limit), without checking each one."""
    files = [{"name": f"d{i}.org", "text": ""} for i in range(65)]
    with pytest.raises(SchemaError, match=r"files: too many items: 65, at most 64"):
        validate({"kind": "submit", "files": files})
    assert validate({"kind": "submit", "files": files[:64]})


def test_oversize_request_is_refused_before_parsing():
    """Bytes over the frame cap are refused by size alone (not even parsed)."""
    with pytest.raises(wire.WireError, match="frame too large"):
        decode(b"[" * (wire.MAX_FRAME + 1))


def test_deep_nesting_is_refused_cleanly():
    """A deeply nested document is a WireError, never a RecursionError out of the parser."""
    with pytest.raises(wire.WireError, match="nested too deeply"):
        decode(
            b'{"v": 1, "id": 1, "op": "perms", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        )


def test_lone_surrogates_and_bad_utf8_are_refused():
    """Text that is not valid Unicode is refused, whether raw bytes or a JSON escape."""
    with pytest.raises(wire.WireError, match="not a JSON message"):
        decode(b'{"v": 1, "id": 1, "op": "perms", "args": {"x": "\xff"}}')
    with pytest.raises(SchemaError, match="lone surrogate"):
        decode(b'{"v": 1, "id": 1, "op": "describe", "args": {"domain": "\\ud800"}}')


def test_nan_and_huge_numbers_are_refused():
    """NaN/Infinity are not JSON; an integer with thousands of digits is refused cleanly."""
    head = b'{"v": 1, "id": 1, "op": "undo", "args": {"domain": "a.org", "version": '
    with pytest.raises(wire.WireError, match="NaN is not JSON"):
        decode(head + b"NaN}}")
    with pytest.raises(wire.WireError, match="not a JSON message"):
        decode(head + b"9" * 5000 + b"}}")


@settings(max_examples=300)
@given(json_values)
def test_random_json_never_crashes_the_validator(value):
    """Any JSON value either validates or raises SchemaError: never anything else."""
    try:
        validate(value)
    except SchemaError as e:
        assert e.problems
    try:
        decode(json.dumps({"v": 1, "id": 1, "op": "submit", "args": value}).encode())
    except SchemaError as e:
        assert e.problems
    except wire.WireError as e:
        assert str(e)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_decode(raw):
    """Arbitrary bytes either decode to a request or raise WireError or SchemaError."""
    try:
        decode(raw)
    except SchemaError as e:
        assert e.problems
    except wire.WireError as e:
        assert str(e)


@settings(max_examples=200)
@given(
    st.sampled_from(sorted(protocol.MEMBER_REQUESTS)),
    st.dictionaries(st.sampled_from(["files", "domain", "version", "x"]), json_values, max_size=4),
)
def test_random_fields_for_real_kinds_never_crash(kind, args):
    """Real kinds with random field values: a Request or a SchemaError, nothing else."""
    try:
        validate({"kind": kind, **args})
    except SchemaError as e:
        assert e.problems


def test_wire_envelope_args_are_checked_the_same_way():
    """validate_args checks a domtool.wire envelope's op and args with the same rules."""
    assert validate_args("describe", {"domain": "example.org"}) == Request(
        "describe", {"domain": "example.org"}
    )
    assert validate_args("whoami", {}) == Request("whoami", {})
    with pytest.raises(SchemaError, match="arguments are a JSON object"):
        validate_args("perms", [1])
    with pytest.raises(SchemaError, match="unknown field"):
        validate_args("perms", {"member": "bob"})


def test_admin_kinds_only_with_admin():
    """Admin kinds are unknown to a member request and checked like any other for admins."""
    req = {"kind": "grant", "user": "alice", "class": "domain", "value": "example.org"}
    with pytest.raises(SchemaError, match="kind: must be one of"):
        validate(req)
    assert validate(req, admin=True).kind == "grant"
    with pytest.raises(SchemaError) as e:
        validate({"kind": "grant", "user": "Alice", "class": "root", "value": "x"}, admin=True)
    assert [p for p, _ in e.value.problems] == ["user", "class"]
    assert validate({"kind": "regen"}, admin=True).args == {}
    assert validate({"kind": "audit", "limit": 5}, admin=True).args == {"limit": 5}


@settings(max_examples=100)
@given(
    st.sampled_from(sorted(protocol.ADMIN_REQUESTS)),
    st.dictionaries(st.sampled_from(["user", "class", "value", "apply", "limit"]), json_values),
)
def test_random_admin_requests_never_crash(kind, args):
    """Admin kinds with random fields: a Request or a SchemaError, nothing else."""
    try:
        validate({"kind": kind, **args}, admin=True)
    except SchemaError as e:
        assert e.problems


def test_every_wire_op_has_a_schema():
    """Each op domtool.wire lets through has a schema here, and no schema is unreachable."""
    assert set(protocol.MEMBER_REQUESTS) == wire.MEMBER_OPS
    assert set(protocol.ADMIN_REQUESTS) == wire.ADMIN_OPS
