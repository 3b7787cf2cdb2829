"""Runtime settings of the shell, from a TOML file, the environment and flags.

Precedence: flag > environment > file > default. Every problem is a
ConfigError with a one-line message naming the setting and how to fix it.

    KAFKA_BOOTSTRAP_SERVERS   host:port[,host:port]; unset -> no broker chosen (worker: --embedded-broker)
    KAFKA_<CONNECTION>        security protocol, SASL, TLS: streams/connection.py ([kafka] in the file)
    CHURN_CONFIG              path of a TOML file with [kafka], [worker] and [detector] tables
    CHURN_<WORKER SETTING>    e.g. CHURN_PARTITIONS=8, CHURN_TOPIC_ORDERS=orders-v2
    CHURN_DETECTOR_<NAME>     e.g. CHURN_DETECTOR_SILENCE_WINDOWS="grocery=5d/10d"
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from detectors.config import DetectorConfig, parse_duration
from schemas import EventDecoder
from schemas.decode import MAX_DELIVERY_OFFSET_MS
from schemas.errors import ConfigError
from streams.connection import NAMES as KAFKA_NAMES
from streams.connection import KafkaConnection, env_name, load_connection, parse_bool


@dataclass(frozen=True)
class Topics:
    orders: str = "orders"
    deliveries: str = "deliveries"
    courier_ratings: str = "courier-ratings"
    consent: str = "customer-consent"
    triggers: str = "churn-triggers"
    audit: str = "churn-trigger-audit"
    dlq: str = "churn-dlq"
    clock: str = "churn-clock"

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.orders, self.deliveries, self.courier_ratings, self.consent)

    def for_event_type(self, type_: str) -> str:
        return {
            "order": self.orders,
            "delivery": self.deliveries,
            "courier_rating": self.courier_ratings,
            "consent": self.consent,
        }.get(type_, self.orders)

    def with_prefix(self, prefix: str) -> Topics:
        return Topics(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Settings:
    kafka: KafkaConnection = field(default_factory=KafkaConnection)  # every Kafka client connects with it
    app_id: str = "churn-signals"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    tick_interval_s: float = 1.0          # how often the live clock ticks each partition
    # A partition with at most this many unread input messages uses wall-clock time. 0: any
    # unread message could be an order that cancels a silence, and the clock topic's ticks can
    # be consumed before it (after a rebalance they were: false silence triggers).
    caught_up_lag: int = 0
    # How long an event may take from its occurred_at to the broker: a caught-up partition's
    # clock runs this far behind its last fetch, so such an event is read before silence is
    # decided for its customer (streams/live/clock.py). Slower events are late (docs/reliability.md).
    producer_delay_ms: int = 2000
    max_future_skew_ms: int = 5 * 60_000  # events further in the future go to the DLQ
    # a delivery's promised_at / delivered_at further than this from its occurred_at: DLQ
    max_delivery_offset_ms: int = MAX_DELIVERY_OFFSET_MS
    # Event-time merge of the input topics per partition (streams/live/merge.py): how long the
    # oldest held message may wait for a topic that still has unread messages (0: never
    # wait), and how many messages may be held per worker before they go out regardless.
    merge_wait_ms: int = 2000
    merge_max_held: int = 50_000
    standby_replicas: int = 1
    # Topics (streams/topics.py): replicas of every topic we or Faust create (1 suits the embedded
    # broker and a one-node Kafka; production clusters: 3), the topic-level min.insync.replicas
    # (None: the cluster's default; production: 2, so acks=all survives one broker down and
    # refuses writes that only one copy holds), and whether to create missing topics at all
    # (false: an ACL-restricted cluster whose owner creates them from `churn-signals topics`).
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    create_topics: bool = True
    log_level: str = "info"
    log_format: str = "text"              # text | json
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def event_decoder(self, detector: DetectorConfig | None = None) -> EventDecoder:
        """The decoder with this deployment's plausibility bounds (the worker's and replay's alike)
        and the contact channels of `detector` (default: this deployment's)."""
        return EventDecoder(max_future_skew_ms=self.max_future_skew_ms,
                            max_delivery_offset_ms=self.max_delivery_offset_ms,
                            channels=(detector or self.detector).channels)

    @property
    def bootstrap(self) -> str | None:
        """host:port[,host:port]; None when no broker was chosen."""
        return self.kafka.bootstrap

    def with_bootstrap(self, bootstrap: str) -> Settings:
        return replace(self, kafka=self.kafka.with_bootstrap(bootstrap))

    @property
    def broker_url(self) -> str:
        if not self.bootstrap:
            raise ConfigError("no broker: set KAFKA_BOOTSTRAP_SERVERS or use the embedded broker")
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap.split(",") if h.strip())


_WORKER_KEYS = {
    "app_id": str, "partitions": int, "web_host": str, "web_port": int,
    "tick_interval": float, "caught_up_lag": int, "producer_delay": "duration", "max_future_skew": "duration",
    "max_delivery_offset": "duration",
    "merge_wait": "duration", "merge_max_held": int,
    "standby_replicas": int, "replication_factor": int, "min_insync_replicas": int, "create_topics": "bool",
    "log_level": str, "log_format": str, "topic_prefix": str,
}
_TOPIC_KEYS = {f"topic_{f.name}": f.name for f in fields(Topics)}


