"""The core package ``domtool/`` is pure: no reactor, sockets, subprocesses or file writes."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "domtool"

FORBIDDEN_MODULES = {
    "twisted",
    "socket",
    "subprocess",
    "asyncio",
    "shutil",
    "tempfile",
    "multiprocessing",
    "threading",
    "sqlite3",
    "ssl",
    "urllib",
    "http",
}
FORBIDDEN_CALLS = {
    "open",
    "exec",
    "eval",
    "system",
    "popen",
    "write_text",
    "write_bytes",
    "unlink",
    "mkdir",
    "rename",
    "replace",
    "remove",
}


def _core_files():
    files = sorted(CORE.rglob("*.py"))
    assert files, "no core sources found"
    return files


def test_core_imports_nothing_with_side_effects():
    """No module under domtool/ imports a networking, process or file-writing module."""
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno}: import {n}")
    assert offenders == []


def test_core_calls_no_file_writing_functions():
    """No call in domtool/ opens files or writes them (reading package data goes through
    importlib.resources in the one loader that needs it)."""
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else None
                )
                if name in FORBIDDEN_CALLS:
                    offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno}: {name}()")
    assert offenders == []


def test_the_check_catches_a_violation(tmp_path):
    """The purity scan really flags an offending import (so the test above can fail)."""
    src = "import subprocess\nopen('x', 'w')\n"
    tree = ast.parse(src)
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    calls = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    ]
    assert "subprocess" in imports and "open" in calls
