"""``domtool.protocol`` is the one place a message's shape is written: every op of every
closed table has its schema and its typed class there, each class's encoder and the
protocol's decoder agree, and no product module outside it defines a schema, builds a
slave answer or guesses one's shape."""

from __future__ import annotations

import ast
from pathlib import Path

import attrs
import pytest
from twisted.internet import defer

from domtool import grantsig, protocol, wire
from domtool.model import DesiredState, MemberPolicy, Vhost, Zone
from domtool.protocol import SchemaError

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCT = ("domtool", "dispatcher", "slave", "client", "net", "policies", "util")
PROTOCOL = ROOT / "domtool" / "protocol.py"

ZONE = Zone("example.org", "alice", (), ("ns1",))
VHOST = Vhost(
    fqdn="www.example.org",
    owner="alice",
    domain="example.org",
    nodes=("web1",),
    document_root="/home/alice/www",
    user="alice",
    group="alice",
    server_admin="alice@example.org",
)
SIGNED = grantsig.SignedGrants(
    grantsig.GrantRecord("alice", 3, (("domain", "example.org"), ("path", "/home/alice"))),
    "c2lnbmF0dXJl",
    "key-1",
)

#: One message of every slave op: a new op without one here fails the test below.
SAMPLES = {
    "prepare": protocol.PrepareArgs(
        "tx-1",
        {
            "alice": protocol.OwnerChange(
                DesiredState(zones=(ZONE,), vhosts=(VHOST,)).normalised(),
                protocol.Grants(("/home/alice",), ("alice",), ("alice",)),
                SIGNED,
            ),
            "bob": protocol.OwnerChange(DesiredState(), protocol.Grants()),
        },
        complete=True,
    ),
    "commit": protocol.TxArgs("tx-1"),
    "abort": protocol.TxArgs("tx-2"),
    "status": protocol.StatusArgs(),
    "describe": protocol.DescribeArgs("example.org"),
    "list_remove": protocol.ListRemoveArgs("alice", "news@lists.example.org", True),
    "policy_held": protocol.PolicyHeldArgs("alice"),
    "usage": protocol.UsageArgs("alice"),
    "tls_update": protocol.TlsUpdateArgs("CRL", "CERT", "KEY"),
    "vmail": protocol.VmailArgs(
        "add", "alice", "example.org", "info", "$6$salt$hash", "alice", users=("alice",)
    ),
    "db_create": protocol.DbArgs("postgres", "alice", "alice_blog"),
    "db_drop": protocol.DbArgs("mysql", "alice", "alice_blog"),
    "db_list": protocol.DbListArgs("alice"),
    "db_passwd": protocol.DbPasswdArgs("postgres", "alice", "alice_blog", "s3cret"),
    "db_grant": protocol.DbGrantArgs("mysql", "alice", "alice_blog", "alice_ro"),
}


def test_the_closed_tables_are_the_wire_op_sets():
    """Every op a listener lets through has its schema in the protocol, and no more."""
    assert set(protocol.SLAVE_OPS) == wire.SLAVE_OPS
    assert set(protocol.MEMBER_REQUESTS) == wire.MEMBER_OPS
    assert set(protocol.ADMIN_REQUESTS) == wire.ADMIN_OPS
    assert set(protocol.SLAVE_ANSWERS) <= wire.SLAVE_OPS


def test_every_slave_op_and_answer_is_a_protocol_class():
    """Each slave op's arguments and each decoded answer is an attrs class of the protocol
    module with an encoder (and, for answers, a decoder)."""
    for op, entry in protocol.SLAVE_OPS.items():
        assert attrs.has(entry.args) and entry.args.__module__ == "domtool.protocol", op
        assert callable(getattr(entry.args, "to_json", None)), op
    for op, cls in protocol.SLAVE_ANSWERS.items():
        assert attrs.has(cls) and cls.__module__ == "domtool.protocol", op
        assert callable(getattr(cls, "from_json", None)) and hasattr(cls, "SCHEMA"), op


@pytest.mark.parametrize("op", sorted(wire.SLAVE_OPS))
def test_each_slave_message_survives_its_encoder_and_the_decoder(op):
    """``parse_slave(op, msg.to_json())`` gives back ``msg``: the dispatcher's encoder and
    the slave's decoder are the same description."""
    assert set(SAMPLES) == wire.SLAVE_OPS
    msg = SAMPLES[op]
    assert isinstance(msg, protocol.SLAVE_OPS[op].args)
    assert protocol.parse_slave(op, msg.to_json()) == msg


