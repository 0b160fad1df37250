"""Import rules, checked on the sources: the core package ``domtool/`` is pure (no reactor,
sockets, subprocesses or file writes), and the sides stay apart: ``slave/`` never imports
``dispatcher/`` nor the reverse, and ``net/`` and ``util/`` (what both sides and the clients share)
import neither; and no production folder (nor the Debian packaging's scripts) imports the
developers' local-site tooling ``devsite/`` (``domtool.devsite``)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "domtool"

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

#: the local site of ``domtool-quickstart`` and its daemons: tooling, never production's
DEV_TOOLING = "domtool.devsite"
#: what is installed or shipped for a real site (``debian/``: the packages' own scripts)
PRODUCTION = ("domtool", "dispatcher", "slave", "client", "net", "util", "policies", "debian")

#: folder -> the installed packages its modules may not import (pyproject's package-dir
#: installs ``slave/`` as ``domtool.slave``, ...).
LAYERS = {
    folder: (*forbidden, DEV_TOOLING)
    for folder, forbidden in {
        **{folder: () for folder in PRODUCTION},
        "slave": ("domtool.dispatcher",),
        "dispatcher": ("domtool.slave",),
        "net": ("domtool.dispatcher", "domtool.slave", "domtool.client"),
        "util": ("domtool.dispatcher", "domtool.slave", "domtool.client", "domtool.net"),
    }.items()
}


def _py_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no sources found under {folder}"
    return files


def _package_of(path: Path, root: Path) -> list[str]:
    """The installed package of a source file: ``slave/backends/bind.py`` ->
    ``["domtool", "slave", "backends"]``; ``domtool/lang/x.py`` -> ``["domtool", "lang"]``."""
    parts = list(path.relative_to(root).parent.parts)
    return parts if parts[:1] == ["domtool"] else ["domtool", *parts]


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every (line, absolute module name) a source file imports, anywhere in it (also
    inside functions), relative imports resolved against its installed package, and
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    package = _package_of(path, root)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # from . import x: each name may be a module
                    out += [(node.lineno, f"{module}.{a.name}") for a in node.names]
                    continue
            else:
                module = node.module or ""
            out.append((node.lineno, module))
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                out.append((node.lineno, first.value))
    return out


def called_names(path: Path) -> list[tuple[int, str]]:
    """Every (line, name) of a call in a source file: ``open(...)`` and ``p.open(...)``
    both give ``open``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
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
            if name is not None:
                out.append((node.lineno, name))
    return out


def impure_imports(files, root: Path = ROOT) -> list[str]:
    """``file:line: import x`` for each import of a module with side effects."""
    return [
        f"{p.relative_to(root)}:{line}: import {m}"
        for p in files
        for line, m in imported_modules(p, root)
        if m.split(".")[0] in FORBIDDEN_MODULES
    ]


def writing_calls(files, root: Path = ROOT) -> list[str]:
    """``file:line: name()`` for each call that opens, writes or removes files."""
    return [
        f"{p.relative_to(root)}:{line}: {name}()"
        for p in files
        for line, name in called_names(p)
        if name in FORBIDDEN_CALLS
    ]


def crossing_imports(root: Path = ROOT, layers=LAYERS) -> list[str]:
    """``file:line: import x`` for each import a folder of ``layers`` may not make."""
    out = []
    for folder, forbidden in layers.items():
        for p in _py_files(root / folder):
            for line, m in imported_modules(p, root):
                if any(m == f or m.startswith(f + ".") for f in forbidden):
                    out.append(f"{p.relative_to(root)}:{line}: import {m}")
    return out


def test_core_imports_nothing_with_side_effects():
    """No module under domtool/ imports a networking, process or file-writing module."""
    assert impure_imports(_py_files(CORE)) == []


def test_core_calls_no_file_writing_functions():
    """No call in domtool/ opens files or writes them (reading package data goes through
    importlib.resources in the one loader that needs it)."""
    assert writing_calls(_py_files(CORE)) == []


def test_slave_and_dispatcher_never_import_each_other():
    """slave/ imports nothing of domtool.dispatcher, dispatcher/ nothing of domtool.slave,
    and net/ neither (nor the clients): what both sides need is in net/ or the core."""
    assert crossing_imports() == []


