"""A member's permissions: which domains, paths, Unix users and groups they may use.

Permissions are decided once per submission and fail closed: a value that is not valid
for its class, or a class nobody defined, is never owned; empty permissions own nothing.

Decisions (also in ``docs/grammars.md``):

- Domains: a granted domain covers itself and every subdomain (``example.org`` grants
  ``www.example.org`` and ``a.b.example.org``), never its parent (``org``) or a sibling
  that merely ends with the same text (``notexample.org``). Comparison is
  case-insensitive (names are lower-cased by ``validate.check_domain``).
- Paths: a granted path covers itself and everything under it after lexical
  normalisation (``validate.check_abs_path``): ``/home/alice/x`` yes, ``/home/alicex`` no,
  ``/home/alice/../bob`` no. Relative paths are refused. A grant of ``/`` is refused:
  it would hand over the whole filesystem. The slave re-checks with symlinks resolved
  (``domtool.slave.pathcheck``).
- Users and groups: exact Unix names (``validate.check_unix_name``).

The file form (``examples/*.perms``) is one class a line, ``CLASS: VALUE VALUE ...``,
with ``#`` comments and blank lines; the dispatcher stores the same thing as
(class, value) pairs, see :meth:`Permissions.from_grants` and :meth:`Permissions.grants`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from domtool import validate
from domtool.validate import Invalid

__all__ = ["CLASSES", "Permissions", "PermsError", "parse_perms", "format_perms"]


class PermsError(ValueError):
    """A permissions file or grant list is malformed; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


def _check_path_grant(value: Any) -> str:
    path = validate.check_abs_path(value)
    if path == "/":
        raise Invalid("a path grant", value, "granting '/' would grant the whole filesystem")
    return path


# class name -> (field of Permissions, validator for one value)
CLASSES: dict[str, tuple[str, Callable[[Any], str]]] = {
    "domain": ("domains", validate.check_domain),
    "path": ("paths", _check_path_grant),
    "user": ("users", validate.check_unix_name),
    "group": ("groups", validate.check_unix_name),
}


def _converter(check: Callable[[Any], str]) -> Callable[[Iterable[str]], frozenset[str]]:
    def convert(values: Iterable[str]) -> frozenset[str]:
        if isinstance(values, str):
            raise TypeError("expected a collection of values, not one string")
        return frozenset(check(x) for x in values)

    return convert


@attrs.frozen
class Permissions:
    """What one member may use. Values are validated and canonicalised on construction,
    so an invalid grant raises :class:`~domtool.validate.Invalid` rather than being kept."""

    user: str = attrs.field(converter=validate.check_unix_name)
    domains: frozenset[str] = attrs.field(
        default=frozenset(), converter=_converter(validate.check_domain)
    )
    paths: frozenset[str] = attrs.field(
        default=frozenset(), converter=_converter(_check_path_grant)
    )
    users: frozenset[str] = attrs.field(
        default=frozenset(), converter=_converter(validate.check_unix_name)
    )
    groups: frozenset[str] = attrs.field(
        default=frozenset(), converter=_converter(validate.check_unix_name)
    )

    @classmethod
    def none(cls, user: str) -> Permissions:
        """Permissions that own nothing."""
        return cls(user=user)

    @classmethod
    def from_grants(cls, user: str, grants: Iterable[tuple[str, str]]) -> Permissions:
        """Build from stored (class, value) pairs; an unknown class, an invalid value or
        an invalid member name raises :class:`PermsError`."""
        fields: dict[str, set[str]] = {f: set() for f, _ in CLASSES.values()}
        for cls_name, value in grants:
            if cls_name not in CLASSES:
                raise PermsError(_unknown_class(cls_name))
            field, check = CLASSES[cls_name]
            try:
                fields[field].add(check(value))
            except Invalid as e:
                raise PermsError(f"{cls_name}: {e}") from None
        try:
            return cls(user=user, **fields)
        except Invalid as e:
            raise PermsError(f"bad member name: {e}") from None

    def grants(self) -> tuple[tuple[str, str], ...]:
        """The (class, value) pairs, sorted: the form the dispatcher stores."""
        out = [
            (cls_name, value)
            for cls_name, (field, _) in CLASSES.items()
            for value in getattr(self, field)
        ]
        return tuple(sorted(out))

    def owns_domain(self, domain: Any) -> bool:
        """True when ``domain`` is a granted domain or a subdomain of one."""
        if type(domain) is str and domain in self.domains:  # a grant: valid and canonical
            return True
        try:
            name = validate.check_domain(domain)
        except Invalid:
            return False
        # Look up the name and each of its parent domains: O(labels), not O(grants).
        labels = name.split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))

    def owns_path(self, path: Any) -> bool:
        """True when ``path``, lexically normalised, is a granted path or lies under one."""
        if type(path) is str and path in self.paths:  # a grant: valid and normalised
            return True
        try:
            p = validate.check_abs_path(path)
        except Invalid:
            return False
        # Look up the path and each of its ancestors: O(depth), not O(grants).
        while True:
            if p in self.paths:
                return True
            if p == "/":
                return False
            p = p.rsplit("/", 1)[0] or "/"

    def owns_user(self, user: Any) -> bool:
        """True when ``user`` is one of the granted Unix users."""
        return isinstance(user, str) and user in self.users

    def owns_group(self, group: Any) -> bool:
        """True when ``group`` is one of the granted Unix groups."""
        return isinstance(group, str) and group in self.groups

    def owned_domains_hint(self) -> str:
        """A hint for an error message naming what the member does own."""
        if not self.domains:
            return f"{self.user} owns no domains; ask an administrator for a domain grant"
        return f"{self.user} owns: " + ", ".join(sorted(self.domains)) + " (and their subdomains)"

    def owned_paths_hint(self) -> str:
        """A hint naming the member's granted paths."""
        if not self.paths:
            return f"{self.user} has no granted paths; ask an administrator for a path grant"
        return f"{self.user} may use paths under: " + ", ".join(sorted(self.paths))


def _unknown_class(name: str) -> str:
    return f"unknown permission class {name!r}; known classes are " + ", ".join(CLASSES)


def parse_perms(text: str, user: str) -> Permissions:
    """Parse the file form: ``CLASS: VALUE VALUE ...`` one class a line, ``#`` comments,
    blank lines. Raises :class:`PermsError` with the line number on the first problem."""
    grants: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cls_name, colon, rest = line.partition(":")
        cls_name = cls_name.strip()
        if not colon:
            raise PermsError(f"expected 'CLASS: VALUE ...', got {raw.strip()!r}", n)
        if cls_name not in CLASSES:
            raise PermsError(_unknown_class(cls_name), n)
        _, check = CLASSES[cls_name]
        for value in rest.split():
            try:
                grants.append((cls_name, check(value)))
            except Invalid as e:
                raise PermsError(str(e), n) from None
    return Permissions.from_grants(user, grants)


def format_perms(perms: Permissions) -> str:
    """The file form of ``perms`` (one line per non-empty class, values sorted)."""
    lines = []
    for cls_name, (field, _) in CLASSES.items():
        values = sorted(getattr(perms, field))
        if values:
            lines.append(f"{cls_name}: " + " ".join(values))
    return "".join(line + "\n" for line in lines)
