"""A generated accept path for the event schemas: one flat function per schema file.

The closures in validator.py are the reference: they give the error message
and they decide every case this module is not sure about. What is generated
here only says "certainly valid": for each event schema, one Python function
(built from the schema file with `exec`, so nothing restates a field or a
bound) checks every property inline and returns the event time in epoch
milliseconds, or None when it cannot vouch for the object. None sends the
caller to the reference check, so the generated code may be conservative
(exact `type(x) is str`, the canonical `...Z` date-time form only) but must
never accept what the reference rejects; the tests hold it to that on
generated and hand-made objects.

Why: the generic closures cost ~20 µs per event; the replay budget is 5 µs
for everything (bench/replay_bench.py).

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
    i64 = int  # type: ignore[misc]

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


class _Gen:
    """The source of one check function and of the module constants it names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.consts: dict[str, str] = {}  # name -> Python expression

    def const(self, hint: str, expr: str) -> str:
        base = f"{self.prefix}_{re.sub(r'[^0-9A-Za-z]+', '_', hint)}".upper()
        name, i = base, 1
        while name in self.consts:
            i += 1
            name = f"{base}_{i}"
        self.consts[name] = expr
        return name


def _number(value: Any) -> str | None:
    """Python source of a finite int or float bound, or None (the generator writes no other bound)."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return None


def _exact_float(value: Any) -> bool:
    """A bound that compares the same as a double: a finite float, or an int a double holds exactly."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and abs(value) <= 2**53


def _str(value: str) -> str:
    """Python source of a string, in double quotes where repr() would use single ones."""
    r = repr(value)
    return f'"{r[1:-1]}"' if r[0] == "'" and '"' not in value else r


def _func_name(type_: str) -> str:
    return f"check_{re.sub(r'[^0-9A-Za-z]+', '_', type_)}"


def _value_test(g: _Gen, sub: dict[str, Any], x: str, field: str) -> str | None:
    """A Python expression true only if `x` certainly passes `sub`; None if the subset is exceeded."""
    allowed = {"type", "const", "enum", "minLength", "maxLength", "minimum", "maximum", "pattern", "format", "not",
               "description", "title", "$comment", "examples", "default"}
    if set(sub) - allowed:
        return None
    tests: list[str] = []
    kind = sub.get("type")
    if isinstance(kind, list):
        return None
    # String keywords need a str; said once when the type already says it (~2% of replay time).
    is_str = "" if kind == "string" else f"type({x}) is str and "
    if kind == "string":
        tests.append(f"type({x}) is str")
    elif kind == "integer":
        tests.append(f"type({x}) is int")
    elif kind == "number":
        lo: Any = sub.get("minimum")
        hi: Any = sub.get("maximum")
        if _exact_float(lo) and _exact_float(hi):  # floats checked in C, ints as before
            either = (f"(type({x}) is float and finite_in({x}, {float(lo)!r}, {float(hi)!r}))"
                      f" or (type({x}) is int and {x} >= {lo!r} and {x} <= {hi!r})")
            tests.append(f"({either})")
            sub = {k: v for k, v in sub.items() if k not in ("minimum", "maximum")}
        else:
            tests.append(f"(type({x}) is int or (type({x}) is float and math.isfinite({x})))")
    elif kind == "boolean":
        tests.append(f"type({x}) is bool")
    elif kind is not None:
        return None
    if "const" in sub:
        c = sub["const"]
        if type(c) is not str:
            return None
        tests.append(f"{is_str}{x} == {_str(c)}")
    if "enum" in sub:
        options = sub["enum"]
        if not all(type(o) is str for o in options):
            return None
        values = ", ".join(_str(o) for o in sorted(set(options)))
        tests.append(f"{is_str}{x} in {g.const(field, f'frozenset({{{values}}})')}")
    if "minLength" in sub or "maxLength" in sub:
        lo, hi = sub.get("minLength", 0), sub.get("maxLength")
        if type(lo) is not int or (hi is not None and type(hi) is not int):
            return None
        tests.append(f"{is_str}{lo} <= len({x})" + (f" <= {hi}" if hi is not None else "") if lo else
                     f"{is_str}len({x}) <= {hi}")
    if "minimum" in sub or "maximum" in sub:
        if kind not in ("integer", "number"):
            return None
        for key, op in (("minimum", ">="), ("maximum", "<=")):
            if key in sub:
                bound = _number(sub[key])
                if bound is None:
                    return None
                tests.append(f"{x} {op} {bound}")
    if "pattern" in sub:
        pattern = sub["pattern"]
        re.compile(pattern)  # a broken pattern is the reference validator's error to report
        tests.append(f"{is_str}{g.const(field, f'Pattern({_str(pattern)})')}.ok({x})")
    if "format" in sub:
        if sub["format"] != "date-time":
            return None
        tests.append(f"{is_str}fast_epoch_ms({x}) is not None")
    if "not" in sub:
        # Only `not: {pattern}`, what the contract uses to keep control characters out of ids.
        negated = sub["not"]
        if not isinstance(negated, dict) or set(negated) - {"pattern", "description", "$comment"} or \
                "pattern" not in negated:
            return None
        pattern = negated["pattern"]
        re.compile(pattern)
        if pattern == CONTROL_CHARACTERS:
            # str.isprintable() is False for every control character (and for some other
            # characters the pattern allows: those take the reference path), one C call
            # where a regex search costs several times more on every id of every event.
            tests.append(f"{is_str}{x}.isprintable()")
        else:
            tests.append(f"{is_str}{g.const(field + '_not', f're.compile({_str(pattern)})')}.search({x}) is None")
    if kind == "number" and len(tests) == 1:
        return tests[0][1:-1]  # the parentheses only group it with further tests
    return " and ".join(tests) if tests else "True"


