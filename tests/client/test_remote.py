"""``domtool``'s dispatcher commands over real mutual TLS against a stand-in dispatcher:
what is sent, how answers, refusals and progress are printed, and the exit codes
(0 ok, 1 refused, 2 usage, 3 unreachable) with messages that say what to do."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from domtool.client import config as client_config
from domtool.client.domtool_cli import main
from domtool.dispatcher import ca

from .fake_dispatcher import FakeDispatcher, Refuse, member_config

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
ALICE_GRANTS = [
    ["domain", "example.org"],
    ["domain", "example.net"],
    ["path", "/home/alice"],
    ["user", "alice"],
    ["group", "alice"],
]


def _submit(member, args, progress):
    names = [f["name"] for f in args["files"]]
    if "bob.example" in names:
        raise Refuse(
            "type_errors",
            "1 error",
            ("bob.example:3.4-3.16:error: Argument is not your_domain",),
        )
    if "example.net" in names:
        return {"applied": False, "hosts": {}, "refused": ["local: alice: www.example.net: bad"]}
    progress(1, 2, "local prepared")
    progress(2, 2, "local committed")
    host = {"generation": 7, "status": "applied", "verified": ["http"], "message": ""}
    return {"applied": True, "hosts": {"local": host}, "refused": []}


HANDLERS = {
    "submit": _submit,
    "perms": lambda member, args, p: {"user": member, "grants": ALICE_GRANTS},
    "whoami": lambda member, args, p: {"user": member, "admin": False},
    "history": lambda member, args, p: {
        "domain": args["domain"],
        "versions": [{"version": 1, "submitted_at": "t1"}, {"version": 2, "submitted_at": "t2"}],
    },
    "undo": lambda member, args, p: {"hosts": {"local": {"generation": 8}}, "version": args},
    "describe": lambda member, args, p: {"domain": args["domain"], "hosts": {"local": ["zone"]}},
}


@pytest.fixture
def site(tmp_path):
    """CAs, a stand-in dispatcher that knows alice, and alice's client.toml."""
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    fake = FakeDispatcher(ca_dir, dict(HANDLERS), {"alice"}).start()
    cfg = member_config(ca_dir, tmp_path / "alice", "alice", fake.port)
    yield fake, cfg, ca_dir
    fake.stop()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_sends_files_named_by_domain_and_prints_each_host(site, capsys):
    """A submit sends each file's base name and text, shows progress on stderr and the
    host's generation on stdout, exit 0."""
    fake, cfg, _ = site
    f = str(EXAMPLES / "alice" / "example.org")
    code, out, err = run(capsys, "--config", str(cfg), f)
    assert code == 0, err
    member, op, args = fake.requests[-1]
    assert (member, op) == ("alice", "submit")
    assert args["files"][0]["name"] == "example.org"
    assert args["files"][0]["text"] == Path(f).read_text()
    assert "[2/2] local committed" in err
    assert out.startswith("applied\n")
    assert "local: applied; generation 7; 1 check(s) answered" in out


def test_an_answer_saying_not_applied_exits_1_with_the_reasons(site, capsys):
    """applied: false (a host refused in prepare) is a refusal: exit 1, reasons printed."""
    _, cfg, _ = site
    code, out, _ = run(capsys, "--config", str(cfg), str(EXAMPLES / "alice" / "example.net"))
    assert code == 1
    assert "NOT applied" in out and "refused: local: alice: www.example.net: bad" in out


def test_submit_json_is_the_result(site, capsys):
    """--json prints the dispatcher's result as JSON and no progress lines."""
    _, cfg, _ = site
    code, out, err = run(
        capsys, "--json", "--config", str(cfg), str(EXAMPLES / "alice" / "example.org")
    )
    assert code == 0
    assert json.loads(out)["hosts"]["local"]["generation"] == 7
    assert "[1/2]" not in err


def test_type_errors_come_back_in_the_published_shape_exit_1(site, capsys):
    """A refused submit prints each diagnostic line as the dispatcher sent it; exit 1."""
    _, cfg, _ = site
    code, out, err = run(capsys, "--config", str(cfg), str(EXAMPLES / "errors" / "bob.example"))
    assert code == 1
    assert "bob.example:3.4-3.16:error: Argument is not your_domain" in err
    assert out == ""


