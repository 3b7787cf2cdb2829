"""Detector configuration: thresholds and policies, frozen, loaded once.

Defaults come from the win-back playbooks cited in DESIGN.md section 5 and 6.
The configuration is apart from state: per-customer state never holds a
threshold, so a new configuration applies to every customer at once. Every
setting is listed, with its default and meaning, in docs/configuration.md (a
test keeps the two in step).

Must never: read the clock, the environment or files (the shell loads values and
passes them in through `from_mapping` and `with_params`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Final

import orjson

from detectors.cadence import CadenceParams
from detectors.config_values import (
    DAY_MS,
    HOUR_MS,
    convert,
    format_duration,
    parse_channels,
    parse_cooldowns,
    parse_duration,
    parse_windows,
)
from detectors.kinds import COOLDOWN_KINDS, DEFAULT_COOLDOWNS
from detectors.pareto import ParetoParams
from detectors.rfm import RfmCuts
from schemas.decode import ALL_CHANNELS, CHANNEL_NAME, DEFAULT_CHANNELS
from schemas.errors import ConfigError

__all__ = ["COOLDOWN_KINDS", "DAY_MS", "DEFAULT_COOLDOWNS", "DETECTOR_VERSION", "HOUR_MS", "DetectorConfig",
           "format_duration", "parse_duration"]

#: 2.1.0: event-caused triggers and rating follow-ups got new ids (the causing event, or the rating
#: that scheduled the check, joined the hash: envelope.trigger_id); silence and frequency-drop ids
#: are unchanged. Consumers deduplicating across the upgrade can tell the two versions apart here.
#: 2.2.0: silence triggers carry `suspected_cause` and `service_failures`, and reason codes naming
#: the failures (`after_delivery_failed`, ...); consent by family (win_back and retention need a
#: grant, service recovery goes out unless opted out; suppression reason no_consent) and
#: configurable channels (viber, messenger by default). Ids are unchanged.
#: 2.3.0: silence is "longer than" the window (an order at the deadline is none); deadlines fire
#: 15 minutes (allowed_lateness) after they pass; `customer_returned` only after a win-back that
#: went out (for holdout members: that no rule but the holdout suppressed); one contact per service
#: incident (later facts of the order suppressed `same_incident`), a cap on contacts per customer
#: (`contact_cap`), severity raised one step for valuable customers (reason code
#: `high_value_customer`) and a valuable customer's silence labelled `sleeping_valuable` from
#: at_risk on. Ids are unchanged.
DETECTOR_VERSION: Final = "2.3.0"

#: Category silence windows (at_risk, dormant), the playbooks' "silence windows".
DEFAULT_WINDOWS: Final[dict[str, tuple[int, int]]] = {
    "grocery": (7 * DAY_MS, 14 * DAY_MS),
    "fashion": (30 * DAY_MS, 60 * DAY_MS),
    "home": (60 * DAY_MS, 120 * DAY_MS),
    "other": (30 * DAY_MS, 90 * DAY_MS),
}

#: Upper bounds that keep per-customer state small (lists sized by these settings).
MAX_BASKET_RECENT: Final = 5
MAX_LATE_REPEAT: Final = 5
MAX_WINBACK_EPISODES: Final = 5
MAX_CONTACT_CAP: Final = 5
MAX_VALUE_STEPS: Final = 2
#: Contact channels at most (a customer's consent record holds one entry per channel).
MAX_CHANNELS: Final = 16
_CHANNEL_NAME: Final = re.compile(CHANNEL_NAME)


@dataclass(frozen=True)
class DetectorConfig:
    """Every threshold of the core. Durations are milliseconds, shares are 0..1."""

    # -- silence by category ---------------------------------------------------
    #: category -> (at_risk, dormant) silence windows; unknown categories use "other".
    silence_windows: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    #: Lost stage for every category: win-back response halves after ~180 days.
    silence_lost_ms: int = 180 * DAY_MS
    #: A silence stage's suspected cause is "service" when a service failure (failed, returned or
    #: late delivery, negative courier rating) lies between this long before the last order and the
    #: stage's deadline (detectors/cause.py): such a customer needs an apology, not a discount.
    silence_cause_lookback_ms: int = 30 * DAY_MS
    # -- silence by personal cadence (BG/NBD; active when `cadence` is set) -----
    #: Population parameters from `churn-signals fit` (None: category windows only).
    cadence: CadenceParams | None = None
    #: P(alive) below which each stage fires; the category window stays the floor.
    cadence_at_risk_p_alive: float = 0.5
    cadence_dormant_p_alive: float = 0.3
    cadence_lost_p_alive: float = 0.1
    #: Pareto/NBD population parameters from `fit` (its `pareto_nbd` object): the snapshot `risk`
    #: ranks by its expected orders when set (detectors/snapshot.py); deadlines stay BG/NBD's.
    pareto: ParetoParams | None = None
    #: Horizon of the snapshot risk: expected orders within this horizon.
    risk_horizon_ms: int = 90 * DAY_MS
    #: RFM cut points (from `fit`, or these defaults).
    rfm: RfmCuts = field(default_factory=RfmCuts)
    # -- frequency drop ----------------------------------------------------------
    #: Window of the recent order rate.
    frequency_window_ms: int = 30 * DAY_MS
    #: Fires when recent rate < ratio * baseline rate.
    frequency_drop_ratio: float = 0.5
    #: Minimum orders and history span before a baseline rate is trusted.
    frequency_min_orders: int = 5
    frequency_min_span_ms: int = 60 * DAY_MS
    # -- basket value drop -------------------------------------------------------
    #: Recent average over this many latest orders ...
    basket_recent_orders: int = 3
    #: ... below ratio * the average of the orders before them fires.
    basket_drop_ratio: float = 0.5
    #: Orders before the recent ones needed to trust the baseline average.
    basket_min_baseline_orders: int = 3
    # -- favourite category abandonment -----------------------------------------
    #: The favourite needs this many orders and this share of all orders.
    favourite_min_orders: int = 3
    favourite_min_share: float = 0.5
    # -- service signals ---------------------------------------------------------
    #: Ratings at or below this are negative (1-5 scale).
    negative_rating_max: int = 2
    #: Follow-up check after a negative rating ("control contact after 72 hours").
    rating_follow_up_ms: int = 72 * HOUR_MS
    #: A delivery later than promised by more than this is late.
    late_delivery_grace_ms: int = 30 * 60_000
    #: This many late deliveries within the window make "repeated lateness".
    late_repeat_count: int = 2
    late_repeat_window_ms: int = 30 * DAY_MS
    # -- suppression (DESIGN.md section 6) ---------------------------------------
    #: Share of customers in the holdout (control) group, by stable hash.
    holdout_share: float = 0.10
    #: Salt of the holdout hash; changing it reshuffles the groups.
    holdout_salt: str = "churn-signals-holdout-v1"
    #: Contact channels a consent event may name (besides "all") and a trigger may list:
    #: the playbooks' "e-mail + Viber/SMS + web push" and messengers.
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    #: Marketing (win_back and retention families) only on channels the customer granted:
    #: "communications must rest on the customer's consent". False: unless opted out.
    marketing_consent_required: bool = True
    #: True: every family, service recovery too, only on granted channels (strict opt-in
    #: regimes). False: service recovery goes out on every channel not opted out of.
    consent_required: bool = False
    #: kind -> cooldown after an emitted trigger of that kind; the kinds that may carry one
    #: (COOLDOWN_KINDS) and their defaults are in the registry of kinds (detectors/kinds.py).
    cooldowns: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COOLDOWNS))
    #: At most this many win-back episodes per customer per period.
    winback_max_episodes: int = 2
    winback_period_ms: int = 365 * DAY_MS
    #: No win-back trigger this long after the customer returned.
    return_exclusion_ms: int = 90 * DAY_MS
    #: Service-recovery triggers of one order within this long of the one that went out are one
    #: incident, one contact: the later ones are suppressed `same_incident` (0: off).
    incident_window_ms: int = 7 * DAY_MS
    #: At most this many contacts per customer within `contact_cap_period` ("do not pester": 2-3
    #: touches per window, not 5 letters a week); marketing past it is suppressed `contact_cap`,
    #: service recovery goes out and counts (0: no cap). detectors/suppression.py says which count.
    contact_cap: int = 3
    contact_cap_period_ms: int = 7 * DAY_MS
    # -- value ---------------------------------------------------------------------
    #: Steps (low -> medium -> high) a contact's severity rises for a valuable customer, one whose
    #: RFM frequency and monetary scores are both the top one ("sleeping valuable": win back first) (0: off).
    value_severity_steps: int = 1
    # -- clock ---------------------------------------------------------------------
    #: Deadlines fire only once the clock is past them by more than this, so an order that
    #: occurred before a silence deadline but is read up to this late cancels the trigger
    #: instead of retracting it ("slightly late data must not cause a win-back"). Every
    #: time-driven trigger goes out this much after its deadline; replay's reorder buffer
    #: (`--lateness`) defaults to it.
    allowed_lateness_ms: int = 15 * 60_000

    def __post_init__(self) -> None:
        _validate(self)

    def windows_for(self, category: str | None) -> tuple[int, int]:
        windows = self.silence_windows.get(category or "other")
        return windows if windows is not None else self.silence_windows["other"]

    @property
    def p_alive_thresholds(self) -> tuple[float, float, float]:
        return (self.cadence_at_risk_p_alive, self.cadence_dormant_p_alive, self.cadence_lost_p_alive)

    @property
    def version(self) -> str:
        """Short stable hash of the configuration (fitted parameters included)."""
        values = asdict(self)
        if values["pareto"] is None:  # configurations without it keep the hash they had before it existed
            del values["pareto"]
        blob = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:12]

    def with_params(self, params: dict[str, Any]) -> DetectorConfig:
        """This configuration with the cadence models and RFM cuts of a `fit` output."""
        cadence = CadenceParams.from_mapping(params)
        pareto = (ParetoParams.from_mapping(params["pareto_nbd"], cadence.time_unit)
                  if "pareto_nbd" in params else None)
        rfm = RfmCuts.from_mapping(params["rfm"]) if isinstance(params.get("rfm"), dict) else self.rfm
        return replace(self, cadence=cadence, pareto=pareto, rfm=rfm)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DetectorConfig:
        """Build from plain values (file or env): durations as '7d'-style strings.

        `silence_windows` is a mapping category -> "at_risk/dormant" (e.g. "7d/14d")
        or a two-item list, merged over the defaults; `cooldowns` a mapping
        kind -> duration, merged over the defaults (env: "kind=7d,kind=1d").
        """
        known = {f.name: f for f in fields(cls) if f.name not in _NOT_SETTINGS}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key[:-3] + "_ms" if key.endswith("_ms") else key
            if name not in known and f"{name}_ms" in known:
                name = f"{name}_ms"
            if name not in known:
                raise ConfigError(
                    f"unknown detector setting {key!r}; known: {', '.join(sorted(setting_names()))}"
                )
            if name == "silence_windows":
                kwargs[name] = parse_windows(raw, DEFAULT_WINDOWS)
            elif name == "cooldowns":
                kwargs[name] = parse_cooldowns(raw, DEFAULT_COOLDOWNS, COOLDOWN_KINDS)
            elif name == "channels":
                kwargs[name] = parse_channels(raw)
            elif name.endswith("_ms"):
                kwargs[name] = parse_duration(raw, key, allow_zero=name in _ZERO_OK)
            else:
                kwargs[name] = convert(raw, key, _KINDS.get(type(getattr(_DEFAULT, name)), str))
        return cls(**kwargs)


#: Fields set from a `fit` output (--params), not from the settings file or env.
_NOT_SETTINGS: Final = frozenset({"cadence", "pareto", "rfm"})
#: Durations for which 0 is meaningful (off).
_ZERO_OK: Final = frozenset({"allowed_lateness_ms", "silence_cause_lookback_ms", "incident_window_ms"})
_KINDS: Final[dict[type, type]] = {int: int, float: float, bool: bool, str: str}


def setting_names() -> list[str]:
    """Public names of the settings (durations without their `_ms` suffix)."""
    return [f.name[:-3] if f.name.endswith("_ms") else f.name for f in fields(DetectorConfig)
            if f.name not in _NOT_SETTINGS]


def _share(value: float, name: str, *, lo_open: bool = False, hi_open: bool = False) -> None:
    if not ((value > 0 if lo_open else value >= 0) and (value < 1 if hi_open else value <= 1)):
        lo, hi = "(0" if lo_open else "[0", "1)" if hi_open else "1]"
        raise ConfigError(f"{name}: expected a number in {lo}, {hi}, got {value!r}")


def _validate(c: DetectorConfig) -> None:
    if not c.silence_windows or "other" not in c.silence_windows:
        raise ConfigError("silence_windows must define the 'other' category")
    for cat, (risk, dormant) in c.silence_windows.items():
        if not 0 < risk < dormant:
            raise ConfigError(
                f"silence_windows.{cat}: at_risk ({format_duration(risk)}) must be positive "
                f"and shorter than dormant ({format_duration(dormant)})"
            )
        if dormant >= c.silence_lost_ms:
            raise ConfigError(
                f"silence_windows.{cat}: dormant ({format_duration(dormant)}) must be shorter "
                f"than silence_lost ({format_duration(c.silence_lost_ms)})"
            )
    p = c.p_alive_thresholds
    for name, v in zip(("cadence_at_risk_p_alive", "cadence_dormant_p_alive", "cadence_lost_p_alive"), p,
                       strict=True):
        _share(v, name, lo_open=True, hi_open=True)
    if not p[0] > p[1] > p[2]:
        raise ConfigError(f"cadence P(alive) thresholds must fall stage by stage (at_risk > dormant > lost), got {p}")
    if not 1 <= c.negative_rating_max < 5:
        raise ConfigError("negative_rating_max must be between 1 and 4")
    _share(c.frequency_drop_ratio, "frequency_drop_ratio", lo_open=True, hi_open=True)
    _share(c.basket_drop_ratio, "basket_drop_ratio", lo_open=True, hi_open=True)
    _share(c.favourite_min_share, "favourite_min_share", lo_open=True)
    _share(c.holdout_share, "holdout_share", hi_open=True)
    if c.frequency_min_orders < 2:
        raise ConfigError("frequency_min_orders must be at least 2")
    bounded = (
        ("basket_recent_orders", c.basket_recent_orders, 1, MAX_BASKET_RECENT),
        ("basket_min_baseline_orders", c.basket_min_baseline_orders, 1, 1000),
        ("favourite_min_orders", c.favourite_min_orders, 1, 1000),
        ("late_repeat_count", c.late_repeat_count, 2, MAX_LATE_REPEAT),
        ("winback_max_episodes", c.winback_max_episodes, 1, MAX_WINBACK_EPISODES),
        ("contact_cap", c.contact_cap, 0, MAX_CONTACT_CAP),
        ("value_severity_steps", c.value_severity_steps, 0, MAX_VALUE_STEPS),
    )
    for name, value, lo, hi in bounded:
        if not lo <= value <= hi:
            raise ConfigError(f"{name}: expected a whole number in {lo}..{hi} (state stays bounded), got {value}")
    if c.allowed_lateness_ms < 0:
        raise ConfigError("allowed_lateness must not be negative")
    if c.silence_cause_lookback_ms < 0:
        raise ConfigError("silence_cause_lookback must not be negative")
    if not c.holdout_salt:
        raise ConfigError("holdout_salt must not be empty")
    unknown = set(c.cooldowns) - set(COOLDOWN_KINDS)
    if unknown:
        raise ConfigError(f"cooldowns: unknown kind(s) {sorted(unknown)}; known: {', '.join(COOLDOWN_KINDS)}")
    if any(v < 0 for v in c.cooldowns.values()):
        raise ConfigError("cooldowns must not be negative")
    _validate_channels(c.channels)


def _validate_channels(channels: tuple[str, ...]) -> None:
    if not 1 <= len(channels) <= MAX_CHANNELS:
        raise ConfigError(f"channels: expected 1..{MAX_CHANNELS} contact channels, got {len(channels)}")
    for name in channels:
        if not isinstance(name, str) or _CHANNEL_NAME.fullmatch(name) is None:
            raise ConfigError(f"channels: {name!r} is not a channel name (a lower-case letter, then up to 31 "
                              "lower-case letters, digits, '_' or '-')")
        if name == ALL_CHANNELS:
            raise ConfigError(f"channels: {ALL_CHANNELS!r} is reserved (a consent for it speaks for every channel)")
    if len(set(channels)) != len(channels):
        raise ConfigError(f"channels: each channel once, got {', '.join(channels)}")


_DEFAULT: Final = DetectorConfig()
