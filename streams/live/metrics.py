"""Prometheus metrics of the worker, built on an injected CollectorRegistry.

Every name carries its unit (`_seconds`, `_messages`, `_total` for counters).
Label values are bounded sets (topic names, partition numbers, outcomes,
kinds, decisions, DLQ reasons, holdout groups, silence stages and causes):
never a customer id, an event id or any other per-customer value.
`docs/operations.md` is the reference table; `deploy/` queries these names
and a test proves every query returns series from a real worker.

Faust's own sensor metrics (`faust_*`) are registered on the same registry by
`faust_monitor`, so one `/metrics` page serves both.

Must never: read the clock or touch Kafka; the shell sets values.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily

from detectors.cause import NONE, SERVICE
from detectors.kinds import NAMES, SILENCE_STAGES

#: Label values created at start-up with value 0, so rates, ratios and alerts
#: have a series to work on before the first occurrence (a missing series is
#: not a zero in PromQL).
EVENT_OUTCOMES = ("accepted", "duplicate", "late", "invalid")
RETURN_GROUPS = ("treatment", "holdout")
#: InvalidEvent reason codes (schemas/decode.py, streams/live/runtime.py); a test
#: keeps this list in step with the code. An unlisted reason is still counted.
DLQ_REASONS = ("too_large", "malformed_json", "not_an_object", "unknown_type", "schema", "future_time",
               "ancient_time", "implausible_time", "unknown_channel", "empty", "key_mismatch", "event_id_conflict")
#: Trigger kinds (the registry, detectors/kinds.py) whose `emitted` series start at 0;
#: suppression reasons (holdout, opted_out, no_consent, same_incident, cooldown, contact_cap, episode_cap,
#: return_exclusion) appear on first use.
TRIGGER_KINDS = NAMES
#: Suspected causes of a silence (detectors/cause.py): every (stage, cause) starts at 0, emitted.
SILENCE_CAUSES = (SERVICE, NONE)

#: Prefix of Faust's sensor metrics on /metrics (Faust's default is the app id,
#: which differs per deployment; a fixed prefix keeps dashboards portable).
FAUST_PREFIX = "faust"

# Event-time lag spans sub-second (live) to days (a backlog or a late producer).
_LAG_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
# Per-event work is tens of microseconds; a sweep can be large after an outage.
_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
_SWEEP_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Histogram:
    """A label-less histogram for the per-event path: same exposition, a tenth of the cost.

    prometheus_client's Histogram takes a lock and walks its buckets in Python
    for each observation (~0.6 µs, ~1.2 µs with its `time()` context manager);
    three per event were ~4 µs of the worker's per-event path. Here an
    observation is one bisect and two additions. The worker updates and serves
    its metrics from one thread (the event loop), so no lock is needed.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self._bounds = [float(b) for b in buckets] + [float("inf")]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # `le` buckets: value <= bound
        self._sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, total = [], 0
        for bound, n in zip(self._bounds, self._counts, strict=True):
            total += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self._sum)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, buckets=[("+Inf", 0)], sum_value=0)


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
        self.silence_causes = Counter(
            "churn_silence_triggers_total", "Silence trigger decisions by stage, suspected cause (service: "
            "a failed, returned or late delivery or a bad courier rating before it; none) and decision "
            "(emitted, or the suppression reason).", ["stage", "cause", "decision"], registry=r,
        )
        self.returns = Counter(
            "churn_returns_total", "Customers who ordered again after a win-back trigger, by holdout group "
            "(treatment or holdout).", ["group"], registry=r,
        )
        self.dlq = Counter(
            "churn_dlq_messages_total", "Messages sent to the dead-letter topic by reason.",
            ["reason"], registry=r,
        )
        self.event_lag = Histogram(
            "churn_event_time_lag_seconds", "Wall-clock time minus event time (occurred_at) when an input "
            "event is processed.", buckets=_LAG_BUCKETS, registry=r,
        )
        self.detection_seconds = Histogram(
            "churn_detection_duration_seconds", "Time to decode, detect and route one input message.",
            buckets=_FAST_BUCKETS, registry=r,
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
        self.overdue = Gauge(
            "churn_deadlines_overdue", "Deadlines more than the grace period past the wall clock and not "
            "fired yet (silence that should have been detected).", registry=r,
        )
        self.overdue_age = Gauge(
            "churn_deadline_overdue_seconds", "Age of the oldest unfired deadline past the wall clock "
            "(0 when none is due).", registry=r,
        )
        self.sweep_seconds = Histogram(
            "churn_sweep_duration_seconds", "Time to fire the due deadlines of one clock tick.",
            buckets=_SWEEP_BUCKETS, registry=r,
        )
        self.offset_gaps = Counter(
            "churn_consumer_offset_gaps_total", "Jumps in the input offsets the consumer received, by topic. "
            "Faust commits the offsets skipped as if processed; 0 unless input topics are compacted or "
            "transactional.", ["topic"], registry=r,
        )
        self.consumer_lag = Gauge(
            "churn_consumer_lag_messages", "End offset minus committed offset of each input partition "
            "this worker actively owns.", ["topic", "partition"], registry=r,
        )
        self.ready = Gauge(
            "churn_worker_ready", "1 when /readyz reports ready (partitions assigned, state recovered, "
            "broker reachable), else 0.", registry=r,
        )
        self.info = Gauge(
            "churn_worker_info", "Always 1; labels say which build and detector configuration runs.",
            ["version", "config_version"], registry=r,
        )

    def initialise(self, input_topics: tuple[str, ...], version: str, config_version: str) -> None:
        """Create the zero series of every bounded label value known at start-up."""
        for topic in input_topics:
            for outcome in EVENT_OUTCOMES:
                self.events.labels(topic, outcome)
            self.offset_gaps.labels(topic)
        for group in RETURN_GROUPS:
            self.returns.labels(group)
        for reason in DLQ_REASONS:
            self.dlq.labels(reason)
        for kind in TRIGGER_KINDS:
            self.triggers.labels(kind, "emitted")
        for stage in SILENCE_STAGES:
            for cause in SILENCE_CAUSES:
                self.silence_causes.labels(stage, cause, "emitted")
        self.info.labels(version, config_version).set(1)

    def set_partition_gauge(self, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
        """Replace a labelled gauge's series with `values`: series of revoked partitions go away."""
        current = {tuple(s.labels.values()) for m in gauge.collect() for s in m.samples}
        for labels in current - set(values):
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)


def faust_monitor(registry: CollectorRegistry) -> Any:
    """Faust's Prometheus sensor, on our registry instead of the global one.

    `faust.sensors.prometheus.setup_prometheus_sensors` would also register its
    own /metrics page and default to the process-global registry; we need the
    sensor alone so our page serves both metric sets from one registry.

    Faust's own looks up its labelled series (`.labels()`) on every hook call,
    several per consumed message. This one keeps the same series and values,
    with the labelled children looked up once per topic-partition and topic.
    Input messages never reach a Faust stream (streams/live/faust_patches.py,
    drain_messages: the worker has no agents), so the stream hooks are Faust's
    own and never run; tests/unit/test_faust_patches.py pins that no agent
    exists.
    """
    from faust.sensors.monitor import Monitor
    from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

    class CachedPrometheusMonitor(PrometheusMonitor):
        def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
            super().__init__(metrics, **kwargs)
            self._tp_series: dict[Any, tuple[Any, Any]] = {}
            self._end_series: dict[Any, Any] = {}
            self._sent_series: dict[str, Any] = {}

        def _clear_partition_related_metrics(self) -> None:
            # The per-topic and per-partition series are removed from their metrics on each
            # rebalance: a cached child would go on counting off the page.
            super()._clear_partition_related_metrics()
            self._tp_series.clear()
            self._end_series.clear()
            self._sent_series.clear()

        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            Monitor.on_message_in(self, tp, offset, message)
            m = self._metrics
            m.messages_received.inc()
            m.active_messages.inc()
            series = self._tp_series.get(tp)
            if series is None:
                series = self._tp_series[tp] = (
                    m.messages_received_per_topics.labels(topic=tp.topic),
                    m.messages_received_per_topics_partition.labels(topic=tp.topic, partition=tp.partition))
            series[0].inc()
            series[1].set(offset)

        def track_tp_end_offset(self, tp: Any, offset: int) -> None:
            Monitor.track_tp_end_offset(self, tp, offset)
            child = self._end_series.get(tp)
            if child is None:
                child = self._end_series[tp] = self._metrics.topic_partition_end_offset.labels(
                    topic=tp.topic, partition=tp.partition)
            child.set(offset)

        def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
            child = self._sent_series.get(topic)
            if child is None:
                child = self._sent_series[topic] = self._metrics.topic_messages_sent.labels(topic=f"topic.{topic}")
            child.inc()
            return Monitor.on_send_initiated(self, producer, topic, message, keysize, valsize)

    return CachedPrometheusMonitor(metrics=FaustMetrics.create(registry, FAUST_PREFIX))
