"""What a detector decides: a trigger, emitted or suppressed, with its reasons.

A Decision is plain data. The shell turns it into a CloudEvent (envelope.py)
and routes it: emitted decisions to the trigger topic, suppressed ones to the
audit topic. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Severity of silence stages, in firing order.
SILENCE_STAGES = ("at_risk", "dormant", "lost")

#: Family of events that record what happened (returns, corrections) rather than
#: ask for a contact: never suppressed, so holdout outcomes are measured too.
MEASUREMENT = "measurement"


@dataclass(slots=True)
class Decision:
    customer_id: str
    kind: str                  # see docs/triggers.md for every kind
    stage: str                 # silence stage, or "now" for immediate triggers
    severity: str              # info | low | medium | high
    family: str                # service_recovery | win_back | retention | measurement
    time_ms: int               # event time that caused it (the deadline for time-driven ones)
    episode: str               # what makes the trigger unique for its customer and kind
    reason_codes: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    caused_by: str | None = None          # event_id of the input that caused it
    favourite_category: str | None = None
    suppressed: str | None = None         # suppression reason, None when emitted
    group: str = "treatment"              # treatment | holdout (stable hash of the customer id)
    rfm_segment: str | None = None        # RFM segment when it fired (None: no order yet)
    channels: tuple[str, ...] = ()        # contact channels the customer consents to at time_ms

    @property
    def emitted(self) -> bool:
        return self.suppressed is None

    @property
    def actionable(self) -> bool:
        """Emitted and meant to cause a contact (measurement events never are)."""
        return self.suppressed is None and self.family != MEASUREMENT
