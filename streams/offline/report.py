"""`churn-signals report`: what the contacts really returned, against the holdout.

An offline tool beside replay and shadow. Input: the decisions of a trigger
log (from `replay --out`, the trigger and audit topics, or a replay the report
runs itself) and the orders of the event log. Everything is measured per
**customer**, at their **first touch** in each group of decisions (a kind,
a kind and category, a kind and chain step; the headline pools the win-back
family), so every customer is one independent trial:

    treatment    the customer was contacted: a decision `emit` (group treatment)
    holdout      a decision suppressed for `holdout` that had a channel to use
                 (holdout is the first suppression rule, so without this a
                 holdout customer with no consent would stand against contacted
                 customers who all had one)
    (neither)    treatment-group decisions suppressed for another reason
                 (no_consent, cooldown, ...) and holdout decisions without a
                 channel: counted, not compared
    re-activated an order after the first touch, within the window (30 d)

The outcome comes from the event log's orders, never from `customer_returned`
triggers, whose rules change with the detector. A first touch later than the
window's end minus the window cannot show its outcome yet: it is censored
(counted, left out of the rates), in both groups alike. The end is `--until`
or the last event of the log: the report never reads the clock.

After a return (the first order in the window): revenue of the orders from
the return up to 30/60/90 days later, and retention: whether the customer
ordered in the 30 days before day 30/60/90 after the return (the playbooks'
"still active 30/60/90 days after the return"); each only for customers whose
horizon lies before the end.

Must never: read the clock, or crash on a bad file (one line, exit 2).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from detectors.config import DAY_MS
from schemas import Event
from schemas.decode import to_epoch_ms
from schemas.errors import InvalidEvent
from streams.offline.stats import newcombe_difference

TREATMENT, HOLDOUT = "treatment", "holdout"
ARMS = (TREATMENT, HOLDOUT)
#: Days after the return at which revenue and retention are measured (the playbooks' 30/60/90).
HORIZONS = (30, 60, 90)
#: "Active" at a horizon: an order in this many days before it.
ACTIVE_DAYS = 30
#: The family the headline (summary line, main chart) pools: re-activation is what a win-back is for.
HEADLINE_FAMILY = "win_back"
NO_CATEGORY = "(none)"


@dataclass(frozen=True, slots=True)
class Touch:
    """A decision that counts as a touch of one group: when, of what, and in which arm."""

    customer: str
    time: int
    arm: str
    kind: str
    family: str
    category: str
    step: str | None


@dataclass
class Orders:
    """Each customer's orders from the event log, in time order; the first copy of an event_id counts."""

    by_customer: dict[str, list[tuple[int, float, str]]] = field(default_factory=dict)
    times: dict[str, list[int]] = field(default_factory=dict)     # the same orders' times, for bisect
    seen: set[str] = field(default_factory=set)
    last_event: int = 0      # the latest event time of any valid event read

    def add(self, ev: Event) -> None:
        self.last_event = max(self.last_event, ev.ts)
        if ev.type != "order" or ev.event_id in self.seen:
            return
        self.seen.add(ev.event_id)
        d = ev.data
        self.by_customer.setdefault(ev.customer_id, []).append(
            (ev.ts, float(d["amount"]), str(d.get("currency") or "")))

    def finish(self, until: int | None) -> None:
        for cid, rows in self.by_customer.items():
            rows.sort()
            if until is not None:
                del rows[bisect_right([o[0] for o in rows], until):]
            self.times[cid] = [o[0] for o in rows]
        if until is not None:
            self.last_event = min(self.last_event, until)


def record_orders(orders: Orders, items: Iterable[Any]) -> Iterator[Any]:
    """Pass a source's items through, keeping the valid events' orders (the replay reads the same items)."""
    for item in items:
        if item.__class__ is Event:
            orders.add(item)
        yield item


def chain_step(d: dict[str, Any]) -> str | None:
    """The win-back chain step of a decision: absent (None) until chains emit `winback_step` triggers."""
    step = d.get("step")
    if step is None and isinstance(d.get("evidence"), dict):
        step = d["evidence"].get("step")
    return None if step is None else str(step)


def classify(d: dict[str, Any]) -> str:
    """treatment, holdout, or why a decision is in neither arm."""
    if d.get("family") == "measurement":
        return "measurement"
    if d.get("decision") == "emit":
        return TREATMENT if d.get("group", TREATMENT) == TREATMENT else "emit_outside_treatment"
    reason = d.get("suppression_reason")
    if reason == "holdout":
        # Logs written before channels existed have no field: every holdout decision counts.
        return HOLDOUT if d.get("channels", True) else "holdout_without_channel"
    return f"suppressed_{reason}"


