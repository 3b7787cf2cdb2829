"""Delivery failures: failed or returned deliveries, and deliveries later than promised.

Last-mile failures drive "motivated" churn: the customer leaves because of the
service, so the right answer is service recovery, and the trigger says so.

Must never: read the clock.
"""

from __future__ import annotations

from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.state import CustomerState
from schemas import Event
from schemas.decode import to_epoch_ms


def on_delivery(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    d = ev.data
    status = d["status"]
    order_id = str(d["order_id"])
    fav = st.favourite_category()
    if status in ("failed", "returned"):
        return [
            Decision(
                customer_id=ev.customer_id,
                kind="delivery_failed",
                stage="now",
                severity="high",
                family="service_recovery",
                time_ms=ev.ts,
                episode=order_id,
                reason_codes=(f"delivery_{status}",),
                evidence={"status": status, "order_id": order_id},
                caused_by=ev.event_id,
                favourite_category=fav,
            )
        ]
    if status == "delivered" and "promised_at" in d and "delivered_at" in d:
        late_ms = to_epoch_ms(d["delivered_at"]) - to_epoch_ms(d["promised_at"])
        if late_ms > cfg.late_delivery_grace_ms:
            return [
                Decision(
                    customer_id=ev.customer_id,
                    kind="delivery_late",
                    stage="now",
                    severity="medium",
                    family="service_recovery",
                    time_ms=ev.ts,
                    episode=order_id,
                    reason_codes=("delivered_late",),
                    evidence={
                        "minutes_late": round(late_ms / 60_000, 1),
                        "grace_minutes": round(cfg.late_delivery_grace_ms / 60_000, 1),
                        "order_id": order_id,
                    },
                    caused_by=ev.event_id,
                    favourite_category=fav,
                )
            ]
    return []