ANSWERS = [
    protocol.PrepareAnswer(
        "tx-1", 4, 5, {"alice": protocol.Verdict(True), "bob": protocol.Verdict(False, "no")}
    ),
    protocol.CommitAnswer(
        "tx-1",
        5,
        "applied",
        (protocol.probe_json("dns", ["192.0.2.1", 53, "example.org", "SOA", None], "alice"),),
        "",
        {"bob": protocol.Verdict(False, "rolled back")},
    ),
    protocol.StatusAnswer("ns1", 5, ("alice",), None, True, True),
    protocol.StatusAnswer("web1", 0, (), "tx-9"),
    protocol.PolicyHeldAnswer("web1", 2, MemberPolicy("alice", ("web1",), ("alice",)), True),
    protocol.UsageAnswer("web1", {"alice": {"member": "alice", "disk": 12, "users": ["alice"]}}),
    protocol.VmailAnswer(
        mailboxes=(
            protocol.Mailbox("info@example.org", "alice", "/vmail/example.org/info"),
            protocol.Mailbox("sales@example.org", "alice", hosts=("mx1", "mx2")),
        )
    ),
    protocol.VmailAnswer(removed="info@example.org", kept="/vmail/example.org/info"),
    protocol.ListRemoveAnswer("lists1", "news@example.org", True, False, "would remove", 3),
    protocol.DbCreateAnswer(
        "postgres", "alice_blog", "alice", True, "created", {"socket_dir": "/run", "port": 5432}
    ),
    protocol.DbDropAnswer("mysql", "alice_blog", True, 1 << 40),
    protocol.DbPasswdAnswer("postgres", "alice_ro", True, True),
    protocol.DbGrantAnswer("mysql", "alice_blog", "alice_ro", False, True),
    protocol.DbListAnswer(
        "db1",
        ("mysql", "postgres"),
        (protocol.DbInfo("postgres", "alice_blog", "alice", 8192),),
        {"postgres": ["alice", "alice_ro"], "mysql": []},
        {"mysql": "connection refused"},
        {"postgres": {"socket_dir": "/run/postgresql", "host": None, "port": 5432}},
    ),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: type(a).__name__)
def test_each_answer_survives_its_encoder_and_decoder(answer):
    """What the slave writes (``to_json``) the dispatcher reads back (``from_json``)."""
    assert type(answer).from_json(answer.to_json()) == answer


def test_an_action_answer_leaves_out_what_it_does_not_say():
    """An absent field is None and stays absent: the member gets what the slave wrote."""
    sent = {"removed": "info@example.org", "purged": "/vmail/example.org/info"}
    answer = protocol.VmailAnswer.from_json(sent)
    assert answer.removed == "info@example.org" and answer.mailboxes is None
    assert answer.to_json() == sent
    with pytest.raises(SchemaError, match=r"mailboxes\[0\]\.mail_user: required"):
        protocol.VmailAnswer.from_json({"mailboxes": [{"address": "a@example.org"}]})


def test_an_answer_of_the_wrong_shape_is_refused_with_its_path():
    """The coordinator does not guess: a missing or mistyped field is named."""
    good = ANSWERS[0].to_json()
    with pytest.raises(SchemaError, match=r"owners\.bob\.ok: expected bool, got str"):
        protocol.PrepareAnswer.from_json({**good, "owners": {"bob": {"ok": "no"}}})
    with pytest.raises(SchemaError, match="staged_generation: required"):
        protocol.PrepareAnswer.from_json(
            {k: v for k, v in good.items() if k != "staged_generation"}
        )


