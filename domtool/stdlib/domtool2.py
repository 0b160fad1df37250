"""Domtool 2's standard library surface, name by name, and what replaces each name here.

This table is the one data source for the "Domtool 2 name → ours" section of
``docs/stdlib-reference.md`` (:func:`domtool.lang.docgen.reference_markdown`) and for the
checker's hint when a configuration uses a Domtool 2 name that this library does not
define (:func:`hint`). To change a status, change its row here and regenerate the
reference (``domtool doc > docs/stdlib-reference.md``); ``tests/lang/test_domtool2.py``
checks that every row has a known status and that the names it says exist do exist.

The names are those of Domtool 2's modules (lib/*.dtl and its member commands) as
published by HCoop (the DomTool user guide and language reference on wiki.hcoop.net and
the domtool2 sources); arguments are given as Domtool 2 wrote them where ours differ.
"""

from __future__ import annotations

import attrs

#: status -> what it means (shown under the table).
STATUSES: dict[str, str] = {
    "same": "the same name does the same here",
    "shorthand": "defined here for Domtool 2's form, over ours (`compat.dtl`)",
    "renamed": "here under another name (see *ours*)",
    "different": "the same name with other arguments here (the note says how to write it)",
    "command": "not in the language here: a member command replaces it",
    "admin": "set by the site's admins, not in members' files",
    "not supported": "no counterpart; using it is refused with a hint saying what to do",
}

#: statuses whose Domtool 2 name is (or must be) defined by this library.
DEFINED = frozenset({"same", "shorthand", "different"})


@attrs.frozen
class Row:
    module: str  # Domtool 2's module
    name: str  # Domtool 2's name (an identifier, or a command line)
    status: str
    ours: str = ""  # our counterpart, as written in a config or on the command line
    note: str = ""


_R = Row