def _check_source(name: str, schema: dict[str, Any], g: _Gen) -> list[str] | None:
    """The lines of `def name(v)`, the accept path of one event schema, or None if it is outside the subset."""
    top = {"$schema", "$id", "title", "description", "$comment", "examples", "default",
           "type", "required", "properties", "additionalProperties"}
    if set(schema) - top or schema.get("type") != "object" or schema.get("additionalProperties", True) is not True:
        return None
    props: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    if "occurred_at" not in required or props.get("occurred_at", {}).get("format") != "date-time":
        return None
    if any(name not in props for name in required):
        return None
    body = [f"def {name}(v: dict[str, Any]) -> int | None:"]
    for i, (field, sub) in enumerate(props.items()):
        var = f"x{i}"
        if field == "occurred_at":
            # Its check is the event-time parse itself (a canonical date-time the reference accepts).
            rest = {k: v for k, v in sub.items() if k not in ("type", "format")}
            if sub.get("type") not in (None, "string") or _value_test(g, rest, var, field) != "True":
                return None
            body += ['    ts = fast_epoch_ms(v.get("occurred_at"))', "    if ts is None:", "        return None"]
            continue
        test = _value_test(g, sub, var, field)
        if test is None:
            return None
        if test == "True" and field not in required:
            continue
        body.append(f"    {var} = v.get({_str(field)}, MISSING)")
        if test == "True":
            line = f"    if {var} is MISSING:"
        else:
            absent = f"{var} is MISSING or" if field in required else f"{var} is not MISSING and"
            one_type = re.fullmatch(r"type\((\w+)\) is (\w+)", test)
            fails = f"type({var}) is not {one_type[2]}" if one_type else f"not ({test})"
            line = f"    if {absent} {fails}:"
            if len(line) > 120:
                line = f"    if {absent} not (\n        {test}\n    ):"
        body += [line, "        return None"]
    body.append("    return ts")
    return body


#: The pattern the event schemas keep out of ids under `not` (C0, DEL, C1): schema text, as in the files.
CONTROL_CHARACTERS: Final = "[\\u0000-\\u001F\\u007F-\\u009F]"
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


