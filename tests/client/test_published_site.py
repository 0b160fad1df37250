"""The configurations of the published shapes (tests/data/published) submitted as alice
through the local site (``domtool-quickstart --serve``) with the real ``domtool``: each
is applied and answered by named and apache2 as its comment says; the self-contained
program and two explicit www sites are refused with their spans and change nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from domtool.devsite.localdaemons import dns_records, http_get
from tests.conftest import require_binary
from tests.served_site import served_site

BIN = Path(sys.executable).parent
PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "published"


@pytest.mark.daemons
@pytest.mark.slow
def test_published_shapes_submit_through_the_local_site():
    require_binary("named", "named-checkzone", "named-checkconf", "rndc", "apache2")
    with served_site("domtool-pub-") as s:
        ep = s.endpoints
        dns_port = int(ep["dns"].rsplit(":", 1)[1])
        http_port = int(ep["http"].rsplit(":", 1)[1])

        def submit(*paths: Path) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(BIN / "domtool"), "--config", ep["client_config"], *map(str, paths)],
                capture_output=True,
                text=True,
                timeout=60,
            )

        def shape(name: str) -> list[Path]:
            return sorted((PUBLISHED / name).iterdir())

        def a(name: str) -> list[str]:
            return dns_records(dns_port, name, "A")

        def describe(domain: str) -> str:
            done = subprocess.run(
                [str(BIN / "domtool"), "--config", ep["client_config"], "describe", domain],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert a("example.net")  # the shared example.net: www also on the bare domain

        # dom with alice's own www (and example.net's www without the bare domain).
        done = submit(*shape("www-direct"))
        assert done.returncode == 0, done.stderr + done.stdout
        assert a("www.example.org") and a("example.org")
        assert a("www.example.net") and a("example.net") == []
        # her own root replaced dom's public_html site, on the host as Apache serves it
        assert "document root  /home/alice/www\n" in describe("example.org")
        assert http_get(http_port, "www.example.org")[0] in (403, 404)  # absent here

        for name in ("www-let", "www-function", "www-if", "guide-mix", "literals"):
            done = submit(*shape(name))
            assert done.returncode == 0, name + done.stderr + done.stdout
        assert a("shop.example.org") and a("store.example.org")
        assert "document root  /home/alice/net\n" in describe("example.net")

        done = submit(*shape("www-cname"))
        assert done.returncode == 0, done.stderr + done.stdout
        assert dns_records(dns_port, "www.example.org", "CNAME") == [
            "www.example.org. 3600 CNAME alice.pages.example."
        ]
        assert a("example.org") == []

        # Refused: nothing changes (www stays a CNAME), the error has its span.
        for rel, span in (
            ("selfcontained/example.org", "20.0-20.19"),
            ("errors/two-www/example.org", "7.4-7.14"),
        ):
            done = submit(PUBLISHED / rel)
            assert done.returncode != 0, rel
            assert f"example.org:{span}:error:" in done.stderr, done.stderr
        assert dns_records(dns_port, "www.example.org", "CNAME")
