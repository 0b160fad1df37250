"""Benchmark the language front end over a generated site of many domain files.

Generates N member domain files (default 10,000), varied like
``shared/examples/alice/example.net`` (explicit ``domain`` blocks with name servers, mail
aliases, ``let``/``where`` settings, several vhosts with aliases) and the short ``dom``
form, all owned by one member, then measures:

- parse: lexing and parsing every file;
- check+evaluate: type checking with the member's permissions and evaluation to the
  desired state (``domtool.lang.api.check_source`` per file, the library loaded once).

Prints domains per second for each phase and the process's peak RSS.

    .venv/bin/python bench/bench_lang.py [--domains 10000] [--json]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchjson import add_option, emit  # noqa: E402


def domain_name(i: int) -> str:
    return f"site{i}.example"


def make_file(i: int, rng: random.Random) -> str:
    d = domain_name(i)
    kind = i % 4
    if kind == 0:
        return f'dom "{d}" with\nend;\n'
    if kind == 1:
        return (
            f'dom "{d}" with\n'
            f'  web "blog" where\n    DocumentRoot = "/home/member/sites/{i}/blog"\n  with\n'
            f'    alias "/static" "/home/member/sites/{i}/static"\n  end;\n'
            f'  emailAlias "info" "member@{d}";\nend;\n'
        )
    n_aliases = rng.randint(1, 4)
    aliases = "\n".join(
        f'  emailAlias "user{k}" "someone{k}@elsewhere.example";' for k in range(n_aliases)
    )
    return (
        f"(* generated domain {i} *)\n"
        f'domain "{d}" with\n'
        f'  nameserver "ns1.coop.example";\n'
        f'  nameserver "ns2.coop.example";\n'
        f"  handleMail;\n{aliases}\n"
        f'  aliasMulti "team" ["member", "x{i}@elsewhere.example"];\n'
        f'  aliasDrop "noreply";\n'
        f'  defaultAlias "member";\n'
        f'  let\n    DocumentRoot = "/home/member/sites/{i}/shared"\n  in\n'
        f'    web "www" with\n      serverAliasDefault\n    end;\n'
        f'    web "beta" with\n    end;\n  end;\n'
        f'  web "docs" where\n    DocumentRoot = "/home/member/sites/{i}/docs"\n  with\n'
        f'    alias "/manual" "/home/member/sites/{i}/manual"\n  end;\n'
        f"end;\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    add_option(ap)
    args = ap.parse_args()

    from domtool.lang.api import check_source, load_library
    from domtool.lang.parser import parse_file
    from domtool.perms import Permissions

    rng = random.Random(args.seed)
    files = [(domain_name(i), make_file(i, rng)) for i in range(args.domains)]
    perms = Permissions(
        user="member",
        domains=frozenset(domain_name(i) for i in range(args.domains)),
        paths=frozenset({"/home/member"}),
        users=frozenset({"member"}),
        groups=frozenset({"member"}),
    )
    total_bytes = sum(len(t) for _, t in files)

    t0 = time.perf_counter()
    load_library()
    t_lib = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name, text in files:
        f, diags = parse_file(name, text)
        assert f is not None and not diags, diags
    t_parse = time.perf_counter() - t0

    t0 = time.perf_counter()
    records = vhosts = 0
    for name, text in files:
        r = check_source([(name, text)], perms)
        assert not r.diagnostics, r.diagnostics[0].format()
        records += sum(len(z.records) for z in r.state.zones)
        vhosts += len(r.state.vhosts)
    t_all = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n = args.domains
    print(f"domains: {n}  source: {total_bytes / 1e6:.1f} MB  records: {records}  vhosts: {vhosts}")
    print(f"{'phase':<28}{'seconds':>10}{'domains/s':>12}")
    print(f"{'load library (once)':<28}{t_lib:>10.3f}{'':>12}")
    print(f"{'parse':<28}{t_parse:>10.3f}{n / t_parse:>12.0f}")
    print(f"{'parse+check+evaluate':<28}{t_all:>10.3f}{n / t_all:>12.0f}")
    print(f"peak RSS: {rss_mb:.0f} MB")
    emit(
        args,
        {
            "domains": n,
            "load_library_s": t_lib,
            "parse_s": t_parse,
            "parse_check_evaluate_s": t_all,
            "peak_rss_mb": rss_mb,
        },
    )


if __name__ == "__main__":
    main()