ROWS: tuple[Row, ...] = (
    # -- easy_domain -------------------------------------------------------------
    _R("easy_domain", "dom", "same", "`dom`", "its www site and defaultAlias yield to yours"),
    _R("easy_domain", "nameserver", "same", "`nameserver`"),
    _R("easy_domain", "dnsIP", "shorthand", "`dnsA`"),
    _R("easy_domain", "dnsIPv6", "shorthand", "`dnsAAAA`"),
    _R("easy_domain", "dnsMail", "shorthand", '`dnsMX "@"`'),
    _R("easy_domain", "dnsAlias", "shorthand", "`dnsCNAME`"),
    _R("easy_domain", "dnsDefault", "shorthand", '`dnsA "@"`'),
    _R("easy_domain", "dnsDefaultv6", "shorthand", '`dnsAAAA "@"`'),
    _R("easy_domain", "addDefaultAlias", "shorthand", "`defaultAlias` of User"),
    _R("easy_domain", "addWWW", "shorthand", '`web "www" with serverAliasDefault end`'),
    _R("easy_domain", "web", "same", "`web`", "ours adds the DNS records itself"),
    _R("easy_domain", "webAt", "shorthand", "`web ... where WebNodes = [NODE]`"),
    # -- bind / dns --------------------------------------------------------------
    _R("bind/dns", "domain", "same", "`domain`"),
    _R("bind/dns", "dns", "shorthand", "(records are actions)", "`dns R` is just `R`"),
    _R("bind/dns", "dnsA", "same", "`dnsA`"),
    _R("bind/dns", "dnsAAAA", "same", "`dnsAAAA`"),
    _R("bind/dns", "dnsCNAME", "same", "`dnsCNAME`"),
    _R(
        "bind/dns",
        "dnsMX",
        "different",
        "`dnsMX NAME PRIO HOST`",
        'Domtool 2\'s `dnsMX PRIO HOST` is `dnsMail PRIO HOST` or `dnsMX "@" PRIO HOST`',
    ),
    _R(
        "bind/dns",
        "dnsNS",
        "different",
        "`dnsNS NAME HOST`",
        "Domtool 2's `dnsNS HOST` (the domain's own) is `nameserver HOST`",
    ),
    _R("bind/dns", "dnsTXT", "same", "`dnsTXT`"),
    _R("bind/dns", "dnsSRV", "same", "`dnsSRV`"),
    _R("bind/dns", "dnsDefaultA", "shorthand", '`dnsA "@"`'),
    _R("bind/dns", "dnsDefaultAAAA", "shorthand", '`dnsAAAA "@"`'),
    _R(
        "bind/dns",
        "dnsAFSDB",
        "not supported",
        "",
        "the site runs no AFS cell; describe a service with `dnsSRV` or `dnsTXT`",
    ),
    _R("bind/dns", "TTL", "same", "`TTL`", "type `ttl` (0 to 2147483647)"),
    # -- apache --------------------------------------------------------------------
    _R("apache", "vhost", "same", "`vhost` (= `web`)"),
    _R("apache", "location", "same", "`location`"),
    _R("apache", "directory", "same", "`directory`"),
    _R("apache", "serverAlias", "same", "`serverAlias`"),
    _R("apache", "serverAliasDefault", "same", "`serverAliasDefault`"),
    _R("apache", "serverAliasHost", "shorthand", "`serverAlias`"),
    _R("apache", "alias", "same", "`alias`"),
    _R("apache", "scriptAlias", "same", "`scriptAlias`"),
    _R("apache", "errorDocument", "same", "`errorDocument`", "the status is an int: `404`"),
    _R("apache", "directoryIndex", "same", "`directoryIndex`"),
    _R("apache", "redirect", "same", "`redirect`"),
    _R(
        "apache",
        "redirectMatch",
        "not supported",
        '`rewriteRuleFlags PATTERN URL ["R=302"]`',
        "a regular-expression redirect is a rewrite rule with the R flag",
    ),
    _R(
        "apache",
        "rewriteRule",
        "different",
        "`rewriteRuleFlags PATTERN TARGET [FLAGS]`",
        "ours `rewriteRule PATTERN TARGET` takes no flags; with flags use rewriteRuleFlags",
    ),
    _R(
        "apache",
        "rewriteCond",
        "not supported",
        "",
        "rewrite conditions are not offered; use `location` blocks or several rules",
    ),
    _R("apache", "rewriteBase", "not supported", "", "rules here match the full URL path"),
    _R(
        "apache",
        "proxyPass",
        "different",
        "`proxyPass PATH PORT`",
        "to your own daemon on 127.0.0.1 at an allowed port",
    ),
    _R("apache", "proxyPassReverse", "renamed", "`proxyPass`", "ours sets both directions"),
    _R(
        "apache",
        "options",
        "different",
        '`options ["+Indexes"]`',
        "Apache's own option words, with + or -",
    ),
    _R("apache", "set_options", "renamed", '`options ["+X"]`'),
    _R("apache", "unset_options", "renamed", '`options ["-X"]`'),
    _R("apache", "authType", "renamed", "`basicAuth REALM FILE`", "Basic only"),
    _R("apache", "authName", "renamed", "`basicAuth REALM FILE`"),
    _R("apache", "authUserFile", "renamed", "`basicAuth REALM FILE`"),
    _R("apache", "requireValidUser", "renamed", "`basicAuth REALM FILE`"),
    _R(
        "apache",
        "requireUser",
        "not supported",
        "`basicAuth REALM FILE`",
        "every user of the htpasswd file is admitted; keep one file per set of users",
    ),
    _R(
        "apache",
        "requireGroup",
        "not supported",
        "`basicAuth REALM FILE`",
        "every user of the htpasswd file is admitted; keep one file per set of users",
    ),
    _R("apache", "orderAllowDeny", "not supported", "", "Apache 2.4 has no Order/Allow/Deny"),
    _R("apache", "orderDenyAllow", "not supported", "", "Apache 2.4 has no Order/Allow/Deny"),
    _R("apache", "allowFrom", "not supported", "", "address-based access is not offered"),
    _R("apache", "denyFrom", "not supported", "", "address-based access is not offered"),
    _R("apache", "satisfyAll", "not supported", "", "address-based access is not offered"),
    _R("apache", "satisfyAny", "not supported", "", "address-based access is not offered"),
    _R("apache", "addDefaultCharset", "not supported", "", "send the charset from your files"),
    _R("apache", "forceType", "not supported", "", "MIME types come from the site's table"),
    _R("apache", "addType", "not supported", "", "MIME types come from the site's table"),
    _R("apache", "addHandler", "not supported", "`execCGI`", "CGI: `execCGI` or `scriptAlias`"),
    _R("apache", "action", "not supported", "`scriptAlias`", "run programs as CGI instead"),
    _R("apache", "expiresActive", "not supported", "", "caching headers are not offered"),
    _R("apache", "expiresDefault", "not supported", "", "caching headers are not offered"),
    _R("apache", "expiresByType", "not supported", "", "caching headers are not offered"),
    _R("apache", "indexOptions", "not supported", '`options ["+Indexes"]`'),
    _R("apache", "phpVersion", "not supported", "", "PHP is not offered; use CGI or proxyPass"),
    _R("apache", "davSvn", "not supported", "", "Subversion over WebDAV is not offered"),
    _R("apache", "svnPath", "not supported", "", "Subversion over WebDAV is not offered"),
    _R("apache", "davFilesystem", "not supported", "", "WebDAV is not offered"),
    _R("apache", "DocumentRoot", "same", "`DocumentRoot`"),
    _R("apache", "User", "same", "`User`"),
    _R("apache", "Group", "same", "`Group`"),
    _R("apache", "ServerAdmin", "same", "`ServerAdmin`", "a bare user means USER@DOMAIN"),
    _R("apache", "WebPlaces", "renamed", "`WebNodes`", "a list of web nodes of the site"),
    _R("apache", "SuExec", "not supported", "", "CGI always runs through suexec as User"),
    # -- ssl -------------------------------------------------------------------------
    _R(
        "ssl",
        "SSL",
        "different",
        "`SSL : bool` and `ssl CERT KEY`",
        "the certificate is given in the vhost; `SSL = true` requires one",
    ),
    _R("ssl", "no_ssl", "shorthand", "`false`"),
    _R("ssl", "use_cert", "renamed", "`ssl CERT KEY` in the vhost", "your own cert and key"),
    _R("ssl", "sslCertificateChainFile", "renamed", "`sslChain CERT KEY CHAIN`"),
    # -- exim / alias ------------------------------------------------------------------
    _R("exim/alias", "handleMail", "same", "`handleMail`"),
    _R("exim/alias", "relayMail", "same", "`relayMail`"),
    _R("exim/alias", "MailNodes", "same", "`MailNodes`"),
    _R("exim/alias", "emailAlias", "same", "`emailAlias`"),
    _R("exim/alias", "aliasMulti", "same", "`aliasMulti`"),
    _R("exim/alias", "aliasDrop", "same", "`aliasDrop`"),
    _R("exim/alias", "defaultAlias", "same", "`defaultAlias`"),
    _R("exim/alias", "catchAllAlias", "same", "`catchAllAlias`"),
    _R("exim/alias", "defaultAliasDrop", "same", "`defaultAliasDrop`"),
    _R("exim/alias", "aliasPrim", "same", "`aliasPrim`"),
    _R("exim/alias", "userSource", "same", "`userSource`"),
    _R("exim/alias", "defaultSource", "same", "`defaultSource`"),
    _R("exim/alias", "catchAllSource", "same", "`catchAllSource`"),
    _R("exim/alias", "addressTarget", "same", "`addressTarget`"),
    _R("exim/alias", "addressesTarget", "same", "`addressesTarget`"),
    _R("exim/alias", "dropTarget", "same", "`dropTarget`"),
    # -- spamassassin --------------------------------------------------------------------
    _R(
        "spamassassin",
        "spamassassin (per-member filtering)",
        "renamed",
        "`spamFilter`, `spamThreshold`, `spamAction`",
        "per mail domain: on/off, the score that counts as spam, and tag, refuse or junk it",
    ),
    # -- mailman ---------------------------------------------------------------------------
    _R(
        "mailman",
        "mailmanWebHost",
        "renamed",
        '`listHost "lists"`',
        "the domain's list host (lists.DOMAIN, on the list nodes)",
    ),
    _R(
        "mailman",
        "mailmanVhost",
        "not supported",
        "`listHost`",
        "no Mailman web interface (Postorius) is served here; listHost names its host",
    ),
    _R(
        "mailman",
        "lists (portal)",
        "renamed",
        '`mailingList "NAME" with owner "ADDR" end`',
        "lists in the language; `domtool list rm NAME@DOMAIN --doit` deletes one",
    ),
    # -- vmail -----------------------------------------------------------------------------
    _R("vmail", "vmail DOMAIN add USER MAILBOX", "command", "`domtool vmail`", "issue 9"),
    _R("vmail", "vmail DOMAIN passwd USER", "command", "`domtool vmail`", "issue 9"),
    _R("vmail", "vmail DOMAIN rm USER", "command", "`domtool vmail`", "issue 9"),
    _R("vmail", "vmail DOMAIN list", "command", "`domtool vmail`", "issue 9"),
    # -- postgres / mysql ------------------------------------------------------------------
    _R("postgres", "dbtool postgres createdb", "command", "`domtool db`", "issue 10"),
    _R("postgres", "dbtool postgres adduser", "command", "`domtool db`", "issue 10"),
    _R("mysql", "dbtool mysql createdb", "command", "`domtool db`", "issue 10"),
    _R("mysql", "dbtool mysql adduser", "command", "`domtool db`", "issue 10"),
    _R("mysql", "dbtool mysql passwd", "command", "`domtool db`", "issue 10"),
    # -- firewall -------------------------------------------------------------------------
    _R("firewall", "Client (rule)", "admin", "admin firewall rules", "issue 11"),
    _R("firewall", "Server (rule)", "admin", "admin firewall rules", "issue 11"),
    _R("firewall", "ProxiedServer (rule)", "admin", "admin firewall rules", "issue 11"),
    # -- webalizer / logs ---------------------------------------------------------------
    _R(
        "webalizer/logs",
        "webalizer",
        "not supported",
        "",
        "no web statistics are generated at this site",
    ),
)

_BY_NAME = {r.name: r for r in ROWS}


def row(name: str) -> Row | None:
    return _BY_NAME.get(name)


def hint(name: str) -> str | None:
    """For an unknown name that is Domtool 2's: what replaces it here (None otherwise)."""
    r = _BY_NAME.get(name)
    if r is None or r.status in DEFINED:
        return None
    here = r.ours or "nothing"
    tail = f" ({r.note})" if r.note else ""
    return f"{name} is Domtool 2's ({r.module}); here: {here}{tail}"


def table_markdown() -> list[str]:
    """The "Domtool 2 name → ours" table for the reference, as Markdown lines."""
    lines = [
        "| Domtool 2 module | Domtool 2 name | ours | status | note |",
        "|---|---|---|---|---|",
    ]
    for r in ROWS:
        lines.append(f"| {r.module} | `{r.name}` | {r.ours or '—'} | {r.status} | {r.note} |")
    lines += ["", "Statuses:", ""]
    lines += [f"- **{s}**: {what}" for s, what in STATUSES.items()]
    return lines
