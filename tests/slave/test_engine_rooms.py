"""The engine's rooms know no daemon: engine, generation store, bisector and their errors.

Everything daemon-specific is behind ``slave/backend.py``; a new backend must need no
change here. The code (not its docstrings and comments, which may give examples) of these
modules names no daemon, daemon tool or backend module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SLAVE = Path(__file__).resolve().parents[2] / "slave"
ROOMS = ("engine.py", "generations.py", "bisect.py", "engine_errors.py")
DAEMONS = (
    "bind", "named-checkzone", "named-checkconf", "named.conf", "rndc", "zone",
    "apache", "httpd", "vhost", "exim", "courier", "mailman", "postgres", "mysql", "mariadb", "nft", "cgroup", "systemd", "spamassassin", "backends.",
)  # fmt: skip


def code_words(source: str) -> list[str]:
    """Every name, attribute, import and string constant of the code, docstrings aside."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.append(node.value)
        elif isinstance(node, ast.ImportFrom):
            words.append(node.module or "")
            words.extend(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            words.extend(a.name for a in node.names)
    return words


# whole words ("zone", not "timezone"; "named-checkconf", not the word "named")
WORD = re.compile(r"(?<![a-z])(" + "|".join(map(re.escape, DAEMONS)) + r")s?(?![a-z])")


@pytest.mark.parametrize("room", ROOMS)
def test_the_engine_rooms_name_no_daemon(room: str):
    words = code_words((SLAVE / room).read_text())
    assert len(words) > 20  # (the scanner sees the code)
    found = sorted({w for w in words if WORD.search(w.lower())})
    assert found == [], f"{room} names daemons: {found}"


def test_the_scanner_finds_a_daemon_name_in_code_but_not_in_docstrings():
    source = '"""Reloads named."""\nimport os\ndef f():\n    """rndc"""\n    return ["rndc", "reload", "named-checkzone"]\n'
    found = [w for w in code_words(source) if WORD.search(w.lower())]
    assert found == ["rndc", "named-checkzone"]
    assert "Reloads named." not in code_words(source)
