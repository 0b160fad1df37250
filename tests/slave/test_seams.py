"""The slave's seams: one interface suite over the real and the fake file system and
process runner (so the fakes the engine tests rely on behave like the real thing), then
what only the fakes do (faults, crashes, declared commands)."""

from __future__ import annotations

import errno
import http.server
import os
import socket
import threading
import time

import pytest

from domtool.slave.backend import Command, Probe
from domtool.slave.probes import RealProber
from domtool.slave.seams import (
    NOT_FOUND,
    TIMED_OUT,
    Crash,
    FakeClock,
    FakeFileSystem,
    FakeProcessRunner,
    RealFileSystem,
    Result,
    SubprocessRunner,
    UnexpectedCommand,
    atomic_write,
    makedirs,
    replace_symlink,
)

# ---------------------------------------------------------------------------
# File system: the interface suite


@pytest.fixture(params=["real", "fake"])
def fsroot(request, tmp_path):
    """(file system, an empty absolute directory on it)."""
    if request.param == "real":
        return RealFileSystem(), str(tmp_path / "root")
    return FakeFileSystem(), "/srv/root"


def test_write_read_and_truncate(fsroot):
    """write creates a file, a second write replaces all of it, read gives it back."""
    fs, root = fsroot
    makedirs(fs, root)
    fs.write(f"{root}/a", b"first version")
    fs.write(f"{root}/a", b"second")
    fs.fsync(f"{root}/a")
    assert fs.read(f"{root}/a") == b"second"
    assert fs.exists(f"{root}/a") and not fs.is_dir(f"{root}/a")


def test_fsync_many_syncs_every_file(fsroot):
    """fsync_many accepts many files at once (threads on a real disk) and fails on a
    missing one."""
    fs, root = fsroot
    makedirs(fs, root)
    paths = [f"{root}/u{i}" for i in range(20)]
    for p in paths:
        fs.write(p, p.encode())
    fs.fsync_many(paths)
    with pytest.raises(FileNotFoundError):
        fs.fsync_many([*paths, f"{root}/missing"])
    if isinstance(fs, FakeFileSystem):
        assert fs.reboot("visible").read(paths[7]) == paths[7].encode()
        assert fs.count("fsync") == 40


def test_missing_things_raise_file_not_found(fsroot):
    """read, listdir, readlink and remove of a missing path raise FileNotFoundError."""
    fs, root = fsroot
    makedirs(fs, root)
    for call in (fs.read, fs.listdir, fs.readlink, fs.remove, fs.rmtree):
        with pytest.raises(FileNotFoundError):
            call(f"{root}/missing")
    assert not fs.exists(f"{root}/missing") and not fs.is_symlink(f"{root}/missing")


def test_write_does_not_follow_a_symlink(fsroot):
    """A symlink planted where a file is written is refused, and its target untouched."""
    fs, root = fsroot
    makedirs(fs, root)
    fs.write(f"{root}/target", b"precious")
    fs.symlink(f"{root}/target", f"{root}/link")
    with pytest.raises(OSError) as info:
        fs.write(f"{root}/link", b"overwritten")
    assert info.value.errno == errno.ELOOP
    assert fs.read(f"{root}/target") == b"precious"


def test_makedirs_mkdir_listdir(fsroot):
    """makedirs creates parents once; mkdir of an existing name fails; listdir sorts."""
    fs, root = fsroot
    assert makedirs(fs, f"{root}/x/y") is True
    assert makedirs(fs, f"{root}/x/y") is False
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/x")
    for name in ("c", "a", "b"):
        fs.write(f"{root}/x/{name}", name.encode())
    assert fs.listdir(f"{root}/x") == ["a", "b", "c", "y"]
    assert fs.is_dir(f"{root}/x/y")
    fs.fsync_dir(f"{root}/x")


