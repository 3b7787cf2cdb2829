"""The generator of schemas/checks_generated.py: one flat accept-path function per event schema.

Used only by `make checks` (scripts/generate_checks.py) and the tests, never at run time:
a command finding the generated module stale stops with one line instead
(schemas.decode.StaleChecks), the way a stale compiled core does.

The closures in schemas/validator.py are the reference: they give the error
message and they decide every case this code is not sure about. What is
generated here only says "certainly valid": for each event schema, one typed
function checks every property inline and returns the event time in epoch
milliseconds, or None when it cannot vouch for the object. None sends the
caller to the reference check, so the generated code may be conservative
(exact `type(x) is str`, the canonical `...Z` date-time form only) but must
never accept what the reference rejects; tests/unit/test_fastpath.py holds it
to that on generated and hand-made objects.

Why: the generic closures cost ~20 µs per event; the replay budget is 5 µs for
everything (bench/replay_bench.py). The helpers the generated code calls
(fast_epoch_ms, Pattern, finite_in, MISSING) live in schemas/fastpath.py and
are compiled with the core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from schemas.fastpath import (
    MISSING,
    REGENERATE,
    EventCheck,
    Pattern,
    fast_epoch_ms,
    finite_in,
    schema_digest,
)

#: The schemas' "no control characters" pattern: generated as a compiled regex search (no match cache).
CONTROL_CHARACTERS = "[\\u0000-\\u001F\\u007F-\\u009F]"


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

def compile_event_check(schema: dict[str, Any]) -> EventCheck | None:
    """The accept path of one event schema, or None if the schema is outside what it can generate.

    The function returns occurred_at in epoch ms when the object certainly
    satisfies the schema, else None. It runs the same source `generate_module`
    writes, as interpreted code: the tests hold the two to the same answers.
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
