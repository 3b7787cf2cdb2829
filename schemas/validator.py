"""Compile the JSON Schema files in this folder into fast validation functions.

The schema files are the single source of truth: nothing here restates a field,
a bound or an enum. We compile the subset of JSON Schema 2020-12 the contract
uses into plain closures because a generic validator costs tens of microseconds
per message, which the replay speed budget (a few microseconds per event)
cannot pay. A keyword outside the subset is a load-time error, so a schema file
can never silently ask for a check that is not made. The test suite checks the
compiled validators against the reference `jsonschema` implementation.

Must never: read the clock, import from `streams/`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from schemas.errors import SchemaLoadError

Check = Callable[[Any, str], "str | None"]

#: Keywords that only annotate and need no check.
_ANNOTATIONS: Final = frozenset({"$schema", "$id", "title", "description", "$comment", "examples", "default"})
_SUPPORTED: Final = frozenset(
    {
        "type", "required", "properties", "additionalProperties", "const", "enum",
        "minLength", "maxLength", "minimum", "maximum", "pattern", "format", "items",
    }
) | _ANNOTATIONS

# RFC 3339 date-time: a full date, a time, and a mandatory offset (Z or +hh:mm).
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(value: str) -> datetime | None:
    """Return an aware datetime for an RFC 3339 string, or None if it is not one."""
    if not _RFC3339.match(value):
        return None
    text = value
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # fromisoformat takes at most microseconds
        text = text[: frac.start(1) + 6] + text[frac.end(1):]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    raise SchemaLoadError(f"unknown JSON Schema type {name!r}")


def _json_equal(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0 but True != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def compile_schema(schema: dict[str, Any], where: str = "schema") -> Check:
    """Compile one schema (object) into a check returning an error message or None."""
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise SchemaLoadError(f"{where}: unsupported JSON Schema keyword(s) {sorted(unknown)}")
    checks: list[Check] = []

    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for n in names:
            _is_type(None, n)  # validates the name at load time

        def check_type(v: Any, path: str, names: list[str] = names) -> str | None:
            if any(_is_type(v, n) for n in names):
                return None
            return f"{path}: expected {' or '.join(names)}, got {type(v).__name__}"

        checks.append(check_type)
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v, p: None if _json_equal(v, const) else f"{p}: must be {const!r}")
    if "enum" in schema:
        options = list(schema["enum"])
        checks.append(
            lambda v, p: None
            if any(_json_equal(v, o) for o in options)
            else f"{p}: must be one of {options}"
        )
    if "minLength" in schema or "maxLength" in schema:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", math.inf)

        def check_len(v: Any, p: str) -> str | None:
            if isinstance(v, str) and not lo <= len(v) <= hi:
                return f"{p}: length {len(v)} outside [{lo}, {hi}]"
            return None

        checks.append(check_len)
    if "minimum" in schema or "maximum" in schema:
        lo_n, hi_n = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)

        def check_range(v: Any, p: str) -> str | None:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{p}: must be a finite number"
                if not lo_n <= v <= hi_n:
                    return f"{p}: {v} outside [{lo_n}, {hi_n}]"
            return None

        checks.append(check_range)
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])
        checks.append(
            lambda v, p: f"{p}: does not match {rx.pattern}"
            if isinstance(v, str) and not rx.search(v)
            else None
        )
    if "format" in schema:
        if schema["format"] != "date-time":
            raise SchemaLoadError(f"{where}: unsupported format {schema['format']!r}")
        checks.append(
            lambda v, p: f"{p}: not an RFC 3339 date-time with offset: {v!r}"
            if isinstance(v, str) and parse_rfc3339(v) is None
            else None
        )
    if "items" in schema:
        item_check = compile_schema(schema["items"], f"{where}.items")

        def check_items(v: Any, p: str) -> str | None:
            if isinstance(v, list):
                for i, item in enumerate(v):
                    err = item_check(item, f"{p}[{i}]")
                    if err:
                        return err
            return None

        checks.append(check_items)
    if "required" in schema or "properties" in schema or "additionalProperties" in schema:
        checks.append(_compile_object(schema, where))

    def check_all(v: Any, p: str) -> str | None:
        for c in checks:
            err = c(v, p)
            if err:
                return err
        return None

    return check_all


def _compile_object(schema: dict[str, Any], where: str) -> Check:
    required = list(schema.get("required", []))
    props = {
        name: compile_schema(sub, f"{where}.{name}")
        for name, sub in schema.get("properties", {}).items()
    }
    extra = schema.get("additionalProperties", True)
    extra_check: Check | None = None
    if isinstance(extra, dict):
        extra_check = compile_schema(extra, f"{where}.*")
    elif extra is not True and extra is not False:
        raise SchemaLoadError(f"{where}: additionalProperties must be a bool or a schema")

    def check_object(v: Any, p: str) -> str | None:
        if not isinstance(v, dict):
            return None
        for name in required:
            if name not in v:
                return f"{p}: missing required field {name!r}"
        for name, value in v.items():
            sub = props.get(name)
            if sub is not None:
                err = sub(value, f"{p}.{name}")
            elif extra is False:
                err = f"{p}: unexpected field {name!r}"
            elif extra_check is not None:
                err = extra_check(value, f"{p}.{name}")
            else:
                err = None
            if err:
                return err
        return None

    return check_object