@dataclass
class Touches:
    touches: list[Touch] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)   # decisions in neither arm, by why

    def add(self, ce: dict[str, Any], from_ms: int | None = None) -> None:
        """Count one trigger CloudEvent; touches before `from_ms` are left out. ValueError: not a trigger."""
        d = ce["data"]
        missing = [f for f in ("customer_id", "kind", "event_time") if not isinstance(d.get(f), str)]
        if missing:
            raise ValueError(f"trigger {ce.get('id')}: no {', '.join(missing)} in its data")
        try:
            time = to_epoch_ms(d["event_time"])
        except (InvalidEvent, ValueError):
            raise ValueError(f"trigger {ce.get('id')}: event_time {d['event_time']!r} is no RFC 3339 time") from None
        if from_ms is not None and time < from_ms:
            return
        arm = classify(d)
        if arm not in ARMS:
            if arm != "measurement":
                self.excluded[arm] += 1
            return
        self.touches.append(Touch(d["customer_id"], time, arm, d["kind"], str(d.get("family", "")),
                                  str(d.get("favourite_category") or NO_CATEGORY), chain_step(d)))


# -- outcomes ---------------------------------------------------------------------

@dataclass
class Arm:
    """One arm of one group: customers at their first touch, and what they did after it."""

    customers: int = 0          # first touches with the whole window observed
    censored: int = 0           # first touches too recent to tell
    returned: int = 0
    days_to_return: list[float] = field(default_factory=list)
    revenue: dict[int, dict[str, float]] = field(default_factory=dict)   # horizon -> currency -> total
    revenue_customers: dict[int, int] = field(default_factory=dict)     # returned customers observed to it
    retained: dict[int, int] = field(default_factory=dict)
    retention_customers: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.returned / self.customers if self.customers else None

    def curve(self, days: int) -> list[float]:
        """Cumulative share re-activated by each whole day 0..days after the first touch."""
        if not self.customers:
            return []
        ordered = sorted(self.days_to_return)
        return [bisect_right(ordered, float(k)) / self.customers for k in range(days + 1)]


@dataclass
class Group:
    key: dict[str, str | None]
    arms: dict[str, Arm] = field(default_factory=lambda: {a: Arm() for a in ARMS})

    def uplift(self) -> tuple[float, float, float] | None:
        t, h = self.arms[TREATMENT], self.arms[HOLDOUT]
        if not t.customers or not h.customers:
            return None
        diff, lo, hi = newcombe_difference(t.returned, t.customers, h.returned, h.customers)
        return diff, lo, hi


def outcome(arm: Arm, orders: list[tuple[int, float, str]], times: list[int], t0: int, window_ms: int,
            end: int) -> None:
    """Add one customer's first touch at t0 to `arm` (`times`: the times of `orders`)."""
    if t0 + window_ms > end:
        arm.censored += 1
        return
    arm.customers += 1
    i = bisect_right(times, t0)
    if i == len(times) or times[i] > t0 + window_ms:
        return
    back = times[i]
    arm.returned += 1
    arm.days_to_return.append((back - t0) / DAY_MS)
    for h in HORIZONS:
        stop = back + h * DAY_MS
        if stop > end:
            continue
        arm.revenue_customers[h] = arm.revenue_customers.get(h, 0) + 1
        totals = arm.revenue.setdefault(h, {})
        for _, amount, currency in orders[i:bisect_right(times, stop)]:
            totals[currency] = totals.get(currency, 0.0) + amount
        arm.retention_customers[h] = arm.retention_customers.get(h, 0) + 1
        since = max(back, stop - ACTIVE_DAYS * DAY_MS)
        if bisect_right(times, stop) > bisect_right(times, since):  # an order in (since, stop]
            arm.retained[h] = arm.retained.get(h, 0) + 1


DIMENSIONS = (("kind",), ("kind", "category"), ("kind", "step"))