def load_settings(env: dict[str, str] | None = None, overrides: dict[str, Any] | None = None,
                  kafka: dict[str, Any] | None = None) -> Settings:
    """Build Settings from CHURN_CONFIG file, environment and explicit overrides (`kafka`: connection flags)."""
    env = dict(os.environ if env is None else env)
    worker: dict[str, Any] = {}
    detector: dict[str, Any] = {}
    file_kafka: dict[str, Any] = {}
    path = env.get("CHURN_CONFIG")
    if path:
        file_kafka, file_worker, file_detector = _read_file(Path(path))
        worker.update(file_worker)
        detector.update(file_detector)
    for key, value in env.items():
        if key.startswith("CHURN_DETECTOR_"):
            detector[key[len("CHURN_DETECTOR_"):].lower()] = value
        elif key.startswith("CHURN_") and key != "CHURN_CONFIG":
            name = key[len("CHURN_"):].lower()
            if name in _WORKER_KEYS or name in _TOPIC_KEYS:
                worker[name] = value
    for key, value in (overrides or {}).items():
        if value is not None:
            worker[key] = value
    settings = Settings(kafka=load_connection(file_kafka, env, {k: v for k, v in (kafka or {}).items()
                                                                 if v is not None}))
    topics = Topics()
    prefix = worker.pop("topic_prefix", "")
    if prefix:
        topics = topics.with_prefix(str(prefix))
    topic_names = {
        _TOPIC_KEYS[k]: str(worker.pop(k)) for k in list(worker) if k in _TOPIC_KEYS
    }
    if topic_names:
        topics = replace(topics, **topic_names)
    # `params` names a fitted parameter file (churn-signals fit); the core takes values, not paths
    params_path = detector.pop("params", None)
    detector_cfg = DetectorConfig.from_mapping(detector)
    if params_path:
        from streams.params import load_params

        detector_cfg = detector_cfg.with_params(load_params(str(params_path)))
    values: dict[str, Any] = {"topics": topics, "detector": detector_cfg}
    for key, raw in worker.items():
        kind = _WORKER_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"unknown worker setting {key!r}; known: {', '.join(sorted(_WORKER_KEYS))}")
        if kind == "duration":
            zero_ok = key in ("merge_wait", "producer_delay")
            if zero_ok and str(raw).strip() in ("0", "0.0"):
                values[f"{key}_ms"] = 0  # "never wait", "no allowance": no unit needed
            else:
                values[f"{key}_ms"] = parse_duration(raw, key, allow_zero=zero_ok)
        elif kind == "bool":
            values[key] = parse_bool(raw, key)
        elif key == "tick_interval":
            values["tick_interval_s"] = _convert(raw, key, float)
        else:
            values[key] = _convert(raw, key, kind)
    settings = replace(settings, **values)
    _check(settings)
    return settings


def _convert(raw: Any, key: str, kind: Any) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {raw!r}") from None


def _check(s: Settings) -> None:
    if not 1 <= s.partitions <= 1024:
        raise ConfigError(f"partitions: expected 1..1024, got {s.partitions}")
    if not 0 <= s.web_port <= 65535:
        raise ConfigError(f"web_port: expected 0..65535, got {s.web_port}")
    if not 1 <= s.replication_factor <= 32767:
        raise ConfigError(f"replication_factor: expected 1..32767, got {s.replication_factor}")
    if s.min_insync_replicas is not None and not 1 <= s.min_insync_replicas <= s.replication_factor:
        raise ConfigError(f"min_insync_replicas: expected 1..{s.replication_factor} (the replication factor: "
                          f"more in-sync replicas than copies would refuse every write), got {s.min_insync_replicas}")
    if s.tick_interval_s <= 0:
        raise ConfigError("tick_interval: must be positive (seconds)")
    if s.merge_wait_ms < 0 or s.merge_max_held < 0:
        raise ConfigError("merge_wait and merge_max_held: must not be negative")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"log_format: expected text or json, got {s.log_format!r}")
    names = [getattr(s.topics, f.name) for f in fields(Topics)]
    if len(set(names)) != len(names):
        raise ConfigError(f"topic names must be distinct, got {names}")


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found (CHURN_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"kafka", "worker", "detector"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown table(s) {sorted(unknown)}; "
                          "expected [kafka], [worker] and [detector]")
    return dict(data.get("kafka", {})), dict(data.get("worker", {})), dict(data.get("detector", {}))


#: CHURN_* variables that are not settings: the config file, and the tests' Kafka jar cache
_OTHER_CHURN = ("CHURN_CONFIG", "CHURN_KAFKA_CACHE")
#: the KAFKA_* prefixes this project reads; other KAFKA_* variables belong to other software
#: (Kubernetes service links such as KAFKA_PORT, a broker image's KAFKA_LISTENERS)
_KAFKA_PREFIXES = ("KAFKA_BOOTSTRAP", "KAFKA_SECURITY", "KAFKA_SASL", "KAFKA_SSL")


def unknown_variables(env: dict[str, str] | None = None) -> list[str]:
    """One line per CHURN_* (or connection KAFKA_*) variable that no setting reads: typos, mostly.

    Reported rather than refused: the environment of a deployment is shared by the
    versions of a rolling upgrade, and a setting a newer version added must not stop an
    older worker. CHURN_DETECTOR_* typos are refused by the detector config already.
    """
    env = dict(os.environ if env is None else env)
    churn = [*_OTHER_CHURN, *(f"CHURN_{k.upper()}" for k in (*_WORKER_KEYS, *_TOPIC_KEYS))]
    kafka = [env_name(n) for n in KAFKA_NAMES]
    lines = []
    for name in sorted(env):
        if name.startswith("CHURN_DETECTOR_"):
            continue
        if name.startswith("CHURN_"):
            known = churn
        elif name.startswith(_KAFKA_PREFIXES):
            known = kafka
        else:
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            lines.append(f"unknown setting {name} ignored" + (f"; did you mean {close[0]}?" if close else ""))
    return lines
