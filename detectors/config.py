"""Detector configuration: thresholds and policies, frozen, loaded once.

Defaults come from the win-back playbooks cited in DESIGN.md section 5. The
configuration is apart from state: per-customer state never holds a threshold,
so a new configuration applies to every customer at once.

Must never: read the clock, the environment or files (the shell loads values and
passes them in through `from_mapping`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from schemas.errors import ConfigError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
DETECTOR_VERSION = "1.0.0"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_duration(value: Any, name: str) -> int:
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
    if ms <= 0:
        raise ConfigError(f"{name}: duration must be positive, got {value!r}")
    return ms


def format_duration(ms: int) -> str:
    """Inverse of parse_duration for display (largest exact unit)."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


#: Category silence windows (at_risk, dormant), the playbooks' "silence windows".
DEFAULT_WINDOWS: dict[str, tuple[int, int]] = {
    "grocery": (7 * DAY_MS, 14 * DAY_MS),
    "fashion": (30 * DAY_MS, 60 * DAY_MS),
    "home": (60 * DAY_MS, 120 * DAY_MS),
    "other": (30 * DAY_MS, 90 * DAY_MS),
}


@dataclass(frozen=True)
class DetectorConfig:
    """Every threshold of the core. Durations are milliseconds."""

    #: category -> (at_risk, dormant) silence windows; unknown categories use "other".
    silence_windows: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    #: Lost stage for every category: win-back response halves after ~180 days.
    silence_lost_ms: int = 180 * DAY_MS
    #: Ratings at or below this are negative (1-5 scale).
    negative_rating_max: int = 2
    #: A delivery later than promised by more than this is late.
    late_delivery_grace_ms: int = 30 * 60_000
    #: Frequency drop: window of the recent rate.
    frequency_window_ms: int = 30 * DAY_MS
    #: Frequency drop fires when recent rate < ratio * baseline rate.
    frequency_drop_ratio: float = 0.5
    #: Minimum orders and history span before a baseline rate is trusted.
    frequency_min_orders: int = 5
    frequency_min_span_ms: int = 60 * DAY_MS
    #: Deadlines fire only once the clock is this far past them, so events that
    #: arrive slightly out of order can still cancel a silence.
    allowed_lateness_ms: int = 0

    def __post_init__(self) -> None:
        if not self.silence_windows or "other" not in self.silence_windows:
            raise ConfigError("silence_windows must define the 'other' category")
        for cat, (risk, dormant) in self.silence_windows.items():
            if not 0 < risk < dormant:
                raise ConfigError(
                    f"silence_windows.{cat}: at_risk ({format_duration(risk)}) must be positive "
                    f"and shorter than dormant ({format_duration(dormant)})"
                )
            if dormant >= self.silence_lost_ms:
                raise ConfigError(
                    f"silence_windows.{cat}: dormant ({format_duration(dormant)}) must be shorter "
                    f"than silence_lost ({format_duration(self.silence_lost_ms)})"
                )
        if not 1 <= self.negative_rating_max < 5:
            raise ConfigError("negative_rating_max must be between 1 and 4")
        if not 0 < self.frequency_drop_ratio < 1:
            raise ConfigError("frequency_drop_ratio must be between 0 and 1 (exclusive)")
        if self.frequency_min_orders < 2:
            raise ConfigError("frequency_min_orders must be at least 2")
        if self.allowed_lateness_ms < 0:
            raise ConfigError("allowed_lateness must not be negative")

    def windows_for(self, category: str | None) -> tuple[int, int]:
        return self.silence_windows.get(category or "other") or self.silence_windows["other"]

    @property
    def version(self) -> str:
        """Short stable hash of the configuration, stamped on every trigger."""
        blob = orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DetectorConfig:
        """Build from plain values (file or env): durations as '7d'-style strings.

        `silence_windows` is a mapping category -> "at_risk/dormant" (e.g. "7d/14d")
        or a two-item list; it is merged over the defaults.
        """
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key[:-3] + "_ms" if key.endswith("_ms") else key
            if name not in known and f"{name}_ms" in known:
                name = f"{name}_ms"
            if name not in known:
                raise ConfigError(
                    f"unknown detector setting {key!r}; known: {', '.join(sorted(_public_names()))}"
                )
            if name == "silence_windows":
                kwargs[name] = _parse_windows(raw)
            elif name.endswith("_ms"):
                kwargs[name] = parse_duration(raw, key)
            elif name == "frequency_drop_ratio":
                kwargs[name] = _number(raw, key, float)
            else:
                kwargs[name] = _number(raw, key, int)
        return cls(**kwargs)


def _public_names() -> list[str]:
    return [f.name[:-3] if f.name.endswith("_ms") else f.name for f in fields(DetectorConfig)]


def _number(raw: Any, key: str, kind: type) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a {kind.__name__}, got {raw!r}") from None
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ConfigError(f"{key}: expected a whole number, got {raw!r}")
    return value


def _parse_windows(raw: Any) -> dict[str, tuple[int, int]]:
    if isinstance(raw, str):  # env form: "grocery=7d/14d,fashion=30d/60d"
        items: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            cat, sep, spec = part.partition("=")
            if not sep:
                raise ConfigError(f"silence_windows: expected category=at_risk/dormant, got {part!r}")
            items[cat.strip()] = spec
        raw = items
    if not isinstance(raw, dict):
        raise ConfigError("silence_windows: expected a mapping of category to 'at_risk/dormant'")
    windows = dict(DEFAULT_WINDOWS)
    for cat, spec in raw.items():
        pair = spec.split("/") if isinstance(spec, str) else spec
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"silence_windows.{cat}: expected 'at_risk/dormant' like '7d/14d', got {spec!r}")
        windows[str(cat)] = (
            parse_duration(pair[0], f"silence_windows.{cat}.at_risk"),
            parse_duration(pair[1], f"silence_windows.{cat}.dormant"),
        )
    return windows