def test_a_file_not_named_like_a_domain_is_a_usage_error(site, tmp_path, capsys):
    """Files are sent under their domain name; a name that is not one is exit 2, naming it."""
    _, cfg, _ = site
    bad = tmp_path / "my config"
    bad.write_text('dom "example.org" with end;\n')
    code, _, err = run(capsys, "--config", str(cfg), str(bad))
    assert code == 2 and "'my config' is not a domain name" in err


def test_bare_domtool_submits_every_domain_file_in_dot_domtool(site, tmp_path, monkeypatch, capsys):
    """With no FILE, every file in ~/.domtool named like a domain is submitted (not the
    client.toml or other files)."""
    fake, cfg, _ = site
    home = tmp_path / "home"
    (home / ".domtool").mkdir(parents=True)
    (home / ".domtool" / "example.org").write_text('dom "example.org" with end;\n')
    (home / ".domtool" / "notes").write_text("x")
    (home / ".domtool" / "client.toml").write_text(cfg.read_text())
    monkeypatch.setenv("HOME", str(home))
    code, _, err = run(capsys, "--config", str(cfg))
    assert code == 0, err
    assert [f["name"] for f in fake.requests[-1][2]["files"]] == ["example.org"]


def test_perms_history_and_undo_without_version(site, capsys):
    """perms prints the file form; history lists versions; undo without VERSION puts back
    the one before the latest."""
    fake, cfg, _ = site
    code, out, _ = run(capsys, "perms", "--config", str(cfg))
    assert code == 0 and "domain: example.net example.org" in out and out.startswith("alice:")
    code, out, _ = run(capsys, "history", "example.org", "--config", str(cfg))
    assert code == 0 and "v1" in out and "v2" in out
    code, _, _ = run(capsys, "--config", str(cfg), "undo", "example.org")
    assert code == 0
    assert fake.requests[-1][1:] == ("undo", {"domain": "example.org", "version": 1})


def test_typecheck_uses_the_dispatchers_permissions_when_configured(site, capsys):
    """-tc without --perms asks the dispatcher for alice's permissions: her examples pass."""
    _, cfg, _ = site
    files = sorted(str(p) for p in (EXAMPLES / "alice").iterdir())
    code, _, err = run(capsys, "-tc", "--config", str(cfg), *files)
    assert code == 0, err
    assert "no permissions" not in err


def test_connection_refused_exit_3_names_the_address(tmp_path, capsys):
    """Nothing listening: exit 3, 'cannot reach the dispatcher at HOST:PORT'."""
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = member_config(ca_dir, tmp_path / "alice", "alice", port)
    code, _, err = run(capsys, "perms", "--config", str(cfg))
    assert code == 3
    assert f"cannot reach the dispatcher at 127.0.0.1:{port}" in err
    assert "is the dispatcher running" in err


def test_revoked_certificate_is_named_with_the_reason(site, capsys):
    """A revoked member certificate: exit 3, the message names the certificate and says
    it was revoked."""
    fake, cfg, ca_dir = site
    ca.revoke(ca_dir, "alice")
    fake.stop()
    fake2 = FakeDispatcher(ca_dir, dict(HANDLERS), {"alice"}).start()
    try:
        text = cfg.read_text().replace(f":{fake.port}", f":{fake2.port}")
        cfg.write_text(text)
        code, _, err = run(capsys, "whoami", "--config", str(cfg))
    finally:
        fake2.stop()
    assert code == 3
    assert "alice.pem" in err and "revoked" in err
    assert "domtool-member:alice" in err


def test_wrong_dispatcher_name_is_refused_by_the_client(site, tmp_path, capsys):
    """The dispatcher's certificate must carry the configured name: exit 3, saying so."""
    fake, _, ca_dir = site
    cfg = member_config(ca_dir, tmp_path / "other", "alice", fake.port, name="evil.example.coop")
    code, _, err = run(capsys, "whoami", "--config", str(cfg))
    assert code == 3
    assert "does not name 'evil.example.coop'" in err


