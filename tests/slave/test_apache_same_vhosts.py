"""The Apache backend gives the same units for the same vhosts without rendering or
comparing them again (a change of zones only must not cost a look at every vhost); a
changed vhost is rendered again and only it."""

from __future__ import annotations

import attrs

from domtool.model import DesiredState
from domtool.slave.backends.apache import ApacheBackend
from tests.slave.test_apache_render import CONFIG, vhost

rendered: list[str] = []


@attrs.frozen
class Counting(ApacheBackend):
    def render_vhost(self, v):
        rendered.append(v.fqdn)
        return super().render_vhost(v)


def test_the_same_vhosts_are_not_rendered_again():
    backend = Counting(CONFIG)
    rendered.clear()
    vhosts = tuple(vhost(fqdn=f"www{i}.example.org") for i in range(5))
    first = backend.units(DesiredState(vhosts=vhosts), {}, 0)
    assert len(rendered) == 5
    again = backend.units(DesiredState(vhosts=vhosts), {}, 0)
    assert again == first and len(rendered) == 5
    changed = (*vhosts[:4], attrs.evolve(vhosts[4], aliases=("alias.example.org",)))
    out = backend.units(DesiredState(vhosts=changed), {}, 0)
    assert rendered == [f"www{i}.example.org" for i in range(5)] + ["www4.example.org"]
    assert out[:4] == first[:4] and out[4] != first[4]


def test_a_render_of_mostly_the_same_vhosts_is_what_a_whole_render_gives():
    """Random additions, changes, removals and name clashes among the same vhost objects:
    units() (which renders only the new objects) gives what a fresh backend's whole
    render gives, refusals included."""
    import random

    from domtool.slave.backend import RenderRefused

    rng = random.Random(7)
    backend = Counting(CONFIG)
    rendered.clear()
    vhosts = [vhost(fqdn=f"www{i}.example.org", owner=f"m{i % 7}") for i in range(200)]
    for step in range(60):
        for _ in range(rng.randint(1, 4)):
            if len(vhosts) < 20:
                vhosts += [vhost(fqdn=f"more{step}-{k}.example.org") for k in range(20)]
            i = rng.randrange(len(vhosts))
            what = rng.random()
            if what < 0.3:
                vhosts[i] = attrs.evolve(vhosts[i], server_admin=f"w{step}@example.org")
            elif what < 0.5:
                del vhosts[i]
            elif what < 0.9:
                vhosts.append(vhost(fqdn=f"new{step}-{i}.example.org", owner=f"m{i % 7}"))
            else:  # an alias another vhost already claims: both are refused
                other = rng.choice(vhosts).fqdn
                vhosts[i] = attrs.evolve(vhosts[i], aliases=(other,))
        state = DesiredState(vhosts=tuple(vhosts))
        expected_units, expected_errors = ApacheBackend(CONFIG).render(state)
        try:
            got = backend.units(state, {}, 0)
        except RenderRefused as exc:
            assert expected_errors and list(map(str, exc.errors)) == list(map(str, expected_errors))
            # the refused vhosts go, as the engine renders again without their owners
            gone = {e.owner for e in exc.errors}
            vhosts = [v for v in vhosts if v.owner not in gone]
            continue
        assert not expected_errors
        assert got == expected_units
        assert backend.probes(state) == ApacheBackend(CONFIG).probes(state)
    # most steps rendered only their new vhosts (whole renders follow refusals only)
    assert len(rendered) < 60 * 200 // 3
