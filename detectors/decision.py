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


@dataclass(slots=True)
class Decision:
    customer_id: str
    kind: str                  # silence, frequency_drop, negative_rating, delivery_failed, delivery_late
    stage: str                 # silence stage, or "now" for immediate triggers
    severity: str              # info | low | medium | high
    family: str                # service_recovery | win_back | retention
    time_ms: int               # event time that caused it (the deadline for time-driven ones)
    episode: str               # what makes the trigger unique for its customer and kind
    reason_codes: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    caused_by: str | None = None          # event_id of the input that caused it
    favourite_category: str | None = None
    suppressed: str | None = None         # suppression reason, None when emitted

    @property
    def emitted(self) -> bool:
        return self.suppressed is None
