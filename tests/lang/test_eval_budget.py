"""The evaluator's work budget: list elements and string bytes count, one budget per request.

Issue 13, finding 1: the step budget counted calls, so a directive that receives a long
list (``directoryIndex``, ``options``, ``nameservers``) cost one step however long the
list; a 240 KB file nested 15 deep ran for minutes inside the budget. Before the fix the
depth-9 file below took 5.8 s and no error (seen failing first); depth 15 is 64 times that.
"""

from __future__ import annotations

import time

from domtool.lang.api import check_source
from domtool.lang.primitives import WORK_BUDGET, Budget, EvalError, work_of
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)


def worst_case(depth: int, items: int = 16_000, directive: str = "directoryIndex") -> str:
    """A long list appended 2**depth times: ``f_i = (f_{i-1}; f_{i-1})``."""
    names = ", ".join(
        f'"i{i}.html"' if directive == "directoryIndex" else '"+Indexes"' for i in range(items)
    )
    lines = [f"val big = [{names}]", f"val f0 = {directive} big"]
    lines += [f"val f{i} = (f{i - 1}; f{i - 1})" for i in range(1, depth + 1)]
    lines.append(f'dom "example.org" with web "w" with f{depth} end end')
    return "\n".join(lines)


def test_the_worst_case_file_stops_on_the_work_budget_fast_with_its_span():
    """The 240 KB file nested 15 deep (minutes before) stops in well under 2 s, with the
    span of the directive that ran out (line 2: ``directoryIndex big``)."""
    text = worst_case(15)
    assert 200_000 < len(text.encode()) < 256 * 1024
    t0 = time.process_time()
    r = check_source([("example.org", text)], ALICE)
    elapsed = time.process_time() - t0
    assert r.state is None
    [d] = r.diagnostics
    assert d.message == f"evaluation exceeded its work budget ({WORK_BUDGET} units)"
    assert d.span is not None and d.span.start.line == 2, d.format()
    assert "each list element" in (d.hint or "")
    assert elapsed < 2.0, elapsed


def test_options_and_nameservers_are_charged_per_item():
    """``options`` and the ``Nameservers`` list ``dom`` checks item by item count too."""
    r = check_source([("example.org", worst_case(12, 4000, "options"))], ALICE)
    assert [d.message for d in r.diagnostics] == [
        f"evaluation exceeded its work budget ({WORK_BUDGET} units)"
    ]
    hosts = ", ".join(f'"ns{i}.example.net"' for i in range(3000))
    lines = [f"val ns = [{hosts}]", "val f0 = nameservers ns"]
    lines += [f"val f{i} = (f{i - 1}; f{i - 1})" for i in range(1, 10)]
    lines.append('domain "example.org" with f9 end')
    r = check_source([("example.org", "\n".join(lines))], ALICE)
    assert [d.message for d in r.diagnostics] == [
        f"evaluation exceeded its work budget ({WORK_BUDGET} units)"
    ]


def test_one_budget_per_request_not_per_file():
    """Files each well inside the budget alone exhaust it together: 8 files of a list
    used 2**3 times (about 130,000 units each) fail as one request; one alone passes."""
    one = worst_case(3, 16_000).replace('dom "example.org"', 'dom "{d}"')
    alone = check_source([("example.org", one.replace("{d}", "example.org"))], ALICE)
    assert alone.ok, [d.format() for d in alone.diagnostics]
    files = [(f"s{i}.example.org", one.replace("{d}", f"s{i}.example.org")) for i in range(8)]
    r = check_source(files, ALICE)
    assert not r.ok
    messages = {d.message for d in r.diagnostics}
    assert messages == {f"evaluation exceeded its work budget ({WORK_BUDGET} units)"}


def test_an_ordinary_site_uses_a_small_part_of_the_budget():
    """A realistic file (a domain, two vhosts with settings, mail) is far inside it."""
    text = """
dom "example.org" with
  web "blog" with
    directoryIndex ["index.html", "index.php"];
    options ["+Indexes"]
  end;
  defaultAlias "alice"
end
"""
    r = check_source([("example.org", text)], ALICE)
    assert r.ok, [d.format() for d in r.diagnostics]


def test_budget_counts_list_items_and_string_bytes():
    assert work_of(("a", "b", "c")) == 3
    assert work_of("x" * 640) == 10
    assert work_of((("a", "b"), "c")) == 2 + 2
    assert work_of(7) == 0
    b = Budget(10)
    b.charge(10, None)
    try:
        b.charge(1, None)
    except EvalError as e:
        assert "work budget (10 units)" in e.message
    else:
        raise AssertionError("the budget did not run out")
