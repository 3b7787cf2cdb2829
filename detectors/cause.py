"""The silence knows why: a customer's recent service failures, and the suspected cause of a silence.

Playbook: a customer who goes quiet after a late or failed delivery or a bad
courier rating left because of the service ("motivated" churn). A discount is
the classic mistake there (the customer who left over late deliveries and got
a 10% promo code): they need an apology and a service promise. So the state
remembers the customer's latest service failures, and each silence stage names
those from `silence_cause_lookback` before the last order up to its deadline,
with the suspected cause `service`; with none there, the cause is `none`.

A service failure is what a service-recovery detector fires on, by its own
rule: a failed or returned delivery, a delivery later than the grace
(delivery.py), a courier rating at or below `negative_rating_max` (rating.py).
Each is kept as [time ms, kind code, order id]; its kind is named by the
reason code of the trigger it made (`delivered_late` also when that trigger
was repeated lateness: each late delivery is one failure).

At most MAX_FAILURES are kept: the earliest at or after last order - lookback
(earlier ones can never count again: the last order only moves forward). The
earliest rather than the latest, because of when deadlines fire: a failure
read after a deadline has passed but before the sweep that fires it is later
than every failure that counts for that deadline, so it never pushes one of
them out, and a silence names the same failures whenever the clock ticked
(live == replay). For the same reason a failure at the deadline's very instant
does not count: whether it was read before the deadline fired depends on the
ticks.

Must never: read the clock.
"""

from __future__ import annotations

import bisect
from typing import Any, Final

from detectors.config import DetectorConfig
from detectors.state import FAILURE_AT, FAILURE_KIND, FAILURE_ORDER, CustomerState
from schemas import Event

#: Service failures kept per customer at most (bounded state).
MAX_FAILURES: Final = 4
#: Kind codes as stored; a courier rating is RATING + the rating (one byte packed either way).
DELIVERY_FAILED: Final = 1
DELIVERY_RETURNED: Final = 2
DELIVERED_LATE: Final = 3
RATING: Final = 10
_NAMES: Final[dict[int, str]] = {
    DELIVERY_FAILED: "delivery_failed", DELIVERY_RETURNED: "delivery_returned", DELIVERED_LATE: "delivered_late",
}
#: The suspected causes of a silence.
SERVICE: Final = "service"
NONE: Final = "none"

#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_insort: Final = bisect.insort


def kind_name(code: int) -> str:
    """The reason code a failure's own trigger carries: delivery_failed, ..., courier_rating_2."""
    name = _NAMES.get(code)
    return name if name is not None else f"courier_rating_{code - RATING}"


def record(cfg: DetectorConfig, st: CustomerState, code: int, order_id: str, ts: int) -> None:
    """Remember one service failure at `ts`, unless it is too old or later than a full list."""
    if ts < st.last_order - cfg.silence_cause_lookback_ms:
        return
    failures = st.failures
    entry: list[Any] = [ts, code, order_id]
    if entry in failures:  # the same failure told by a second event: one failure
        return
    if len(failures) >= MAX_FAILURES:
        if entry > failures[-1]:
            return
        del failures[-1]
    _insort(failures, entry)


def on_order_counted(cfg: DetectorConfig, st: CustomerState, ev: Event) -> None:
    """After an order moved the last order on: forget the failures that can never count again."""
    failures = st.failures
    if failures:
        start = st.last_order - cfg.silence_cause_lookback_ms
        if failures[0][FAILURE_AT] < start:
            st.failures = [f for f in failures if f[FAILURE_AT] >= start]


def of_silence(
    cfg: DetectorConfig, st: CustomerState, deadline: int,
) -> tuple[str, tuple[str, ...], tuple[tuple[str, str, int], ...]]:
    """(suspected cause, reason codes, failures as (kind, order id, time ms)) of a silence stage due at `deadline`.

    The failures counted are those from last order - lookback up to, not including, the deadline.
    """
    start = st.last_order - cfg.silence_cause_lookback_ms
    found = tuple((kind_name(int(f[FAILURE_KIND])), str(f[FAILURE_ORDER]), int(f[FAILURE_AT])) for f in st.failures
                  if start <= f[FAILURE_AT] < deadline)
    if not found:
        return NONE, (), ()
    codes = tuple(dict.fromkeys(f"after_{kind}" for kind, _, _ in found))  # each kind once, first seen first
    return SERVICE, codes, found
