"""Prometheus metrics of the worker, built on an injected CollectorRegistry.

Label values are bounded sets (topics, outcomes, kinds, reasons): never a
customer id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "churn_events_total", "Input messages by topic and outcome "
            "(accepted, duplicate, late, invalid).", ["topic", "outcome"], registry=r,
        )
        self.triggers = Counter(
            "churn_triggers_total", "Trigger decisions by kind and decision "
            "(emitted, or the suppression reason).", ["kind", "decision"], registry=r,
        )
        self.dlq = Counter(
            "churn_dlq_messages_total", "Messages sent to the dead-letter topic by reason.",
            ["reason"], registry=r,
        )
        self.watermark = Gauge(
            "churn_watermark_seconds", "Clock (epoch seconds) each owned partition was last advanced to.",
            ["partition"], registry=r,
        )
        self.customers = Gauge(
            "churn_customers_tracked", "Customers with state on this worker's active partitions.", registry=r,
        )
        self.deadlines = Gauge(
            "churn_deadlines_pending", "Deadlines pending in the index of this worker's partitions.", registry=r,
        )
        self.sweep_seconds = Histogram(
            "churn_sweep_duration_seconds", "Time to fire the due deadlines of one clock tick.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0), registry=r,
        )
