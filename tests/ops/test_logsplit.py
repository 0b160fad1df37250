"""The log splitter's routing, without Apache: which vhost a line names, and that a line
of no member, of a system account or of a hostile name goes to the site's own log."""

from __future__ import annotations

import json
import os

from domtool.slave.logsplit import Splitter


def _site(tmp_path, owners: dict[str, str]):
    gen = tmp_path / "state" / "generations" / "1"
    gen.mkdir(parents=True)
    units = [
        {"key": f"vhost:{v}", "owner": o, "sha": "0", "ext": "conf"} for v, o in owners.items()
    ]
    (gen / "manifest.json").write_text(json.dumps({"backends": {"apache": {"units": units}}}))
    os.symlink("generations/1", tmp_path / "state" / "current")
    return tmp_path / "state"


def test_the_vhost_of_access_and_error_lines():
    a = Splitter("access", "/nonexistent", "/nonexistent", "/dev/null")
    assert (
        a.vhost(b'WWW.Example.ORG 127.0.0.1 - - [x] "GET / HTTP/1.1" 200 1\n') == "www.example.org"
    )
    assert a.vhost(b"../../etc/passwd x\n") is None
    assert a.vhost(b"a/b x\n") is None
    assert a.vhost(b"\xff\xfe x\n") is None
    e = Splitter("error", "/nonexistent", "/nonexistent", "/dev/null")
    line = b"[Thu Dec 03 07:47:58 2026] [core:error] [www.example.org] [pid 1] x: y: [client 1] z\n"
    assert e.vhost(line) == "www.example.org"
    assert e.vhost(b"no brackets at all\n") is None


def test_lines_of_no_member_or_of_a_system_account_go_to_the_site_log(tmp_path):
    state = _site(tmp_path, {"www.root.example": "root", "www.ghost.example": "nosuchuser9"})
    site_log = tmp_path / "site.log"
    s = Splitter("access", state, tmp_path / "members", str(site_log))
    for line in (b"www.root.example a\n", b"www.ghost.example b\n", b"other.example c\n", b"d"):
        s.write(line)
    s.close()
    assert site_log.read_bytes() == b"www.root.example a\nwww.ghost.example b\nother.example c\nd\n"
    assert not (tmp_path / "members").exists()


def test_at_most_max_open_files_are_held_whatever_the_number_of_vhosts(tmp_path, monkeypatch):
    from domtool.slave import logsplit

    names = {f"www.m{i}.example": f"m{i}" for i in range(10)}
    state = _site(tmp_path, names)
    monkeypatch.setattr(logsplit, "MAX_OPEN", 3)
    monkeypatch.setattr(Splitter, "_account", lambda self, m: (os.getuid(), os.getgid()))
    s = Splitter("access", state, tmp_path / "members", str(tmp_path / "site.log"))
    for round_ in range(3):
        for name in names:
            s.write(f"{name} line {round_}\n".encode())
            assert len(s._files) <= 3
    s.close()
    for name, member in names.items():
        text = (tmp_path / "members" / member / f"{name}.access.log").read_text()
        assert text == "".join(f"{name} line {r}\n" for r in range(3))