#: One JSON request of every member and admin op, as a client sends it.
REQUEST_SAMPLES = {
    "submit": {"files": [{"name": "example.org", "text": "zone example.org"}]},
    "check": {"files": [{"name": "example.org", "text": ""}]},
    "plan": {"files": [{"name": "example.org", "text": "x"}, {"name": "example.net", "text": "y"}]},
    "perms": {},
    "whoami": {},
    "describe": {"domain": "example.org"},
    "history": {"domain": "example.org"},
    "undo": {"domain": "example.org", "version": 3},
    "rmdom": {"domain": "example.org"},
    "vmail": {
        "action": "rm",
        "domain": "example.org",
        "user": "info",
        "purge": False,
        "doit": True,
    },
    "list_rm": {"list": "news@lists.example.org", "doit": False},
    "db_create": {"kind": "postgres", "name": "alice_blog"},
    "db_drop": {"kind": "mysql", "name": "alice_blog", "apply": True},
    "db_list": {},
    "db_passwd": {"kind": "postgres", "role": "alice_blog", "password": "s3cret"},
    "db_grant": {"kind": "mysql", "database": "alice_blog", "role": "alice_ro"},
    "policy": {},
    "usage": {},
    "adduser": {"user": "alice", "admin": True},
    "rmuser": {"user": "alice", "apply": False},
    "grant": {"user": "alice", "class": "domain", "value": "example.org", "shared": True},
    "revoke": {"user": "alice", "class": "path", "value": "/home/alice"},
    "perms_of": {"user": "alice"},
    "whohas": {"class": "domain", "value": "example.org"},
    "regen": {"apply": False},
    "admin_rmdom": {"domain": "example.org"},
    "hosts": {},
    "ping": {"host": "web1"},
    "admin_describe": {"domain": "example.org"},
    "audit": {"user": "alice", "limit": 5},
    "quota": {"user": "alice"},
    "set_quota": {"user": "alice", "resource": "mailboxes", "value": 10},
    "put_grants": {
        "signed": {
            "record": {"member": "alice", "serial": 1, "grants": [["domain", "example.org"]]},
            "signature": "c2ln",
            "key": "key-1",
        }
    },
    "policy_show": {"user": "alice"},
    "policy_check": {},
    "usage_of": {"user": "alice"},
    "policy_set": {"part": "firewall", "action": "add", "site": True, "value": "tcp out 80"},
}


def test_every_request_is_a_protocol_class_of_its_schema():
    """``REQUESTS`` has one attrs class per member and admin op; its fields are exactly
    the op's schema's (required ones without a default, optional ones None by default)."""
    assert set(protocol.REQUESTS) == wire.MEMBER_OPS | wire.ADMIN_OPS
    for op, cls in protocol.REQUESTS.items():
        assert attrs.has(cls) and cls.__module__ == "domtool.protocol" and cls.OP == op, op
        fields = {f.metadata.get("wire", f.name): f for f in attrs.fields(cls)}
        schema = cls.schema()
        assert set(fields) == schema.fields(), op
        assert {n for n, f in fields.items() if f.default is attrs.NOTHING} == set(
            schema.required
        ), op
        assert all(fields[n].default is None for n in schema.optional), op


@pytest.mark.parametrize("op", sorted(wire.MEMBER_OPS | wire.ADMIN_OPS))
def test_each_request_survives_the_decoder_and_its_encoder(op):
    """``read_request(op, json).to_json() == json``: the dispatcher reads what the client
    wrote, and the client's encoder writes the JSON old clients sent (absent stays absent)."""
    assert set(REQUEST_SAMPLES) == wire.MEMBER_OPS | wire.ADMIN_OPS
    sent = REQUEST_SAMPLES[op]
    request = protocol.read_request(op, sent)
    assert isinstance(request, protocol.REQUESTS[op])
    assert request.to_json() == sent and protocol.request_of(request) == (op, sent)


def test_a_request_of_the_wrong_shape_or_op_is_refused():
    """The decoder checks the schema first; a member cannot have an admin op read."""
    with pytest.raises(SchemaError, match="version: required"):
        protocol.read_request("undo", {"domain": "example.org"})
    with pytest.raises(SchemaError, match="kind: must be one of"):
        protocol.read_request("regen", {}, admin=False)
    assert protocol.read_request("grant", REQUEST_SAMPLES["grant"]).grant_class == "domain"
    with pytest.raises(TypeError, match="not a protocol request"):
        protocol.request_of({"user": "alice"})


def test_the_coordinator_sends_only_protocol_messages():
    """``Coordinator.call`` refuses a hand-built dict: every slave call is a protocol class."""
    from domtool.dispatcher.apply import Coordinator

    c = Coordinator(store=None, links={}, clock=None)
    with pytest.raises(TypeError, match="commit takes a protocol.TxArgs"):
        c.call("ns1", "commit", {"txid": "tx-1"})
    d = c.call("ns1", "commit", protocol.TxArgs("tx-1"))  # no link: a LinkError, not a TypeError
    failures = []
    d.addErrback(failures.append)
    assert isinstance(d, defer.Deferred) and "no link to ns1" in str(failures[0].value)


# ---------------------------------------------------------------------------
# Nothing outside the protocol module writes a message's shape.

SCHEMA_NODES = {
    "Str",
    "Int",
    "Bool",
    "Nullable",
    "StrOrInt",
    "List",
    "Tuple",
    "Obj",
    "Map",
    "Free",
    "OneOf",
}
# Keys only a slave answer has: building one by hand outside the protocol shows as these.
ANSWER_KEYS = {
    "base_generation",
    "staged_generation",
    "pending_txid",
    "state_known",
    "signed_grants",
}


