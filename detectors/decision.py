"""What a detector decides: a trigger, emitted or suppressed, with its reasons.

A Decision is plain data. The shell turns it into a CloudEvent (envelope.py)
and routes it: emitted decisions to the trigger topic, suppressed ones to the
audit topic. Nothing is dropped silently.
"""

from __future__ import annotations

from typing import Any, Final

from detectors.kinds import MEASUREMENT

_FIELDS: Final = ("customer_id", "kind", "stage", "severity", "family", "time_ms", "episode", "reason_codes",
                  "evidence", "caused_by", "favourite_category", "suppressed", "group", "rfm_segment", "channels",
                  "origin", "suspected_cause", "service_failures")


class Decision:
    """One decision. A plain class rather than a dataclass: the compiled core (make core) builds
    its __init__ in C, where a dataclass's generated __init__ stays interpreted (~0.5 µs each)."""

    __slots__ = _FIELDS

    def __init__(
        self,
        customer_id: str,
        kind: str,                  # a registered kind's name (detectors/kinds.py, docs/triggers.md)
        stage: str,                 # one of the kind's stages: a silence stage, "follow_up", or "now"
        severity: str,              # info | low | medium | high (kinds.SEVERITIES)
        family: str,                # the kind's: service_recovery | win_back | retention | measurement
        time_ms: int,               # event time that caused it (the deadline for time-driven ones)
        episode: str,               # its episode: a silence's last order (ms), a rated or delivered order's id, ...
        reason_codes: tuple[str, ...],
        evidence: dict[str, Any] | None = None,
        caused_by: str | None = None,           # event_id of the input that caused it
        favourite_category: str | None = None,
        suppressed: str | None = None,          # suppression reason, None when emitted
        group: str = "treatment",               # treatment | holdout (stable hash of the customer id)
        rfm_segment: str | None = None,         # RFM segment when it fired (None: no order yet)
        channels: tuple[str, ...] = (),         # contact channels it may use at time_ms (suppression.py)
        # What tells a time-driven trigger apart from others of its customer, kind, episode and
        # stage, when those do not (a follow-up: the rating that scheduled it); an
        # event-caused one is told apart by `caused_by`. Part of the id (envelope.trigger_id).
        origin: str = "",
        # A silence's suspected cause, "service" or "none" (detectors/cause.py); None for other kinds.
        suspected_cause: str | None = None,
        # The service failures behind a "service" cause: (kind, order id, time ms), oldest first.
        service_failures: tuple[tuple[str, str, int], ...] = (),
    ) -> None:
        self.customer_id = customer_id
        self.kind = kind
        self.stage = stage
        self.severity = severity
        self.family = family
        self.time_ms = time_ms
        self.episode = episode
        self.reason_codes = reason_codes
        self.evidence: dict[str, Any] = {} if evidence is None else evidence
        self.caused_by = caused_by
        self.favourite_category = favourite_category
        self.suppressed = suppressed
        self.group = group
        self.rfm_segment = rfm_segment
        self.channels = channels
        self.origin = origin
        self.suspected_cause = suspected_cause
        self.service_failures = service_failures

    def _values(self) -> tuple[Any, ...]:
        return (self.customer_id, self.kind, self.stage, self.severity, self.family, self.time_ms, self.episode,
                self.reason_codes, self.evidence, self.caused_by, self.favourite_category, self.suppressed,
                self.group, self.rfm_segment, self.channels, self.origin, self.suspected_cause,
                self.service_failures)

    __hash__ = None  # type: ignore[assignment]  # mutable record: equal by value, not hashable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._values() == other._values()

    def __repr__(self) -> str:
        return "Decision(" + ", ".join(f"{k}={v!r}" for k, v in zip(_FIELDS, self._values(), strict=True)) + ")"

    @property
    def emitted(self) -> bool:
        return self.suppressed is None

    @property
    def actionable(self) -> bool:
        """Emitted and meant to cause a contact (measurement events never are)."""
        return self.suppressed is None and self.family != MEASUREMENT
