"""``domtool-quickstart``: the whole local site. The daemon test runs it with --serve in a
subprocess, submits a changed config as alice with the real ``domtool --config``, sees the
change in named's and apache2's answers, then SIGTERMs it and finds every process gone.
The fast tests cover the directory guard and the site's parts that need no daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from domtool.devsite import quickstart
from domtool.devsite.localdaemons import dns_records, http_get, wait_for
from tests.conftest import require_binary
from tests.served_site import served_site

BIN = Path(sys.executable).parent


def _mailman_get(url: str, path: str) -> dict:
    """GET a path of Mailman's REST API at a URL carrying its credentials."""
    import urllib.parse

    from domtool.slave.mailman_rest import Client, RestConfig

    u = urllib.parse.urlsplit(url)
    plain = f"{u.scheme}://{u.hostname}:{u.port}{u.path}"
    client = Client(RestConfig(plain, u.username, u.password, ledger="/nonexistent"))
    return client.get(path)


def _mailman_owners(url: str, fqdn: str) -> list[str]:
    """The owners of a list, over Mailman's REST API."""
    from domtool.slave.mailman_rest import list_id

    data = _mailman_get(url, f"/lists/{list_id(fqdn)}/roster/owner")
    return sorted(e["email"] for e in data.get("entries", []))


@pytest.mark.daemons
@pytest.mark.slow
def test_served_site_takes_a_members_change_and_stops_cleanly():
    """--serve writes endpoints.json; alice's changed example.org, submitted with
    ``domtool --config``, is answered by named (a new A record) and apache2 (a new
    document root); SIGTERM stops the quickstart and every process it started."""
    require_binary("named", "named-checkzone", "named-checkconf", "rndc", "apache2")
    # Apache's children (www-data when root) must reach the document root: not under
    # pytest's private tmp directory.
    with served_site("domtool-qs-") as s:
        d, site, ep = s.dir, s.site, s.endpoints
        assert set(ep) >= {"dispatcher", "dns", "http", "client_config", "postgres", "mysql"}
        dns_port = int(ep["dns"].rsplit(":", 1)[1])
        http_port = int(ep["http"].rsplit(":", 1)[1])
        # alice's list exists in the site's Mailman core with its owner (issue 10), read
        # with the REST URL endpoints.json gives; the summary showed it.
        assert _mailman_owners(ep["mailman_rest"], "team@lists.example.org") == [
            "alice@example.org"
        ]
        assert "team@lists.example.org" in s.log_text()
        if ep.get("smtp"):
            # the site's Exim routes the list's address to Mailman over LMTP: a stranger's
            # post is held in Mailman's queue
            import smtplib

            from domtool.slave.mailman_rest import list_id

            host, port = ep["smtp"].rsplit(":", 1)
            subject = "to alice's list"
            msg = f"From: x@outside.example\r\nSubject: {subject}\r\n\r\nhi\r\n"
            with smtplib.SMTP(host, int(port), timeout=30) as s:
                assert s.sendmail("x@outside.example", ["team@lists.example.org"], msg) == {}

            def held():
                data = _mailman_get(
                    ep["mailman_rest"], f"/lists/{list_id('team@lists.example.org')}/held"
                )
                return [e for e in data.get("entries", []) if e.get("subject") == subject]

            wait_for(held, timeout=60, what="the post held in Mailman's queue")
        rm = subprocess.run(
            [str(BIN / "domtool"), "--config", ep["client_config"], "list", "rm"]
            + ["team@lists.example.org", "--doit"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rm.returncode == 1 and "still in your configuration" in rm.stderr, rm
        # Before: the example's www.example.org answers (its root does not exist here).
        assert http_get(http_port, "www.example.org")[0] in (403, 404)

        root = site / "home" / "alice" / "public_html" / "changed"
        root.mkdir()
        root.chmod(0o755)
        (root / "index.html").write_text("changed by the test\n")
        (root / "index.html").chmod(0o644)
        conf = d / "example.org"
        conf.write_text(
            f'dom "example.org" where DocumentRoot = "{root}" with\n'
            '  dnsA "changed" "127.0.0.9";\nend;\n'
        )
        done = subprocess.run(
            [str(BIN / "domtool"), "--config", ep["client_config"], str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert dns_records(dns_port, "changed.example.org", "A") == [
            "changed.example.org. 3600 A 127.0.0.9"
        ]
        status, body = http_get(http_port, "www.example.org")
        assert (status, body) == (200, b"changed by the test\n")
        # The other domain alice submitted earlier is still served.
        assert dns_records(dns_port, "www.example.net", "A")
        # What the host holds, as alice sees it, and the host as the operator sees it.
        shown = subprocess.run(
            [str(BIN / "domtool"), "--config", ep["client_config"], "describe", "example.org"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert f"document root  {root}" in shown.stdout
        hosts = subprocess.run(
            [str(BIN / "domtool-admin"), "--config", ep["admin_config"], "hosts"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert hosts.returncode == 0 and hosts.stdout.startswith("local: up; generation 2")
        # alice's databases on the site's real PostgreSQL and MariaDB (issue 10).
        from tests.client.quickstart_db_checks import check_databases

        require_binary("mariadbd", "mariadb-install-db")
        check_databases(ep)

        # The slave checked alice's units against her admin-signed grants (issue 13).
        serials = json.loads(
            (site / "slave" / "state" / "agent" / "grant-serials.json").read_text()
        )
        assert serials == {"alice": 1}
        assert "no grant_keys configured" not in (site / "slave" / "slave.log").read_text()


def test_refuses_a_directory_it_did_not_make(tmp_path):
    """A non-empty directory without quickstart.json is never wiped: a clear error."""
    (tmp_path / "precious").write_text("x")
    site = quickstart.LocalSite(tmp_path, quickstart.Progress(1, quiet=True))
    with pytest.raises(quickstart.SiteError, match="not made by domtool-quickstart"):
        site.prepare_dir()
    assert (tmp_path / "precious").exists()


def test_replaces_its_own_previous_site(tmp_path):
    """A directory holding quickstart.json is replaced by a fresh site."""
    (tmp_path / quickstart.MARKER).write_text("{}")
    (tmp_path / "old").write_text("x")
    site = quickstart.LocalSite(tmp_path, quickstart.Progress(1, quiet=True))
    site.prepare_dir()
    assert not (tmp_path / "old").exists() and (tmp_path / quickstart.MARKER).exists()


def test_pki_gives_the_operator_a_loadable_client_config(tmp_path):
    """The operator's certificate and client config load and point at the dispatcher's
    port under its host name; the key is private. (alice's come from adduser.)"""
    from domtool.client import config as client_config

    site = quickstart.LocalSite(tmp_path / "s", quickstart.Progress(1, quiet=True))
    site.prepare_dir()
    site.build_pki()
    assert site.member_config is None
    for path in (site.admin_config,):
        c = client_config.load(path)
        assert c.name == quickstart.DISPATCHER and c.port == site.ports["dispatcher"]
        assert Path(c.key).stat().st_mode & 0o777 == 0o600
        assert Path(c.certificate).is_file() and Path(c.ca).is_file()


def test_a_tree_behind_a_closed_directory_is_not_reachable_by_others(tmp_path):
    """The database servers' users need o+x on every directory above their trees; the
    quickstart moves the trees to /tmp otherwise."""
    from domtool.devsite.localdb import reachable_by_others

    closed = tmp_path / "closed"
    (closed / "site").mkdir(parents=True)
    closed.chmod(0o700)
    assert not reachable_by_others(closed / "site")
    assert reachable_by_others(Path("/tmp"))
