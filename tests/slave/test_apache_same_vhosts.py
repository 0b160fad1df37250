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