def test_rename_replaces_files_and_moves_directories(fsroot):
    """rename replaces an existing file, moves a directory with its content, and
    refuses to replace a non-empty directory."""
    fs, root = fsroot
    makedirs(fs, f"{root}/staging/1")
    makedirs(fs, f"{root}/generations")
    fs.write(f"{root}/staging/1/f", b"staged")
    fs.rename(f"{root}/staging/1", f"{root}/generations/1")
    assert fs.read(f"{root}/generations/1/f") == b"staged"
    assert fs.listdir(f"{root}/staging") == []
    fs.write(f"{root}/a", b"new")
    fs.write(f"{root}/b", b"old")
    fs.rename(f"{root}/a", f"{root}/b")
    assert fs.read(f"{root}/b") == b"new" and not fs.exists(f"{root}/a")
    makedirs(fs, f"{root}/staging/2")
    fs.write(f"{root}/staging/2/g", b"x")
    with pytest.raises(OSError) as info:
        fs.rename(f"{root}/staging/2", f"{root}/generations/1")
    assert info.value.errno in (errno.ENOTEMPTY, errno.EEXIST)


def test_atomic_write_leaves_no_temporary(fsroot):
    """atomic_write replaces the content and leaves only the target behind."""
    fs, root = fsroot
    makedirs(fs, root)
    atomic_write(fs, f"{root}/conf", b"one")
    atomic_write(fs, f"{root}/conf", b"two")
    assert fs.read(f"{root}/conf") == b"two"
    assert fs.listdir(root) == ["conf"]


def test_symlinks_relative_targets_and_atomic_replace(fsroot):
    """A relative symlink to a directory is followed by read and exists; replace_symlink
    swaps it; a dangling link exists as a link but not as a target."""
    fs, root = fsroot
    for g in ("1", "2"):
        makedirs(fs, f"{root}/generations/{g}")
        fs.write(f"{root}/generations/{g}/manifest", g.encode())
    fs.symlink("generations/1", f"{root}/current")
    assert fs.read(f"{root}/current/manifest") == b"1"
    assert fs.readlink(f"{root}/current") == "generations/1"
    assert fs.is_symlink(f"{root}/current") and not fs.is_dir(f"{root}/current")
    replace_symlink(fs, "generations/2", f"{root}/current")
    assert fs.read(f"{root}/current/manifest") == b"2"
    assert fs.listdir(root) == ["current", "generations"]
    replace_symlink(fs, "generations/9", f"{root}/current")
    assert fs.is_symlink(f"{root}/current") and not fs.exists(f"{root}/current")
    with pytest.raises(FileNotFoundError):
        fs.read(f"{root}/current/manifest")


def test_remove_and_rmtree(fsroot):
    """remove deletes a file or a symlink (not its target) and refuses a directory;
    rmtree deletes a whole tree."""
    fs, root = fsroot
    makedirs(fs, f"{root}/d/e")
    fs.write(f"{root}/d/e/f", b"x")
    fs.write(f"{root}/file", b"y")
    fs.symlink(f"{root}/file", f"{root}/link")
    fs.remove(f"{root}/link")
    assert fs.read(f"{root}/file") == b"y"
    with pytest.raises(IsADirectoryError):
        fs.remove(f"{root}/d")
    fs.rmtree(f"{root}/d")
    assert fs.listdir(root) == ["file"]


def test_link_makes_a_second_name_of_the_same_file(fsroot):
    """link gives a file a second name (same content, which stays when the first name
    goes); it refuses an existing destination and a directory, and does not follow a
    symlink at the source."""
    fs, root = fsroot
    makedirs(fs, f"{root}/a")
    makedirs(fs, f"{root}/b")
    fs.write(f"{root}/a/f", b"index")
    fs.fsync(f"{root}/a/f")
    fs.link(f"{root}/a/f", f"{root}/b/f")
    assert fs.read(f"{root}/b/f") == b"index"
    fs.rmtree(f"{root}/a")
    assert fs.read(f"{root}/b/f") == b"index"
    fs.write(f"{root}/b/g", b"other")
    with pytest.raises(FileExistsError):
        fs.link(f"{root}/b/f", f"{root}/b/g")
    with pytest.raises(OSError):
        fs.link(f"{root}/b", f"{root}/c")
    fs.symlink(f"{root}/b/f", f"{root}/s")
    fs.link(f"{root}/s", f"{root}/t")
    assert fs.is_symlink(f"{root}/t")