def compile_event_check(schema: dict[str, Any]) -> EventCheck | None:
    """The accept path of one event schema, or None if the schema is outside what it can generate.

    The function returns occurred_at in epoch ms when the object certainly
    satisfies the schema, else None. It runs the same source `generate_module`
    writes, as interpreted code: what the decoder falls back to when
    schemas/checks_generated.py was generated from other schema files.
    """
    g = _Gen("")
    body = _check_source("check", schema, g)
    if body is None:
        return None
    source = [f"{name} = {expr}" for name, expr in g.consts.items()] + body
    namespace: dict[str, Any] = {"Any": Any, "MISSING": MISSING, "fast_epoch_ms": fast_epoch_ms, "math": math,
                                 "re": re, "Pattern": Pattern, "finite_in": finite_in}
    # The source is generated from the schema files only, never from input data.
    exec(compile("\n".join(source), f"<fastpath {schema.get('$id', 'schema')}>", "exec"), namespace)
    check: EventCheck = namespace["check"]
    check.__doc__ = "\n".join(source)
    return check


def schema_digest(schemas: Mapping[str, dict[str, Any]]) -> str:
    """sha256 of the event schemas by type, as JSON with sorted keys: what a generated module was made from."""
    text = json.dumps(dict(schemas), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


#: What writes schemas/checks_generated.py again after a schema file changed (scripts/generate_checks.py).
REGENERATE: Final = "make checks"


def generate_module(schemas: Mapping[str, tuple[str, dict[str, Any]]]) -> str:
    """The text of schemas/checks_generated.py: a typed check function per event type ({type: (file, schema)}).

    A schema outside the generated subset gets no function: its events take the reference check.
    """
    files = ", ".join(f"schemas/{file}" for file, _ in schemas.values())
    consts: list[str] = []
    funcs: list[str] = []
    made: list[str] = []
    for type_, (file, schema) in schemas.items():
        g = _Gen(type_)
        name = _func_name(type_)
        body = _check_source(name, schema, g)
        if body is None:
            continue
        consts += [f"{c}: Final = {expr}" for c, expr in g.consts.items()]
        body.insert(1, f'    """{file}: occurred_at in epoch ms if `v` certainly satisfies it, else None."""')
        funcs += ["", "", *body]
        made.append(type_)
    dispatch = ["", "", "def check_event(type_: str, v: dict[str, Any]) -> int | None:",
                '    """The check of event type `type_` (one compiled call, no look-up), else None."""']
    for type_ in made:
        dispatch += [f"    if type_ == {_str(type_)}:", f"        return {_func_name(type_)}(v)"]
    dispatch.append("    return None")
    code = "\n".join(consts + funcs)
    imports = [f"import {m}" for m in ("math", "re") if f"{m}." in code]
    helpers = ["MISSING", "EventCheck", *(h for h in ("Pattern", "fast_epoch_ms", "finite_in") if f"{h}(" in code)]
    digest = schema_digest({t: s for t, (_, s) in schemas.items()})
    lines = [
        f'"""Generated by `{REGENERATE}` from the event schema files: do not edit.',
        "",
        f"Made from {files}.",
        "",
        "The accept path of each event schema (schemas/fastpath.py says what it may accept) as a",
        "typed module, so that the compiled core (make core) runs it as native code. schemas.decode",
        "uses it only while SCHEMA_DIGEST matches the schema files; tests/unit/test_fastpath.py",
        "fails when this text differs from what the generator writes now.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        *imports,
        "from typing import Any, Final",
        "",
        f"from schemas.fastpath import {', '.join(helpers)}",
        "",
        f'SCHEMA_DIGEST: Final = "{digest}"',
        "",
        *consts,
        *funcs,
        *dispatch,
        "",
        "",
        "CHECKS: Final[dict[str, EventCheck]] = {",
        *(f"    {_str(t)}: {_func_name(t)}," for t in made),
        "}",
        "",
    ]
    return "\n".join(lines)