def test_production_never_imports_the_dev_tooling():
    """No module of domtool/, dispatcher/, slave/, client/, net/, util/, policies/ nor a
    script of debian/ imports ``domtool.devsite`` (the quickstart's local site), so
    neither the services nor the Debian packages need it."""
    assert set(PRODUCTION) <= set(LAYERS)
    assert all(DEV_TOOLING in forbidden for forbidden in LAYERS.values())
    assert crossing_imports() == []


def test_the_checks_catch_violations(tmp_path):
    """The same scanners the tests above use flag an offending tree (so they can fail),
    and pass a clean one."""
    core = tmp_path / "domtool"
    core.mkdir()
    (core / "bad.py").write_text("import subprocess\n\ndef f():\n    open('x', 'w')\n")
    (core / "good.py").write_text("import attrs\nfrom domtool import model\n")
    files = _py_files(core)
    assert impure_imports(files, tmp_path) == ["domtool/bad.py:1: import subprocess"]
    assert writing_calls(files, tmp_path) == ["domtool/bad.py:4: open()"]
    for side, other in (("slave", "dispatcher"), ("dispatcher", "slave")):
        (tmp_path / side / "backends").mkdir(parents=True)
        (tmp_path / side / "ok.py").write_text("from domtool.net import tls\n")
        (tmp_path / side / "backends" / "late.py").write_text(
            f"def f():\n    from domtool.{other} import x\n"
        )
        (tmp_path / side / "rel.py").write_text(f"from ..{other} import y\n")
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "dyn.py").write_text(
        "import importlib\nimportlib.import_module('domtool.slave.agent')\n"
    )
    (tmp_path / "util").mkdir()
    (tmp_path / "util" / "files.py").write_text("from domtool.net import tls\n")
    # the dev tooling: imported from production folders in each way a module can be
    (core / "rel.py").write_text("def f():\n    from .devsite import localdaemons\n")
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "cli.py").write_text("import domtool.devsite.quickstart\n")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "q.py").write_text("__import__('domtool.devsite')\n")
    (tmp_path / "debian").mkdir()
    (tmp_path / "debian" / "site-files.py").write_text(
        "from domtool.devsite.localdaemons import bootstrap_state\n"
    )
    (tmp_path / "client" / "ok.py").write_text("from domtool.slave import sitefiles\n")
    (tmp_path / "devsite").mkdir()  # the tooling itself may import anything
    (tmp_path / "devsite" / "site.py").write_text("from domtool.devsite import localdb\n")
    assert sorted(crossing_imports(tmp_path)) == [
        "client/cli.py:1: import domtool.devsite.quickstart",
        "debian/site-files.py:1: import domtool.devsite.localdaemons",
        "dispatcher/backends/late.py:2: import domtool.slave",
        "dispatcher/rel.py:1: import domtool.slave",
        "domtool/rel.py:2: import domtool.devsite",
        "net/dyn.py:2: import domtool.slave.agent",
        "policies/q.py:1: import domtool.devsite",
        "slave/backends/late.py:2: import domtool.dispatcher",
        "slave/rel.py:1: import domtool.dispatcher",
        "util/files.py:1: import domtool.net",
    ]


def _loaded_by(*folders: str) -> list[str]:
    """The domtool modules loaded, in a fresh interpreter, by importing every module of
    each of ``folders`` (its installed package ``domtool.<folder>``): imports through any
    other package count too."""
    import json
    import subprocess
    import sys

    modules = [
        ".".join([*_package_of(p, ROOT), p.stem])
        for folder in folders
        for p in _py_files(ROOT / folder)
        if p.name != "__init__.py"
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('domtool.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_no_side_loads_the_other_even_through_a_third_package():
    """Importing every slave module loads no dispatcher module, and the reverse (through
    policies/, client/ or the core as much as directly)."""
    slave = _loaded_by("slave")
    assert "domtool.net.session" in slave  # the scan did import something
    assert [m for m in slave if m.startswith("domtool.dispatcher")] == []
    assert [m for m in _loaded_by("dispatcher") if m.startswith("domtool.slave")] == []


def test_no_production_module_loads_the_dev_tooling():
    """Importing every module of every production package loads no ``domtool.devsite``
    module, through whatever other package."""
    loaded = _loaded_by(*(f for f in PRODUCTION if f != "debian"))
    assert "domtool.client.admin_cli" in loaded and "domtool.lang.checker" in loaded
    assert [m for m in loaded if m == DEV_TOOLING or m.startswith(DEV_TOOLING + ".")] == []
