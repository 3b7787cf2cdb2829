"""Parsing of configuration values: durations, numbers, booleans, window and cooldown maps, channel lists.

Values come from TOML (typed) or the environment (strings); both go through
these functions, so "7d" in a file and CHURN_DETECTOR_X=7d behave the same and
every mistake is a ConfigError that names the setting.

Must never: read the environment or files.
"""

from __future__ import annotations

import re
from typing import Any, Final

from schemas.errors import ConfigError

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


def parse_duration(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """'7d', '36h', '90s', '250ms' or a number of days -> milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration like '7d' or '36h', got {value!r}")
    if isinstance(value, (int, float)):
        ms = round(value * DAY_MS)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(
                f"{name}: expected a duration like '7d', '36h', '90s' or '250ms', got {value!r}"
            )
        ms = round(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if ms < 0 or (ms == 0 and not allow_zero):
        raise ConfigError(f"{name}: duration must be positive, got {value!r}")
    return ms


def format_duration(ms: int) -> str:
    """Inverse of parse_duration for display (largest exact unit)."""
    if ms == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def convert(raw: Any, key: str, kind: type) -> Any:
    """A number, boolean or string setting from a typed (TOML) or string (env) value."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    if kind is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{key}: expected a string, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise ConfigError(f"{key}: expected a {kind.__name__}, got {raw!r}")
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a {kind.__name__}, got {raw!r}") from None
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ConfigError(f"{key}: expected a whole number, got {raw!r}")
    return value


def _env_map(raw: str, name: str, form: str) -> dict[str, Any]:
    """'a=x,b=y' (the environment form of a mapping) -> {'a': 'x', 'b': 'y'}."""
    items: dict[str, Any] = {}
    for part in [p.strip() for p in raw.split(",") if p.strip()]:
        k, sep, spec = part.partition("=")
        if not sep:
            raise ConfigError(f"{name}: expected {form}, got {part!r}")
        items[k.strip()] = spec.strip()
    return items


def parse_windows(raw: Any, defaults: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    if isinstance(raw, str):  # env form: "grocery=7d/14d,fashion=30d/60d"
        raw = _env_map(raw, "silence_windows", "category=at_risk/dormant")
    if not isinstance(raw, dict):
        raise ConfigError("silence_windows: expected a mapping of category to 'at_risk/dormant'")
    windows = dict(defaults)
    for cat, spec in raw.items():
        pair = spec.split("/") if isinstance(spec, str) else spec
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"silence_windows.{cat}: expected 'at_risk/dormant' like '7d/14d', got {spec!r}")
        windows[str(cat)] = (
            parse_duration(pair[0], f"silence_windows.{cat}.at_risk"),
            parse_duration(pair[1], f"silence_windows.{cat}.dormant"),
        )
    return windows


def parse_channels(raw: Any) -> tuple[str, ...]:
    """Channel names: a list (TOML) or, in the environment, 'email,sms,viber'. Names are checked by the config."""
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(c, str) for c in raw):
        raise ConfigError(f"channels: expected a list of channel names like 'email,sms,viber', got {raw!r}")
    return tuple(raw)


def parse_cooldowns(raw: Any, defaults: dict[str, int], kinds: tuple[str, ...]) -> dict[str, int]:
    if isinstance(raw, str):  # env form: "negative_rating=3d,delivery_late=0s"
        raw = _env_map(raw, "cooldowns", "kind=duration")
    if not isinstance(raw, dict):
        raise ConfigError("cooldowns: expected a mapping of trigger kind to a duration")
    out = dict(defaults)
    for kind, spec in raw.items():
        if kind not in kinds:
            raise ConfigError(f"cooldowns: unknown kind {kind!r}; known: {', '.join(kinds)}")
        out[str(kind)] = parse_duration(spec, f"cooldowns.{kind}", allow_zero=True)
    return out
