"""The local site's mailing lists: Mailman 3 core in ``domtool-quickstart``.

When Mailman is installed, the quickstart starts a Mailman core of its own under
``DIR/mailman`` (``domtool.devsite.mailman_daemon``: REST and LMTP on free loopback ports,
SQLite in its var dir), enables the slave's ``mailman`` backend, submits alice's list
config ``DIR/alice/lists.example.org`` (the list team@lists.example.org, owned by
alice@example.org) with her examples, shows the lists Mailman then holds, and adds
``"mailman_rest"`` (the REST URL with its credentials) to ``endpoints.json``. Without
Mailman, each hook does nothing and the site runs without lists.
"""

from __future__ import annotations

from typing import Any

from domtool.devsite import mailman_daemon

LIST_DOMAIN = "lists.example.org"
LIST_CONFIG = f"""(* alice's mailing list in the local site: team@{LIST_DOMAIN}, run by Mailman. *)
dom "{LIST_DOMAIN}" with
  mailingList "team" with
    owner "alice@example.org"
  end
end;
"""


def start_mailman(site: Any) -> None:
    if not mailman_daemon.available():
        site.progress.note("Mailman 3 is not installed: no mailing lists in this site")
        return
    site.mailman = mailman_daemon.prepare_mailman(site.root / "mailman")
    mailman_daemon.start_mailman(site.mailman, wait=False)
    site.daemons.append(site.mailman.daemon)
    site.ports["mailman_rest"] = site.mailman.rest_port
    site.ports["mailman_lmtp"] = site.mailman.lmtp_port


def wait_mailman(site: Any) -> None:
    if site.mailman is None:
        return
    mailman_daemon.wait_ready(site.mailman)
    m = site.mailman
    site.progress.note(
        f"Mailman core: REST on 127.0.0.1:{m.rest_port}, LMTP on 127.0.0.1:{m.lmtp_port} "
        f"(config {m.config_file})"
    )


def lists_lmtp(site: Any) -> str | None:
    """``HOST:PORT`` of Mailman's LMTP runner: the Exim backend's ``lists_lmtp`` setting
    when the local site runs Exim too (None without Mailman)."""
    if site.mailman is None:
        return None
    return f"127.0.0.1:{site.mailman.lmtp_port}"


def slave_backend(site: Any) -> str:
    """The slave.toml table of the mailman backend (empty without Mailman)."""
    if site.mailman is None:
        return ""
    return f'\n[backends.mailman]\nrest_config = "{site.mailman.rest_config}"\n'


def files(site: Any) -> list[dict[str, str]]:
    """alice's list config, written to DIR/alice and submitted with her examples."""
    if site.mailman is None:
        return []
    path = site.root / "alice" / LIST_DOMAIN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LIST_CONFIG, encoding="utf-8")
    return [{"name": LIST_DOMAIN, "text": LIST_CONFIG}]


def served(site: Any) -> dict[str, list[str]]:
    """Each list Mailman holds under alice's list domain, with its owners (over REST)."""
    if site.mailman is None:
        return {}
    from domtool.slave.mailman_rest import RestError

    client = site.mailman.client()
    try:
        names = sorted(n for n in client.lists() if n.endswith("@" + LIST_DOMAIN))
        return {n: sorted(client.owners(n)) for n in names}
    except RestError as e:
        return {"(Mailman)": [f"no answer: {e}"]}


def endpoints(site: Any) -> dict[str, str]:
    if site.mailman is None:
        return {}
    return {"mailman_rest": site.mailman.rest_url_with_credentials}


def report(site: Any, served_now: dict) -> list[str]:
    lists = served_now.get("lists") or {}
    if site.mailman is None:
        return []
    lines = [f"== Mailman core (REST on 127.0.0.1:{site.mailman.rest_port}) holds alice's lists:"]
    if not lists:
        lines.append("  (none)")
    for name, owners in lists.items():
        lines.append(f"  {name:<28} owners {', '.join(owners) or '(none)'}")
    return lines
