"""A simulated win-back campaign with a known true effect: what `report` must recover.

Every customer is a grocery shopper who orders every 2-4 days for a while and
then stops. Seven days after the last order the detector's silence (at risk)
fires: the first touch, emitted to treatment customers and recorded as
suppressed for the holdout, whose members the detector picks by its own
stable hash. After that touch a customer comes back with probability
`p_treatment` or `p_holdout` by their group, at a uniform time within the
re-activation window, and then orders a few more times; the others never
order again. So the true uplift of the win-back is `p_treatment - p_holdout`,
and a report's interval should contain it in about 95 % of seeds.

`events()` is the event log, for a replay (the report's own or `replay`).
`triggers()` is the silence decision each customer's log leads to, as the
detector writes it (the fields the report reads), so a test can measure the
report's interval over many seeds without running the detector every time;
tests/unit/test_report.py checks the two paths agree.

Deterministic for a seed. Used by tests and the docs, never by the worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from detectors.config import DAY_MS, DetectorConfig
from detectors.envelope import iso_ms
from detectors.suppression import HOLDOUT, group_of
from schemas.decode import to_epoch_ms

#: Grocery's at-risk window: the detector's first win-back touch comes this long after the last order.
AT_RISK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class Customer:
    customer_id: str
    group: str
    last_order: int          # the last order before the silence
    returned_at: int | None  # the first order after the touch, or None


@dataclass(frozen=True)
class Campaign:
    customers: int = 1000
    p_treatment: float = 0.30
    p_holdout: float = 0.20
    holdout_share: float = 0.5
    seed: int = 1
    start: str = "2026-01-01T00:00:00Z"
    window_days: int = 30
    orders_before: tuple[int, int] = (4, 8)   # orders before the silence (at most 8: see end_ms)
    orders_after: tuple[int, int] = (1, 12)   # orders from the return on

    @property
    def uplift(self) -> float:
        """The true effect on the re-activation rate."""
        return self.p_treatment - self.p_holdout

    def config(self) -> DetectorConfig:
        """The detector configuration the campaign's groups follow (CHURN_DETECTOR_HOLDOUT_SHARE)."""
        return DetectorConfig(holdout_share=self.holdout_share)

    @property
    def end_ms(self) -> int:
        """A log end late enough that every customer's window and 90 days after any return are observed."""
        return to_epoch_ms(self.start) + (60 + 8 * 4 + 7 + self.window_days + 90 + 10) * DAY_MS

    def simulate(self) -> tuple[list[Customer], list[dict[str, Any]]]:
        rng = random.Random(self.seed)
        cfg = self.config()
        start = to_epoch_ms(self.start)
        people: list[Customer] = []
        events: list[dict[str, Any]] = []
        n = 0

        def order(cid: str, ts: int) -> None:
            nonlocal n
            n += 1
            events.append({"event_id": f"sim-{n:08d}", "type": "order", "customer_id": cid,
                           "occurred_at": iso_ms(ts), "order_id": f"sim-order-{n:08d}", "category": "grocery",
                           "amount": round(max(1.0, rng.gauss(40.0, 10.0)), 2), "currency": "EUR"})

        for i in range(self.customers):
            cid = f"sim-{self.seed}-{i:06d}"
            group = group_of(cfg, cid)
            events.append({"event_id": f"consent-{cid}", "type": "consent", "customer_id": cid,
                           "occurred_at": iso_ms(start), "channel": "all", "granted": True})
            ts = last = start + int(rng.uniform(0.1, 60) * DAY_MS)
            for _ in range(rng.randint(*self.orders_before)):
                order(cid, ts)
                last, ts = ts, ts + int(rng.uniform(2, 4) * DAY_MS)
            touch = last + AT_RISK_MS
            back = None
            if rng.random() < (self.p_holdout if group == HOLDOUT else self.p_treatment):
                # Strictly after the touch (an hour's margin) and within the window.
                back = touch + 3_600_000 + int(rng.uniform(0, self.window_days - 1) * DAY_MS)
                ts = back
                for _ in range(rng.randint(*self.orders_after)):
                    order(cid, ts)
                    ts += int(rng.uniform(2, 12) * DAY_MS)
            people.append(Customer(cid, group, last, back))
        events.sort(key=lambda e: (to_epoch_ms(e["occurred_at"]), e["event_id"]))
        return people, events

    def events(self) -> list[dict[str, Any]]:
        return self.simulate()[1]

    def triggers(self, people: list[Customer] | None = None) -> list[dict[str, Any]]:
        """Each customer's first win-back decision (silence at risk) as a trigger CloudEvent's fields."""
        out = []
        for c in people if people is not None else self.simulate()[0]:
            held = c.group == HOLDOUT
            out.append({"id": f"sim-trigger-{c.customer_id}", "data": {
                "customer_id": c.customer_id, "kind": "silence", "stage": "at_risk", "family": "win_back",
                "decision": "suppressed" if held else "emit", "suppression_reason": "holdout" if held else None,
                "group": c.group, "channels": ["email"], "favourite_category": "grocery",
                "event_time": iso_ms(c.last_order + AT_RISK_MS)}})
        return out