def test_unknown_member_is_refused_exit_1(site, tmp_path, capsys):
    """A valid certificate for a name the dispatcher does not know: its refusal, exit 1."""
    fake, _, ca_dir = site
    cfg = member_config(ca_dir, tmp_path / "mallory", "mallory", fake.port)
    code, _, err = run(capsys, "whoami", "--config", str(cfg))
    assert code == 1
    assert "not allowed: mallory is unknown" in err


def test_missing_config_is_a_usage_error_saying_what_to_do(tmp_path, capsys):
    """No client configuration: exit 2, naming the file and --config."""
    code, _, err = run(capsys, "perms", "--config", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "nope.toml" in err and "--config" in err


def test_config_reports_every_problem_at_once(tmp_path):
    """Unknown keys, a bad address and missing TLS paths are all reported together."""
    with pytest.raises(client_config.ConfigError) as e:
        client_config.parse(
            '[dispatcher]\naddress = "nohost"\ncolour = 1\n[tls]\ncertificate = "a.pem"\n',
            str(tmp_path),
        )
    text = str(e.value)
    assert "has no port" in text and "colour" in text and "[tls] key" in text and "[tls] ca" in text


def test_config_paths_are_relative_to_the_file(tmp_path):
    """Relative certificate paths resolve against the config file's directory; the
    dispatcher's name defaults to the address's host."""
    p = tmp_path / "client.toml"
    p.write_text(
        client_config.dump("dispatcher.example.coop:1234", "", "a.pem", "a.key", "ca.pem").replace(
            'name = ""\n', ""
        )
    )
    c = client_config.load(p)
    assert c.certificate == str(tmp_path / "a.pem")
    assert (c.host, c.port, c.name) == ("dispatcher.example.coop", 1234, "dispatcher.example.coop")


def test_describe_and_plan_are_rendered_for_people(site, capsys):
    """describe lists each host's generation and the domain's zone and vhost as -tc
    --show does; plan says what would change per host (+ added, ~ changed), and a plan
    that would be refused exits 1 with the reason."""
    from domtool.model import Record, Vhost, Zone, to_json

    fake, cfg, _ = site
    zone = Zone(
        name="example.org",
        owner="alice",
        records=(Record("www", "A", ("127.0.0.1",)),),
        nodes=("local",),
    )
    vhost = Vhost(
        fqdn="www.example.org",
        owner="alice",
        domain="example.org",
        nodes=("local",),
        document_root="/home/alice/www",
        user="alice",
        group="alice",
        server_admin="webmaster@example.org",
    )
    fake.handlers["describe"] = lambda m, a, p: {
        "domain": a["domain"],
        "hosts": {
            "local": {
                "host": "local.coop.example",
                "generation": 4,
                "zones": [to_json(zone)],
                "vhosts": [to_json(vhost)],
                "mail": [],
            }
        },
    }
    code, out, _ = run(capsys, "describe", "example.org", "--config", str(cfg))
    assert code == 0
    assert "local (local.coop.example), generation 4:" in out
    assert "zone example.org" in out and "document root  /home/alice/www" in out

    diff = {
        "local": {
            "added": ["vhost:www.example.org"],
            "changed": ["zone:example.org"],
            "removed": [],
        }
    }
    fake.handlers["plan"] = lambda m, a, p: (
        {"ok": True, "diagnostics": [], "refused": [], "hosts": diff}
        if a["files"][0]["name"] == "example.org"
        else {
            "ok": False,
            "diagnostics": [],
            "refused": ["alice does not own bob.example"],
            "hosts": {},
        }
    )
    code, out, _ = run(
        capsys, "plan", "--config", str(cfg), str(EXAMPLES / "alice" / "example.org")
    )
    assert code == 0 and "local: +vhost:www.example.org ~zone:example.org" in out
    code, out, _ = run(
        capsys, "plan", "--config", str(cfg), str(EXAMPLES / "errors" / "bob.example")
    )
    assert code == 1 and "would be refused" in out and "does not own bob.example" in out
