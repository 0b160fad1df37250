"""Mailbox password hashes: SHA-512 crypt (``$6$``), the scheme Courier's authdaemon
(userdb ``systempw``) accepts, computed where the member types the password.

``domtool vmail add/passwd`` hash on the member's machine, so the password itself never
reaches the dispatcher, a slave, a log or an argv; what travels and is stored is the hash,
checked by :func:`check_hash` before it is written to a userdb line. The implementation
follows Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" (5000 rounds by default),
in pure Python so it works where the ``crypt`` module is gone (Python 3.13).
"""

from __future__ import annotations

import hashlib
import re
import secrets

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HASH = re.compile(r"\$6\$(?:rounds=([1-9][0-9]{3,8})\$)?([./0-9A-Za-z]{1,16})\$([./0-9A-Za-z]{86})")
ROUNDS_DEFAULT = 5000
MAX_PASSWORD = 1024


class BadHash(ValueError):
    """Not a SHA-512 crypt hash in the accepted shape."""


def _b64(data: bytes, order: list[tuple[int, ...]]) -> str:
    out = []
    for group in order:
        value = 0
        for i in group:
            value = (value << 8) | data[i]
        n = {3: 4, 1: 2}[len(group)]
        for _ in range(n):
            out.append(_B64[value & 0x3F])
            value >>= 6
    return "".join(out)


_ORDER: list[tuple[int, ...]] = [
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54),
    (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60),
    (40, 61, 19), (62, 20, 41), (63,),
]  # fmt: skip


def sha512_crypt(password: str | bytes, salt: str | None = None, rounds: int | None = None) -> str:
    """``$6$salt$hash`` of ``password`` (a random 16-character salt when None)."""
    pw = password.encode() if isinstance(password, str) else bytes(password)
    if len(pw) > MAX_PASSWORD:
        raise ValueError(f"a password is at most {MAX_PASSWORD} bytes")
    if salt is None:
        salt = "".join(secrets.choice(_B64) for _ in range(16))
    s = salt.encode()[:16]
    r = ROUNDS_DEFAULT if rounds is None else max(1000, min(999_999_999, rounds))
    b = hashlib.sha512(pw + s + pw).digest()
    a = hashlib.sha512(pw + s)
    n = len(pw)
    while n > 64:
        a.update(b)
        n -= 64
    a.update(b[:n])
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    a_d = a.digest()
    dp = hashlib.sha512(pw * len(pw)).digest()
    p = (dp * (len(pw) // 64 + 1))[: len(pw)]
    ds = hashlib.sha512(s * (16 + a_d[0])).digest()
    sb = (ds * (len(s) // 64 + 1))[: len(s)]
    c = a_d
    for i in range(r):
        h = hashlib.sha512()
        h.update(p if i & 1 else c)
        if i % 3:
            h.update(sb)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    prefix = "$6$" + (f"rounds={r}$" if rounds is not None else "")
    return prefix + s.decode() + "$" + _b64(c, _ORDER)


def check_hash(value: object) -> str:
    """``value`` if it is a SHA-512 crypt hash (no other character can reach a userdb
    line: ``|``, ``=``, newlines and NULs are impossible in this shape)."""
    if not isinstance(value, str) or not HASH.fullmatch(value):
        raise BadHash("expected a SHA-512 crypt hash ($6$SALT$HASH)")
    return value


def verify(password: str | bytes, hashed: str) -> bool:
    m = HASH.fullmatch(check_hash(hashed))
    rounds = int(m.group(1)) if m.group(1) else None
    return secrets.compare_digest(sha512_crypt(password, m.group(2), rounds), hashed)