def test_fake_link_is_durable_once_its_directory_is_synced():
    """The linked file's content is the synced content of its source; the new name
    survives a crash only after fsync_dir of its directory."""
    fs = FakeFileSystem()
    makedirs(fs, "/d/old")
    fs.write("/d/old/f", b"synced")
    fs.fsync("/d/old/f")
    fs.fsync_dir("/d/old")
    fs.fsync_dir("/d")
    fs.mkdir("/d/new")
    fs.fsync_dir("/d")
    fs.link("/d/old/f", "/d/new/f")
    assert fs.count("link") == 1
    assert "/d/new/f" not in fs.reboot("synced").snapshot()
    fs.fsync_dir("/d/new")
    assert fs.reboot("synced").snapshot()["/d/new/f"] == b"synced"


# ---------------------------------------------------------------------------
# File system: what only the fake does


def test_fake_disk_full_at_the_nth_write_leaves_half_the_data():
    """ENOSPC is raised once, at the declared write; the file holds half the data; the
    next writes succeed; arm() restarts the count."""
    fs = FakeFileSystem()
    fs.mkdir("/d")
    fs.arm(fail={"write": 2})
    fs.write("/d/a", b"aaaa")
    with pytest.raises(OSError) as info:
        fs.write("/d/b", b"bbbb")
    assert info.value.errno == errno.ENOSPC
    assert fs.read("/d/b") == b"bb"
    fs.write("/d/c", b"cccc")
    assert fs.count("write") == 3


@pytest.mark.parametrize("kind", ["fsync", "fsync_dir", "rename", "mkdir", "symlink", "link"])
def test_fake_disk_full_at_other_operations_changes_nothing(kind):
    """ENOSPC at a rename, mkdir or symlink leaves the tree as it was."""
    fs = FakeFileSystem()
    fs.mkdir("/d")
    fs.write("/d/a", b"a")
    before = fs.snapshot()
    fs.arm(fail={kind: 1})
    call = {
        "fsync": lambda: fs.fsync("/d/a"),
        "fsync_dir": lambda: fs.fsync_dir("/d"),
        "rename": lambda: fs.rename("/d/a", "/d/b"),
        "mkdir": lambda: fs.mkdir("/d/e"),
        "symlink": lambda: fs.symlink("a", "/d/l"),
        "link": lambda: fs.link("/d/a", "/d/h"),
    }[kind]
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno == errno.ENOSPC
    assert fs.snapshot() == before
    assert fs.reboot("synced").snapshot() == {}  # nothing was ever synced


def test_fake_crash_stops_before_the_operation():
    """crash_at=k raises Crash instead of performing the k-th mutating operation."""
    fs = FakeFileSystem()
    fs.arm(crash_at=1)
    fs.mkdir("/d")
    with pytest.raises(Crash):
        fs.write("/d/a", b"x")
    assert fs.listdir("/d") == []
    assert not isinstance(Crash(), Exception)  # no `except Exception` swallows it


def test_fake_durability_of_symlink_swaps_and_new_directories():
    """A symlink swap not followed by a directory fsync is undone by a crash; a
    directory whose parent was not fsynced disappears with everything in it."""
    fs = FakeFileSystem()
    fs.mkdir("/s")
    fs.fsync_dir("/")
    fs.symlink("g1", "/s/current")
    fs.fsync_dir("/s")
    fs.symlink("g2", "/s/current.tmp")
    fs.rename("/s/current.tmp", "/s/current")
    fs.mkdir("/s/new")
    fs.write("/s/new/f", b"x")
    fs.fsync("/s/new/f")
    fs.fsync_dir("/s/new")
    synced = fs.reboot("synced")
    assert synced.readlink("/s/current") == "g1"
    assert synced.listdir("/s") == ["current"]
    visible = fs.reboot("visible")
    assert visible.readlink("/s/current") == "g2" and visible.read("/s/new/f") == b"x"


