"""The ``domtool -tc`` command-line contract: exit codes, error shape, --show and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domtool.client.domtool_cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
ALICE_PERMS = str(EXAMPLES / "alice.perms")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_alice_examples_check_with_exit_0(capsys):
    """Both of alice's configs check for alice: exit 0, nothing on stderr."""
    files = sorted(str(p) for p in (EXAMPLES / "alice").iterdir())
    code, out, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", *files)
    assert code == 0, err
    assert "error" not in err


@pytest.mark.parametrize(
    "name, span, needle",
    [
        ("bob.example", "3.4-3.16", "Needed type: your_domain"),
        ("alias-in-domain", None, "Need: Vhost"),
        ("foreign-path", None, "Needed type: your_path"),
    ],
)
def test_error_examples_exit_1_with_published_shape(capsys, name, span, needle):
    """Each refused example exits 1 and prints FILE:L.C-L.C:error: with its detail lines."""
    path = str(EXAMPLES / "errors" / name)
    code, out, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", path)
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:")
    assert ":error: " in first
    if span:
        assert first.startswith(f"{path}:{span}:error: ")
    assert needle in err
    assert out == ""


def test_mixed_good_and_bad_files_exit_1(capsys):
    """One bad file among good ones makes the whole run exit 1, naming only the bad file."""
    good = str(EXAMPLES / "alice" / "example.org")
    bad = str(EXAMPLES / "errors" / "bob.example")
    code, _, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", good, bad)
    assert code == 1
    assert bad in err and f"{good}:" not in err


def test_usage_errors_exit_2(capsys, tmp_path):
    """Missing files, unreadable permissions and unknown options are usage errors (2)."""
    assert run(capsys, "-tc")[0] == 2
    assert run(capsys, "-tc", str(tmp_path / "missing"))[0] == 2
    assert run(capsys, "-tc", "--perms", str(tmp_path / "nope"), "x")[0] == 2
    assert run(capsys, "--bogus")[0] == 2
    bad_perms = tmp_path / "bad.perms"
    bad_perms.write_text("colour: blue\n")
    f = tmp_path / "example.org"
    f.write_text('dom "example.org" with end;\n')
    assert run(capsys, "-tc", "--perms", str(bad_perms), str(f))[0] == 2


def test_non_utf8_file_is_an_error_not_a_traceback(capsys, tmp_path):
    """Bytes that are not UTF-8 give a positioned error and exit 1."""
    f = tmp_path / "junk"
    f.write_bytes(b'dom "ex\xffample.org" with end;')
    code, _, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", str(f))
    assert code == 1
    assert f"{f}:1.7-1.7:error:" in err


def test_show_and_json_print_the_desired_state(capsys):
    """--show prints a readable listing; --json prints the model as JSON."""
    f = str(EXAMPLES / "alice" / "example.org")
    code, out, _ = run(capsys, "-tc", "--show", "--perms", ALICE_PERMS, "--user", "alice", f)
    assert code == 0
    assert "zone example.org" in out and "vhost www.example.org" in out
    code, out, _ = run(capsys, "-tc", "--json", "--perms", ALICE_PERMS, "--user", "alice", f)
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "DesiredState"
    assert [z["name"] for z in data["zones"]] == ["example.org"]
    assert any(v["fqdn"] == "www.example.org" for v in data["vhosts"])


PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "published"
PUBLISHED_OK = (
    "www-direct",
    "www-let",
    "www-function",
    "www-if",
    "www-cname",
    "literals",
    "guide-mix",
)


@pytest.mark.parametrize("shape", PUBLISHED_OK)
def test_published_shapes_check_with_exit_0(capsys, shape):
    """Configurations of the published shapes (dom with the member's own www, ...) pass
    ``domtool -tc`` for alice: exit 0, nothing on stderr."""
    files = sorted(str(p) for p in (PUBLISHED / shape).iterdir())
    code, out, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", *files)
    assert (code, err) == (0, "")


def test_self_contained_program_checks_with_a_note_and_exit_0(capsys):
    """-tc type-checks a program of its own extern declarations: exit 0, and a note
    (not an error) at the first extern val evaluation would need."""
    path = str(PUBLISHED / "selfcontained" / "example.org")
    code, out, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", path)
    assert code == 0
    assert err.startswith(f"{path}:20.0-20.19:note: type-checks; not evaluated: domain ")
    assert ":error:" not in err


@pytest.mark.parametrize(
    "name, span, needle",
    [
        ("two-www", "7.4-7.14", "First configured at: "),
        ("selfcontained-context", "12.2-12.36", "Need: Vhost"),
        ("email-space", "7.9-7.30", "Needed type: email"),
        ("unchecked-type", "8.7-8.13", "has no checker for literals"),
    ],
)
def test_published_refusals_exit_1_with_their_span(capsys, name, span, needle):
    path = str(PUBLISHED / "errors" / name / "example.org")
    code, out, err = run(capsys, "-tc", "--perms", ALICE_PERMS, "--user", "alice", path)
    assert code == 1
    assert err.startswith(f"{path}:{span}:error: ")
    assert needle in err
