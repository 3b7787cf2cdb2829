"""Delivery failures: failed or returned deliveries, late ones, and repeated lateness.

Last-mile failures drive "motivated" churn: the customer leaves because of the
service, so the right answer is service recovery, and the trigger says so. One
late delivery asks for an apology; `late_repeat_count` late deliveries within
`late_repeat_window` are a pattern, reported instead as `delivery_late_repeated`
(severity high) so the customer gets one stronger contact, not two. Each
failure is also remembered (cause.py), so a silence that follows names it.

Must never: read the clock.
"""

from __future__ import annotations

from detectors import cause
from detectors.config import DAY_MS, DetectorConfig
from detectors.decision import Decision
from detectors.kinds import DELIVERY_FAILED, DELIVERY_LATE, DELIVERY_LATE_REPEATED, NOW
from detectors.state import CustomerState
from schemas import Event
from schemas.decode import to_epoch_ms


def on_event(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    """A delivery (the engine passes only those)."""
    d = ev.data
    status = d["status"]
    order_id = str(d["order_id"])
    fav = st.favourite
    if status in ("failed", "returned"):
        cause.record(cfg, st, cause.DELIVERY_FAILED if status == "failed" else cause.DELIVERY_RETURNED, order_id,
                     ev.ts)
        return [
            Decision(
                customer_id=ev.customer_id,
                kind=DELIVERY_FAILED.name,
                stage=NOW,
                severity=DELIVERY_FAILED.severity,
                family=DELIVERY_FAILED.family,
                time_ms=ev.ts,
                episode=order_id,
                reason_codes=(f"delivery_{status}",),
                evidence={"status": status, "order_id": order_id},
                caused_by=ev.event_id,
                favourite_category=fav,
            )
        ]
    if status != "delivered" or "promised_at" not in d or "delivered_at" not in d:
        return []
    late_ms = to_epoch_ms(d["delivered_at"]) - to_epoch_ms(d["promised_at"])
    if late_ms <= cfg.late_delivery_grace_ms:
        return []
    cause.record(cfg, st, cause.DELIVERED_LATE, order_id, ev.ts)
    st.late_deliveries.append(ev.ts)
    st.late_deliveries.sort()
    del st.late_deliveries[: max(0, len(st.late_deliveries) - cfg.late_repeat_count)]
    in_window = sum(1 for t in st.late_deliveries if ev.ts - cfg.late_repeat_window_ms < t <= ev.ts)
    evidence = {
        "minutes_late": round(late_ms / 60_000, 1),
        "grace_minutes": round(cfg.late_delivery_grace_ms / 60_000, 1),
        "order_id": order_id,
    }
    repeated = in_window >= cfg.late_repeat_count
    kind = DELIVERY_LATE_REPEATED if repeated else DELIVERY_LATE
    if repeated:
        evidence["late_deliveries_in_window"] = in_window
        evidence["window_days"] = round(cfg.late_repeat_window_ms / DAY_MS, 3)
    return [
        Decision(
            customer_id=ev.customer_id,
            kind=kind.name,
            stage=NOW,
            severity=kind.severity,
            family=kind.family,
            time_ms=ev.ts,
            episode=order_id,
            reason_codes=("delivered_late_repeatedly",) if repeated else ("delivered_late",),
            evidence=evidence,
            caused_by=ev.event_id,
            favourite_category=fav,
        )
    ]