# ---------------------------------------------------------------------------
# Processes: the interface suite


ECHO = ("echo", "hello")
FAIL = ("sh", "-c", "echo oops >&2; exit 3")
MISSING = ("/nonexistent/domtool-no-such-binary",)


@pytest.fixture(params=["real", "fake"])
def runner(request):
    if request.param == "real":
        return SubprocessRunner()
    fake = FakeProcessRunner()
    fake.expect(*ECHO, stdout="hello\n")
    fake.expect(*FAIL, returncode=3, stderr="oops\n")
    fake.expect(*MISSING, returncode=NOT_FOUND, stderr="cannot run it")
    return fake


def test_runner_results(runner):
    """A command's exit status and output come back; a missing binary is status 127,
    not an exception."""
    ok = runner.run(Command(ECHO))
    assert ok == Result(0, "hello\n", "") and ok.ok
    bad = runner.run(Command(FAIL))
    assert bad.returncode == 3 and bad.stderr == "oops\n" and not bad.ok
    assert bad.output() == "oops"
    assert runner.run(Command(MISSING)).returncode == NOT_FOUND


@pytest.mark.parametrize("argv", [(), "echo hi", ("echo", "a\0b"), ("echo", 3)])
def test_runner_refuses_what_is_not_an_argv_tuple(runner, argv):
    """Empty, a shell string, a NUL byte or a non-string argument: ValueError."""
    with pytest.raises(ValueError):
        runner.run(Command(argv))


# ---------------------------------------------------------------------------
# Processes: what only the real or the fake does


def test_real_runner_kills_at_the_timeout():
    """A command past its time limit is killed (with its children) and reported."""
    t0 = time.monotonic()
    result = SubprocessRunner().run(Command(("sh", "-c", "sleep 5 & sleep 5"), timeout=0.3))
    assert result.returncode == TIMED_OUT and "timed out after 0.3 s" in result.stderr
    assert time.monotonic() - t0 < 3


def test_real_runner_scrubs_the_environment_and_closes_stdin(monkeypatch):
    """Only PATH and the locale reach the child; stdin is /dev/null, so a reader
    returns at once."""
    monkeypatch.setenv("DOMTOOL_SECRET", "leak")
    env = SubprocessRunner().run(Command(("env",)))
    names = sorted(line.split("=", 1)[0] for line in env.stdout.splitlines())
    assert names == ["LANG", "LC_ALL", "PATH"]
    assert SubprocessRunner().run(Command(("cat",), timeout=5)) == Result(0, "", "")
    assert "DOMTOOL_SECRET" in os.environ


def test_fake_runner_fails_on_unexpected_or_wrong_commands():
    """A command nobody declared, or another one than declared next, fails the test;
    every command is recorded; assert_all_ran names declared commands that never ran."""
    fake = FakeProcessRunner()
    with pytest.raises(UnexpectedCommand):
        fake.run(Command(("rndc", "reload")))
    fake.expect("named-checkconf", "-z")
    with pytest.raises(UnexpectedCommand, match="expected"):
        fake.run(Command(("rndc", "reload")))
    assert fake.argvs == [("rndc", "reload"), ("rndc", "reload")]
    fake.expect("apache2ctl", "-t")
    with pytest.raises(AssertionError, match="apache2ctl"):
        fake.assert_all_ran()


def test_fake_runner_handler_answers_after_the_declared_commands():
    """Declared commands are consumed first, then the handler answers."""
    fake = FakeProcessRunner(handler=lambda cmd: Result(0, " ".join(cmd.argv)))
    fake.expect("first", returncode=1)
    assert fake.run(Command(("first",))).returncode == 1
    assert fake.run(Command(("second", "x"))).stdout == "second x"
    fake.assert_all_ran()


def test_result_output_is_trimmed():
    """Checker output is joined, stripped and trimmed so a report stays readable."""
    r = Result(1, "out\n", "x" * 5000)
    text = r.output(limit=100)
    assert text.startswith("out\nxxx") and text.endswith("...(trimmed)") and len(text) < 120