def _key(t: Touch, dims: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(getattr(t, d) for d in dims)


def groups(touches: list[Touch], orders: Orders, window_ms: int, end: int) -> tuple[Group, list[Group]]:
    """The headline (the win-back family pooled) and one group per kind, kind x category, kind x step."""
    first: dict[tuple[Any, ...], dict[str, Touch]] = {}

    def keep(key: tuple[Any, ...], t: Touch) -> None:
        seen = first.setdefault(key, {})
        old = seen.get(t.customer)
        if old is None or (t.time, t.arm) < (old.time, old.arm):
            seen[t.customer] = t

    has_steps = any(t.step is not None for t in touches)
    for t in touches:
        if t.family == HEADLINE_FAMILY:
            keep(("headline",), t)
        for dims in DIMENSIONS:
            if dims[-1] == "step" and not has_steps:
                continue  # chain step: a dimension only once chains exist
            keep((dims, *_key(t, dims)), t)

    def build(key: tuple[Any, ...], labels: dict[str, str | None]) -> Group:
        g = Group(labels)
        for cid, t in sorted(first.get(key, {}).items()):
            outcome(g.arms[t.arm], orders.by_customer.get(cid, []), orders.times.get(cid, []), t.time, window_ms,
                    end)
        return g

    headline = build(("headline",), {"family": HEADLINE_FAMILY})
    rest = [build(key, dict(zip(key[0], key[1:], strict=True)))
            for key in sorted((k for k in first if k[0] != "headline"),
                               key=lambda k: (DIMENSIONS.index(k[0]), *(str(v) for v in k[1:])))]
    return headline, rest


# -- the machine-readable report --------------------------------------------------

def _share(k: int, n: int) -> float | None:
    return round(k / n, 6) if n else None


def arm_json(arm: Arm, window_days: int) -> dict[str, Any]:
    return {
        "customers": arm.customers, "censored": arm.censored, "returned": arm.returned,
        "rate": _share(arm.returned, arm.customers),
        "revenue": {str(h): {"customers": n, "total": {c: round(v, 2) for c, v in sorted(arm.revenue[h].items())},
                             "mean": {c: round(v / n, 2) for c, v in sorted(arm.revenue[h].items())}}
                    for h in HORIZONS if (n := arm.revenue_customers.get(h, 0))},
        "retention": {str(h): {"customers": n, "retained": arm.retained.get(h, 0),
                               "rate": _share(arm.retained.get(h, 0), n)}
                      for h in HORIZONS if (n := arm.retention_customers.get(h, 0))},
        "curve": [round(v, 6) for v in arm.curve(window_days)],
    }


def group_json(g: Group, window_days: int) -> dict[str, Any]:
    u = g.uplift()
    n = g.arms[TREATMENT].customers
    return {
        **g.key,
        **{a: arm_json(g.arms[a], window_days) for a in ARMS},
        "uplift": None if u is None else {"difference": round(u[0], 6), "low": round(u[1], 6),
                                          "high": round(u[2], 6)},
        "incremental_returns": None if u is None else {"estimate": round(n * u[0], 2), "low": round(n * u[1], 2),
                                                       "high": round(n * u[2], 2)},
    }


DEFINITIONS = {
    "unit": "a customer, at their first touch in each group (kind; kind and category; kind and chain step; "
            "the headline pools the win_back family)",
    "treatment": "contacted: a decision emitted to a customer of the treatment group",
    "holdout": "a decision suppressed for holdout that had a channel to use (it would have been sent)",
    "neither": "treatment-group decisions suppressed for another reason, holdout decisions without a channel, "
               "measurement events (never a contact)",
    "re-activated": "an order after the first touch, at most the window later (orders from the event log)",
    "censored": "a first touch less than the window before the end of the log: outcome not yet known, left out",
    "incremental returns": "contacted customers x (treatment rate - holdout rate), with the interval's bounds",
    "revenue": "orders of returned customers from the return to 30/60/90 days after it",
    "retention": f"returned customers with an order in the {ACTIVE_DAYS} days before day 30/60/90 after the "
                 "return",
    "chain step": "the decision's `step` (top level or in evidence); absent until win-back chains exist",
}


def build_report(touches: Touches, orders: Orders, window_ms: int, end: int, source: str,
                 trigger_log: str | None) -> dict[str, Any]:
    """The whole report as plain data (report.json); streams/offline/report_out.py renders it."""
    from detectors.envelope import iso_ms
    from streams.offline.stats import CONFIDENCE

    window_days = -(-window_ms // DAY_MS)
    headline, rest = groups(touches.touches, orders, window_ms, end)
    return {
        "report_version": 1,
        "source": source,
        "trigger_log": trigger_log,
        "end": iso_ms(end),
        "window_days": window_days,
        "horizons_days": list(HORIZONS),
        "confidence": CONFIDENCE,
        "interval": "newcombe_hybrid_score",
        "definitions": DEFINITIONS,
        "headline": group_json(headline, window_days),
        "groups": [group_json(g, window_days) for g in rest],
        "excluded_decisions": dict(sorted(touches.excluded.items())),
    }
