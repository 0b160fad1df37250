"""Run a Mailman 3 core of its own on loopback (for the local site and the tests).

:func:`prepare_mailman` writes ``root/mailman.cfg`` (the backend's ``site_config``: var
dir ``root/var``, SQLite there, REST and LMTP on loopback ports) and the slave's REST
config file ``root/rest.json`` (URL, credentials, ledger path). :func:`start_mailman`
runs Mailman's ``master`` in the foreground as a child process (it forks the REST, LMTP
and queue runners) and waits until REST answers; :meth:`MailmanSite.stop` stops the
master and then anything left in its process group, so nothing is left behind.
Mailman takes about 10 s to start on a busy machine: start it once per test session.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import attrs

from domtool.devsite.localdaemons import Daemon, connects, free_port, spawn

MASTER = "/usr/lib/mailman3/bin/master"

__all__ = ["MASTER", "MailmanSite", "available", "prepare_mailman", "start_mailman", "wait_ready"]


def available() -> bool:
    return os.access(MASTER, os.X_OK)


@attrs.define
class MailmanSite:
    """A configured Mailman core: its files, ports and REST credentials."""

    root: Path
    config_file: Path
    rest_config: Path
    rest_port: int
    lmtp_port: int
    smtp_port: int
    user: str
    password: str
    daemon: Daemon | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/3.1"

    @property
    def rest_url_with_credentials(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.rest_port}/3.1"

    @property
    def var_dir(self) -> Path:
        return self.root / "var"

    def client(self):
        from domtool.slave.mailman_rest import Client, RestConfig

        return Client(RestConfig.load(str(self.rest_config)))

    def stop(self, timeout: float = 20.0) -> None:
        if self.daemon is not None:
            self.daemon.stop(timeout)
            self.daemon = None


def prepare_mailman(
    root: Path,
    *,
    rest_port: int | None = None,
    lmtp_port: int | None = None,
    smtp_port: int | None = None,
    ledger: Path | None = None,
) -> MailmanSite:
    """Write ``root/mailman.cfg`` and ``root/rest.json`` (mode 0600); ports default to
    free loopback ports, ``smtp_port`` to one nothing listens on (outgoing mail waits)."""
    from domtool.slave.backends.mailman import site_config
    from domtool.slave.mailman_rest import RestConfig

    root.mkdir(parents=True, exist_ok=True)
    site = MailmanSite(
        root=root,
        config_file=root / "mailman.cfg",
        rest_config=root / "rest.json",
        rest_port=rest_port or free_port(),
        lmtp_port=lmtp_port or free_port(),
        smtp_port=smtp_port or free_port(),
        user="domtool",
        password=secrets.token_hex(16),
    )
    site.config_file.write_bytes(
        site_config(
            str(site.var_dir),
            rest_port=site.rest_port,
            lmtp_port=site.lmtp_port,
            smtp_port=site.smtp_port,
            rest_user=site.user,
            rest_password=site.password,
        )
    )
    site.config_file.chmod(0o600)  # it holds the REST password
    rest = RestConfig(site.rest_url, site.user, site.password, str(ledger or root / "ledger.json"))
    fd = os.open(site.rest_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(rest.dump())
    return site


def start_mailman(site: MailmanSite, timeout: float = 90.0, *, wait: bool = True) -> MailmanSite:
    """Run ``master -C mailman.cfg``; wait until REST answers and LMTP accepts (with
    ``wait=False``, return at once: call :func:`wait_ready` later)."""
    argv = [MASTER, "-C", str(site.config_file)]
    env = {**os.environ, "MAILMAN_CONFIG_FILE": str(site.config_file)}
    # the master and the runners it forks share one process group: stop signals all of it
    site.daemon = spawn(
        "mailman",
        argv,
        site.root / "master.log",
        cwd=site.root,
        env=env,
        whole_group=True,
        stop_timeout=20.0,
    )
    if wait:
        wait_ready(site, timeout)
    return site


def wait_ready(site: MailmanSite, timeout: float = 90.0) -> MailmanSite:
    """Wait until the started Mailman's REST answers and its LMTP port accepts (else it
    is stopped, and the error carries its log)."""
    from domtool.slave.mailman_rest import RestError

    d = site.daemon
    assert d is not None, "start_mailman first"
    client = site.client()

    def ready() -> bool:
        try:
            client.get("/system/versions")
        except RestError:
            return False
        return connects(site.lmtp_port)

    try:
        d.wait_ready(ready, what=f"Mailman REST on {site.rest_port}", timeout=timeout)
    except BaseException:
        site.daemon = None
        raise
    return site
