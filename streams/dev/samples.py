"""Realistic sample events: customer histories ending at a given time, and live traffic.

Used by `demo`, the tests and the benchmarks. Deterministic for a seed. Profiles
follow the categories of the silence windows: weekly grocery shoppers, monthly
fashion buyers, occasional home buyers; some drift away, some are about to cross
their at-risk window within the next minutes (so the demo shows silence firing
live), deliveries are sometimes late or failed and then often rated badly.
Most customers granted marketing consent before the history begins (win-backs
need a grant), on the playbooks' channel mix; every tenth granted nothing, so
the audit topic shows `no_consent` next to the win-backs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from detectors.config import DAY_MS
from detectors.envelope import iso_ms

#: Marketing consent of customer i: GRANTS[i % len(GRANTS)] (channels granted, none: never asked).
GRANTS: tuple[tuple[str, ...], ...] = (
    ("all",), ("email", "viber"), ("email", "sms", "push"), ("all",), ("viber",),
    ("email", "messenger"), ("all",), ("email", "sms"), ("push", "viber"), (),
)

PROFILES = (
    # category, mean gap days, share of customers, basket mean
    ("grocery", 6.0, 0.5, 45.0),
    ("fashion", 24.0, 0.3, 80.0),
    ("home", 45.0, 0.2, 150.0),
)


class SampleGenerator:
    def __init__(self, seed: int = 7, customers: int = 60) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"cust-{i:05d}" for i in range(customers)]
        self.profile: dict[str, tuple[str, float, float]] = {}
        self._n = 0
        for cid in self.customers:
            r, acc = self.rng.random(), 0.0
            for cat, gap, share, basket in PROFILES:
                acc += share
                if r <= acc:
                    self.profile[cid] = (cat, gap, basket)
                    break
            else:
                self.profile[cid] = PROFILES[0][0], PROFILES[0][1], PROFILES[0][3]

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:08d}"

    def order(self, cid: str, ts: int, category: str | None = None) -> list[dict[str, Any]]:
        """An order and, usually, its delivery and a rating."""
        rng = self.rng
        cat, _, basket = self.profile[cid]
        if category is None:
            category = cat if rng.random() < 0.85 else rng.choice(["grocery", "fashion", "home", "toys"])
        order_id = self._id("ord")
        events: list[dict[str, Any]] = [{
            "event_id": self._id("evt"), "type": "order", "customer_id": cid,
            "occurred_at": iso_ms(ts), "order_id": order_id, "category": category,
            "amount": round(max(1.0, rng.gauss(basket, basket * 0.3)), 2), "currency": "EUR",
        }]
        promised = ts + 2 * 3_600_000
        roll = rng.random()
        if roll < 0.04:
            events.append({"event_id": self._id("evt"), "type": "delivery", "customer_id": cid,
                           "occurred_at": iso_ms(promised), "order_id": order_id, "status": "failed"})
            bad = True
        else:
            late = roll < 0.12
            delivered = promised + (rng.randint(45, 180) if late else -rng.randint(0, 60)) * 60_000
            events.append({"event_id": self._id("evt"), "type": "delivery", "customer_id": cid,
                           "occurred_at": iso_ms(delivered), "order_id": order_id, "status": "delivered",
                           "promised_at": iso_ms(promised), "delivered_at": iso_ms(delivered)})
            bad = late
        if rng.random() < 0.4:
            rating = rng.choice([1, 2, 2, 3]) if bad else rng.choice([3, 4, 5, 5, 5])
            events.append({"event_id": self._id("evt"), "type": "courier_rating", "customer_id": cid,
                           "occurred_at": iso_ms(promised + 3 * 3_600_000), "order_id": order_id,
                           "rating": rating, "courier_id": f"courier-{rng.randint(1, 40):03d}"})
        return events

    def history(self, end_ms: int, days: int = 120) -> list[dict[str, Any]]:
        """Histories of every customer up to `end_ms`, sorted by event time."""
        rng = self.rng
        events: list[dict[str, Any]] = []
        signed_up = iso_ms(end_ms - days * DAY_MS)
        for i, cid in enumerate(self.customers):
            cat, gap, _ = self.profile[cid]
            # Ids of their own and no draw from `rng`: the rest of the history is what it was before.
            events.extend({"event_id": f"consent-{cid}-{channel}", "type": "consent", "customer_id": cid,
                           "occurred_at": signed_up, "channel": channel, "granted": True}
                          for channel in GRANTS[i % len(GRANTS)])
            # Where this customer stands at end_ms: most are active, some drifted
            # away, and every tenth is about to cross the at-risk window live.
            fate = rng.random()
            if i % 10 == 3 and cat == "grocery":
                last = end_ms - 7 * DAY_MS + rng.randint(15, 60) * 1000
            elif fate < 0.25:
                last = end_ms - int(rng.uniform(2.0, 5.0) * gap * DAY_MS)
            else:
                last = end_ms - int(rng.uniform(0.1, 0.8) * gap * DAY_MS)
            ts = last
            times = []
            while ts > end_ms - days * DAY_MS:
                times.append(ts)
                ts -= int(max(0.5, rng.gauss(gap, gap * 0.25)) * DAY_MS)
            for t in reversed(times):
                events.extend(e for e in self.order(cid, t) if self._ts(e) <= end_ms)
            if i % 17 == 5:
                events.append({"event_id": self._id("evt"), "type": "consent", "customer_id": cid,
                               "occurred_at": iso_ms(end_ms - 3 * DAY_MS), "channel": "email", "granted": False})
        events.sort(key=lambda e: (self._ts(e), e["event_id"]))
        return events

    def live(self, now_ms: int) -> Iterator[dict[str, Any]]:
        """A burst of live events at `now_ms`: an order (with its delivery) or a rating."""
        cid = self.rng.choice(self.customers)
        evs = self.order(cid, now_ms)
        for e in evs:  # live: everything happens now
            e["occurred_at"] = iso_ms(now_ms)
            if e["type"] == "delivery" and "delivered_at" in e:
                e["promised_at"] = iso_ms(now_ms - 2 * 3_600_000)
                late = self.rng.random() < 0.15
                e["delivered_at"] = iso_ms(now_ms - (2 * 3_600_000 - 90 * 60_000 if late else 2 * 3_600_000 + 600_000))
        yield from evs

    @staticmethod
    def _ts(e: dict[str, Any]) -> int:
        from schemas.decode import to_epoch_ms

        return to_epoch_ms(e["occurred_at"])
