"""Human-readable rendering of a desired state, for ``domtool -tc --show`` and the site tools."""

from __future__ import annotations

from domtool.model import DesiredState, Record


def _record_data(r: Record) -> str:
    if r.rtype == "TXT":
        return '"' + str(r.data[0]).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(str(d) for d in r.data)


def format_state(state: DesiredState) -> str:
    """A terminal-friendly listing of zones, vhosts and mail domains."""
    out: list[str] = []
    for z in state.zones:
        out.append(f"zone {z.name}  (owner {z.owner}; dns on {', '.join(z.nodes) or '-'})")
        width = max((len(r.name) for r in z.records), default=1)
        for r in z.records:
            ttl = "" if r.ttl is None else f" ttl={r.ttl}"
            out.append(f"  {r.name:<{width}}  {r.rtype:<5} {_record_data(r)}{ttl}")
    for v in state.vhosts:
        out.append(f"vhost {v.fqdn}  (owner {v.owner}; web on {', '.join(v.nodes) or '-'})")
        out.append(f"  document root  {v.document_root}")
        out.append(f"  runs as        {v.user}:{v.group}")
        if v.aliases:
            out.append(f"  also answers   {', '.join(v.aliases)}")
        if v.tls is not None:
            out.append(f"  tls            {v.tls.certificate}")
        for url, path in v.url_aliases:
            out.append(f"  alias          {url} -> {path}")
        for url, path in v.script_aliases:
            out.append(f"  cgi            {url} -> {path}")
        for p in v.proxies:
            out.append(f"  proxy          {p.path} -> 127.0.0.1:{p.port}{p.target}")
        for rd in v.settings.redirects:
            out.append(f"  redirect       {rd.path} -> {rd.target} ({rd.status})")
        for b in v.blocks:
            out.append(f"  {b.kind:<14} {b.path}")
    for m in state.mail:
        how = "delivered here" if m.handle == "local" else f"relayed to {m.relay_host}"
        out.append(f"mail {m.name}  (owner {m.owner}; mail on {', '.join(m.nodes) or '-'}; {how})")
        for a in m.aliases:
            kind = a.source[0]
            src = f"{a.source[1]}@{m.name}" if kind == "user" else f"({kind})"
            dst = ", ".join(a.targets) if a.targets else "(dropped)"
            out.append(f"  {src} -> {dst}")
    for d in state.lists:
        out.append(f"lists {d.name}  (owner {d.owner}; web {d.web_host}; on {', '.join(d.nodes)})")
        for ml in d.lists:
            out.append(f"  {ml.name}@{d.name}  owners {', '.join(ml.owners)}")
    if not out:
        out.append("(nothing)")
    return "\n".join(out)


def format_value(value: object, indent: int = 0) -> str:
    """Any JSON-like answer of the dispatcher as indented ``key: value`` lines (what a
    person reads when a command has no dedicated layout)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return pad + "(none)"
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.append(format_value(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        if not value:
            return pad + "(none)"
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = format_value(item, indent + 1).split("\n")
                lines.append(f"{pad}- {first.strip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def _scalar(v: object) -> str:
    if v is None:
        return "-"
    if v is True:
        return "yes"
    if v is False:
        return "no"
    if isinstance(v, list | dict):
        return "(none)"
    return str(v)