def _product_files() -> list[Path]:
    files = [p for folder in PRODUCT for p in sorted((ROOT / folder).rglob("*.py"))]
    assert PROTOCOL in files and len(files) > 100
    return [p for p in files if p != PROTOCOL]


def _reads_request_dict(node: ast.AST) -> bool:
    """``args[...]`` or ``args.get(...)``: a request read as a dict, not as its object."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Name) and node.value.id == "args"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "args"
    )


#: The names the CLIs give a dispatcher's answer (``remote``'s ``render(result)``,
#: ``reply = ask(...)``): read as a dict, they would guess at its shape.
ANSWER_NAMES = {"result", "reply", "answer"}


def _reads_answer_dict(node: ast.AST) -> bool:
    """``result[...]``, ``result.get(...)`` or ``result.pop(...)`` on an answer's name."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Name) and node.value.id in ANSWER_NAMES
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "pop", "setdefault")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ANSWER_NAMES
    )


def scan(path: Path, source: str) -> list[str]:
    """Every place in one module that defines a schema or writes a message's shape."""
    out = []
    tree = ast.parse(source, str(path))
    in_dispatcher = path.parts[:1] == ("dispatcher",)
    in_client = path.parts[:1] == ("client",)
    for node in ast.walk(tree):
        if in_dispatcher and _reads_request_dict(node):
            out.append(f"{path}:{node.lineno}: reads a request as a dict (use its protocol class)")
        if in_client and _reads_answer_dict(node):
            out.append(f"{path}:{node.lineno}: reads an answer as a dict (use its protocol class)")
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "check":
                    params = [a.arg for a in item.args.args]
                    if params[:3] == ["self", "value", "path"]:
                        out.append(f"{path}:{node.lineno}: schema node class {node.name}")
        elif isinstance(node, ast.FunctionDef) and node.name in ("_json_type", "json_type"):
            out.append(f"{path}:{node.lineno}: its own JSON type names ({node.name})")
        elif isinstance(node, ast.ImportFrom) and node.module == "domtool.protocol":
            for alias in node.names:
                if alias.name in SCHEMA_NODES:
                    out.append(f"{path}:{node.lineno}: imports the schema node {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in SCHEMA_NODES:
            if isinstance(node.value, ast.Name) and node.value.id == "protocol":
                out.append(f"{path}:{node.lineno}: uses the schema node protocol.{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in ANSWER_KEYS:
            out.append(f"{path}:{node.lineno}: writes the message field {node.value!r}")
        elif isinstance(node, ast.Name) and node.id == "Field":
            out.append(f"{path}:{node.lineno}: a Field schema")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in SCHEMA_NODES
        ):
            out.append(f"{path}:{node.lineno}: builds a schema node {node.func.id}(...)")
    return out


def test_the_scanner_finds_each_kind_of_hand_written_shape():
    """The scan below is not vacuous: each pattern it refuses is found in a made-up module."""
    bad = """
from domtool.protocol import Obj
class Str:
    def check(self, value, path, problems, depth): ...
def _json_type(v): ...
answer = {"staged_generation": 1}
rules = protocol.Map
f = Field("str")
"""
    found = scan(Path("made_up.py"), bad)
    assert len(found) == 6, found
    op = """
async def grant(self, admin, args, progress):
    user, shared = args["user"], args.get("shared", False)
    return {"user": args.user, "value": request.args}
"""
    found = scan(Path("dispatcher/made_up.py"), op)
    assert len(found) == 2 and all("reads a request as a dict" in f for f in found), found
    assert scan(Path("slave/made_up.py"), op) == []  # the rule is the dispatcher's
    cli = """
def render(result):
    hosts = result.get("hosts") or {}
    first = result["applied"]
    reply = call(config, "perms", {})
    reply.pop("cert_pem")
    answer = protocol.ChangeAnswer.read(result)
    options = {"a": 1}
    return answer.applied, options.get("a"), options["a"], hosts.get("web1"), msg.get("result")
"""
    found = scan(Path("client/made_up.py"), cli)
    assert sorted(int(f.split(":")[1]) for f in found) == [3, 4, 6], found
    assert all("reads an answer as a dict" in f for f in found), found
    assert scan(Path("dispatcher/made_up.py"), cli) == []  # the rule is the clients'


def test_no_product_module_outside_the_protocol_writes_a_message_shape():
    """No schema engine, schema node, JSON type table or answer built by hand anywhere in
    the product code but ``domtool/protocol.py``."""
    problems = [
        p for path in _product_files() for p in scan(path.relative_to(ROOT), path.read_text())
    ]
    assert problems == []
