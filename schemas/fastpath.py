"""What the generated accept path of the event schemas (schemas/checks_generated.py) calls.

schemas/checks_generated.py holds one flat function per event schema that
says "certainly valid" and returns the event time, or None to send the event
to the reference check (schemas/validator.py). Its generator is
scripts/checkgen.py, run by `make checks` and the tests only; this module is
the run-time half it calls: the canonical RFC 3339 reader, the pattern cache,
the finite-range test, the marker of an absent field, and the digest that
says which schema files a generated module was made from.

Must never: read the clock, import from `streams/` or `detectors/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

try:  # a native 64-bit int when compiled (make core); mypy brings mypy_extensions along
    from mypy_extensions import i64
except ImportError:  # interpreted, without the build tools installed: a plain int
    i64 = int  # type: ignore[misc]  # the same name bound to a plain int: fine for the interpreter

EventCheck = Callable[[dict[str, Any]], "int | None"]

#: Date-times the fast path reads itself: 'Z' offset, upper-case 'T', at most microseconds,
#: ASCII digits only (a strict subset of what validator._RFC3339 matches). Anything else an
#: RFC 3339 parser accepts goes to the reference path.

def _two(s: str, i: i64) -> i64:
    """The two ASCII digits at s[i], s[i + 1] as 0..99, or -1 (ord(s[i]) compiles to a C read).

    Written out rather than through a one-digit helper: the call per digit was the largest
    single cost of a compiled timestamp read. Native 64-bit ints (i64) here and in
    fast_epoch_ms: with Python ints every add, multiply and compare checked for a boxed
    value, ~1,400 machine instructions per timestamp read, a few of which every event has.
    """
    a: i64 = ord(s[i])
    b: i64 = ord(s[i + 1])
    a -= 48
    b -= 48
    if 0 <= a <= 9 and 0 <= b <= 9:  # statements, not `x if c else -1`: mypyc boxed that
        return a * 10 + b
    return -1


def fast_epoch_ms(value: Any) -> int | None:
    """Epoch ms of a canonical RFC 3339 UTC string (as schemas.decode.to_epoch_ms), or None if not canonical.

    Canonical: `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` with ASCII digits, read digit by digit and
    checked as `datetime.fromisoformat` checks it (year 1.., real month and day, hour
    0..23, second 0..59), so the result equals `(fromisoformat(value) - epoch) // 1 ms`
    without building a datetime (tests/unit/test_fastpath.py holds the two together).
    Anything else is None: the reference path decides it.
    """
    if type(value) is not str:
        return None
    s: str = value
    n: i64 = len(s)
    if n != 20 and not 22 <= n <= 27:
        return None
    if (ord(s[4]) != 45 or ord(s[7]) != 45 or ord(s[10]) != 84 or ord(s[13]) != 58 or ord(s[16]) != 58
            or ord(s[n - 1]) != 90):  # '-', '-', 'T', ':', ':' and the final 'Z'
        return None
    hi = _two(s, 0)
    lo = _two(s, 2)
    month = _two(s, 5)
    day = _two(s, 8)
    hour = _two(s, 11)
    minute = _two(s, 14)
    second = _two(s, 17)
    if hi < 0 or lo < 0 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23:
        return None
    if minute < 0 or minute > 59 or second < 0 or second > 59:
        return None
    year = hi * 100 + lo
    last: i64 = 30 + ((month + (month >> 3)) & 1)  # 31 for 1, 3, 5, 7, 8, 10, 12
    if month == 2:
        last = 28
        if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
            last = 29
    if year < 1 or day > last:
        return None
    micro: i64 = 0
    if n > 20:
        if ord(s[19]) != 46:  # '.'
            return None
        i: i64 = 20
        while i < 26:  # up to six digits, read as microseconds
            d: i64 = 0
            if i < n - 1:
                d = ord(s[i]) - 48
                if not 0 <= d <= 9:
                    return None
            micro = micro * 10 + d
            i += 1
    # Days since 1970-01-01 of the proleptic Gregorian date (what datetime counts), by the
    # table-free civil-to-days rule (H. Hinnant, "chrono-compatible low-level date algorithms").
    # Years are 1..9999, so every value below fits 64 bits many times over.
    y = year
    m = month - 3
    if month <= 2:
        y -= 1
        m += 12
    era = y // 400
    yoe = y - era * 400
    doy = (153 * m + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    return int(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + micro // 1000)


#: Stands for an absent field in the generated code (a field may be present and null).
MISSING: Final = object()
#: Strings a Pattern keeps as known matches (a few currency codes, in practice).
MATCHES_KEPT: Final = 256


class Pattern:
    """A schema `pattern` for the generated checks: `search`, with the strings that matched kept.

    Most pattern-checked fields repeat a handful of values (currency codes): a set look-up
    then stands in for the regex search (~150 ns). Only matches are kept, at most
    MATCHES_KEPT, so the result is exactly the search's.
    """

    __slots__ = ("matched", "regex")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        self.matched: set[str] = set()

    def ok(self, value: str) -> bool:
        matched = self.matched
        if value in matched:
            return True
        if self.regex.search(value) is None:
            return False
        if len(matched) < MATCHES_KEPT:
            matched.add(value)
        return True


def finite_in(x: float, lo: float, hi: float) -> bool:
    """lo <= x <= hi for a finite float, in C doubles (a generic compare of an untyped value costs more)."""
    return not (math.isinf(x) or math.isnan(x)) and lo <= x <= hi


def schema_digest(schemas: Mapping[str, dict[str, Any]]) -> str:
    """sha256 of the event schemas by type, as JSON with sorted keys: what a generated module was made from."""
    text = json.dumps(dict(schemas), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


#: What writes schemas/checks_generated.py again after a schema file changed (scripts/generate_checks.py).
REGENERATE: Final = "make checks"
