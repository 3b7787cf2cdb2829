"""Negative courier rating: a rating at or below the threshold asks for service recovery now.

Playbook: "negative courier ratings" are an early churn signal; the customer
gets an apology and a service promise, not a coupon.

Must never: read the clock.
"""

from __future__ import annotations

from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.state import CustomerState
from schemas import Event


def on_rating(cfg: DetectorConfig, st: CustomerState, ev: Event) -> list[Decision]:
    rating = int(ev.data["rating"])
    if rating > cfg.negative_rating_max:
        return []
    return [
        Decision(
            customer_id=ev.customer_id,
            kind="negative_rating",
            stage="now",
            severity="high" if rating == 1 else "medium",
            family="service_recovery",
            time_ms=ev.ts,
            episode=str(ev.data["order_id"]),
            reason_codes=(f"courier_rating_{rating}",),
            evidence={"rating": rating, "threshold": cfg.negative_rating_max, "order_id": ev.data["order_id"]},
            caused_by=ev.event_id,
            favourite_category=st.favourite_category(),
        )
    ]
