"""The wire envelope: round trips, and refusal of malformed or unknown requests."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domtool import wire


def test_request_round_trip():
    """A request encodes and decodes to the same id, op and args."""
    frame = wire.request(3, "submit", {"files": [{"name": "a", "text": "b"}]})
    req = wire.decode_request(frame, wire.MEMBER_OPS)
    assert req == wire.Request(3, "submit", {"files": [{"name": "a", "text": "b"}]})


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"v": 2, "id": 1, "op": "submit", "args": {}}',
        b'{"v": 1, "id": -1, "op": "submit", "args": {}}',
        b'{"v": 1, "id": true, "op": "submit", "args": {}}',
        b'{"v": 1, "id": 1, "op": "regen", "args": {}}',
        b'{"v": 1, "id": 1, "op": "submit", "args": []}',
        b'{"v": 1, "id": 1, "op": "submit", "args": {}, "sudo": true}',
    ],
)
def test_malformed_requests_are_refused(frame):
    """Bad JSON, wrong version, bad ids, ops outside the listener's set, extra fields: refused."""
    with pytest.raises(wire.WireError):
        wire.decode_request(frame, wire.MEMBER_OPS)


def test_admin_op_refused_on_member_set_but_accepted_on_admin_set():
    """The op set is per listener: an admin op is unknown to the member set."""
    frame = wire.request(1, "regen", {})
    with pytest.raises(wire.WireError):
        wire.decode_request(frame, wire.MEMBER_OPS)
    assert wire.decode_request(frame, wire.ADMIN_OPS).op == "regen"


@given(st.binary(max_size=200))
def test_random_frames_never_crash(data):
    """Random bytes either decode to a request of an allowed op or raise WireError."""
    try:
        req = wire.decode_request(data, wire.MEMBER_OPS)
    except wire.WireError:
        return
    assert req.op in wire.MEMBER_OPS