def test_fake_clock_moves_only_when_told():
    """sleep() and advance() move the fake clock; nothing else does."""
    clock = FakeClock(now=10.0)
    clock.sleep(1.5)
    clock.advance(2)
    assert clock.time() == 13.5


# ---------------------------------------------------------------------------
# Probes: the real prober against tiny servers on loopback


@pytest.fixture
def http_server():
    """A loopback HTTP server: 204 at /probe for Host a.example, 421 for other hosts,
    and a redirect at / (which the prober must not follow)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers["Host"] != "a.example":
                self.send_response(421)
            elif self.path == "/probe":
                self.send_response(204)
            else:
                self.send_response(302)
                self.send_header("Location", "/probe")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_probe(http_server):
    """The status must match; the Host header and path are sent; no redirect is
    followed; a closed port is a failure with a reason, not an exception."""
    p = RealProber(timeout=2)
    assert p.probe(Probe("http", ("127.0.0.1", http_server, "a.example", 204, "/probe"), "a"))
    assert p.probe(Probe("http", ("127.0.0.1", http_server, "a.example", 302), "a")) is True
    wrong = p.probe(Probe("http", ("127.0.0.1", http_server, "b.example", 204, "/probe"), "b"))
    assert wrong == f"http://b.example/probe at 127.0.0.1:{http_server} answered 421, expected 204"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = p.probe(Probe("http", ("127.0.0.1", closed, "a.example", 204), "a"))
    assert isinstance(refused, str) and "refused" in refused.lower()
    assert "unknown probe kind" in p.probe(Probe("ftp", (), "a"))


@pytest.fixture
def dns_server():
    """A loopback UDP DNS responder: SOA serial 7 for a.example, REFUSED otherwise."""
    dns_message = pytest.importorskip("dns.message")
    import dns.flags
    import dns.rcode
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns_message.from_wire(data)
            reply = dns_message.make_response(query)
            name = query.question[0].name.to_text()
            if name == "a.example.":
                reply.flags |= dns.flags.AA
                reply.answer.append(
                    dns.rrset.from_text(name, 60, "IN", "SOA", "ns. host. 7 60 60 60 60")
                )
            else:
                reply.set_rcode(dns.rcode.REFUSED)
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_dns_probe(dns_server):
    """An authoritative SOA with the expected serial passes; another serial, a refused
    name or a server that does not answer fail with a reason."""
    p = RealProber(timeout=0.5)
    assert p.probe(Probe("dns", ("127.0.0.1", dns_server, "a.example", "SOA", 7), "a")) is True
    assert p.probe(Probe("dns", ("127.0.0.1", dns_server, "a.example", "SOA", None), "a"))
    stale = p.probe(Probe("dns", ("127.0.0.1", dns_server, "a.example", "SOA", 8), "a"))
    assert stale == f"a.example SOA at 127.0.0.1:{dns_server}: serial 7, expected 8"
    refused = p.probe(Probe("dns", ("127.0.0.1", dns_server, "b.example", "SOA", None), "b"))
    assert refused.endswith("REFUSED")
    silent = p.probe(Probe("dns", ("127.0.0.1", 9, "a.example", "SOA", None), "a"))
    assert isinstance(silent, str)


def test_fake_mixed_images_mix_directories_independently():
    """Two directories each with an unsynced new entry: across seeded mixed images,
    every combination (neither, one, the other, both kept) comes back, and the same
    seed gives the same image."""
    fs = FakeFileSystem()
    for d in ("/a", "/b"):
        fs.mkdir(d)
    fs.fsync_dir("/")
    for d in ("/a", "/b"):
        fs.write(f"{d}/f", b"x")
        fs.fsync(f"{d}/f")
    seen = set()
    for _, image in fs.crash_images(mixed=32):
        seen.add((image.exists("/a/f"), image.exists("/b/f")))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}
    assert fs.reboot("mixed", seed=3).snapshot() == fs.reboot("mixed", seed=3).snapshot()
