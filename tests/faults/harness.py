"""The smoke-test kit of the fault tests: a traffic generator, an independent verifier, readers.

Modelled on Kafka Streams' smoke test: a generator produces live traffic (event
time = the wall clock when the event is made) while the test stops, kills or
pauses processes; afterwards the verifier replays the generated log through
`streams.offline.replay` (the pure core, no broker, no Faust) and compares:

- triggers: the live trigger topic, deduplicated by CloudEvents id, must equal
  what replay emits. The live clock keeps moving, so the comparison brackets
  it: expected(until = lowest live watermark read before the topic)
  ⊆ live ⊆ expected(until = highest watermark read after);
- state: each customer's final state in the changelog (the last record per key)
  must hold exactly the orders and events replay applied: an event applied
  twice or lost shows up in the order count, the amounts or the seen ring.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from detectors import DetectorConfig
from detectors.envelope import iso_ms
from streams.live.state_store import decode_stored
from streams.offline.replay import replay
from streams.settings import Topics

#: Short windows so "a day" of silence takes seconds. Every customer who keeps
#: ordering does so at most ~1 s apart, far inside at_risk minus the allowed
#: lateness, so only real silence can fire.
#: Nobody here sends consent: win-backs go out unless opted out (marketing_consent_required off),
#: so silence reaches the trigger topic, where the faults are looked for.
SHORT_WINDOWS = {
    "CHURN_DETECTOR_SILENCE_WINDOWS": "grocery=6s/10s,fashion=6s/10s,home=6s/10s,other=6s/10s",
    "CHURN_DETECTOR_SILENCE_LOST": "14s",
    "CHURN_DETECTOR_ALLOWED_LATENESS": "2s",
    "CHURN_DETECTOR_MARKETING_CONSENT_REQUIRED": "false",
}
LOST_MS = 14_000
LATENESS_MS = 2_000
CATEGORIES = ("grocery", "fashion", "home", "other")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def detector_config(env: dict[str, str]) -> DetectorConfig:
    prefix = "CHURN_DETECTOR_"
    return DetectorConfig.from_mapping({k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)})


@dataclass
class Customer:
    cid: str
    every: int          # orders every `every` rounds while active
    stop_round: int     # silent from this round on (orders never resume)
    resume_round: int = -1  # orders again from this round (-1: never)
    heavy: bool = False     # many ratings per round: more events than the core's seen ring between commits


@dataclass
class Traffic:
    """Live traffic in a background thread until stop(); every event is kept for the verifier."""

    bootstrap: str
    topics: Topics
    customers: list[Customer]
    round_s: float = 0.25
    seed: int = 7
    events: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="traffic", daemon=True)
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._lock = threading.Lock()

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 90.0) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "traffic generator did not stop"
        if self.error is not None:
            raise AssertionError(f"traffic generator failed: {self.error!r}") from self.error
        return self.events

    def wait_rounds(self, n: int, timeout: float = 120.0) -> None:
        target = self.rounds + n
        deadline = time.monotonic() + timeout
        while self.rounds < target:
            assert time.monotonic() < deadline, f"traffic made {self.rounds} of {target} rounds"
            assert self.error is None, f"traffic generator failed: {self.error!r}"
            time.sleep(0.05)

    @property
    def produced(self) -> int:
        with self._lock:
            return len(self.events)

    # -- generation -------------------------------------------------------------
    def _event(self, c: Customer, kind: str, ts: int) -> dict[str, Any]:
        self._seq += 1
        eid = f"{c.cid}-{self._seq}"
        base = {"event_id": eid, "customer_id": c.cid, "occurred_at": iso_ms(ts)}
        rng = self._rng
        if kind == "order":
            category = CATEGORIES[zlib.crc32(c.cid.encode()) % 4]
            return {**base, "type": "order", "order_id": f"o-{eid}", "category": category,
                    "amount": round(rng.uniform(5, 80), 2)}
        if kind == "rating":
            return {**base, "type": "courier_rating", "order_id": f"o-{eid}", "rating": rng.choice((1, 2, 4, 5, 5))}
        return {**base, "type": "delivery", "order_id": f"o-{eid}",
                "status": rng.choice(("delivered", "delivered", "failed"))}

    def _round(self, r: int) -> list[dict[str, Any]]:
        ts = now_ms()
        out = []
        for c in self.customers:
            active = r < c.stop_round or (c.resume_round >= 0 and r >= c.resume_round)
            if active and (r + zlib.crc32(c.cid.encode())) % c.every == 0:
                out.append(self._event(c, "order", ts))
                if self._rng.random() < 0.25:
                    out.append(self._event(c, "rating", ts))
                if self._rng.random() < 0.15:
                    out.append(self._event(c, "delivery", ts))
            if c.heavy and active:
                out.extend(self._event(c, "rating", ts) for _ in range(3))
        return out

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=120_000,
                                    linger_ms=5)
        await producer.start()
        try:
            r = 0
            while not self._stop.is_set():
                started = time.monotonic()
                batch = self._round(r)
                futs = [await producer.send(self.topics.for_event_type(e["type"]), orjson.dumps(e),
                                            key=e["customer_id"].encode()) for e in batch]
                await asyncio.gather(*futs)  # acknowledged before it counts as produced
                with self._lock:
                    self.events.extend(batch)
                r += 1
                self.rounds = r
                await asyncio.sleep(max(0.0, self.round_s - (time.monotonic() - started)))
        finally:
            await producer.stop()


def customers(n: int, rounds: int, seed: int = 3, heavy: int = 2) -> list[Customer]:
    """n customers who stop at spread-out rounds (silence to detect), plus `heavy` busy ones."""
    rng = random.Random(seed)
    out = [Customer(f"c{i:03d}", every=rng.choice((2, 3, 4)), stop_round=rng.randrange(4, rounds))
           for i in range(n)]
    out += [Customer(f"h{i}", every=2, stop_round=rounds, heavy=True) for i in range(heavy)]
    return out


# -- reading the broker -------------------------------------------------------------
async def _read_all(bootstrap: str, topic: str, idle_s: float = 1.5, timeout: float = 60.0) -> list[Any]:
    """Every message of a topic, read from the start until it has been idle at its end for idle_s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            # Kafka names only topics a client asked about in its metadata: ask for all of them
            parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.2)
        if not parts:
            return out
        from aiokafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
            if batch:
                quiet_since = time.monotonic()
            at_end = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            if at_end and time.monotonic() - quiet_since >= idle_s:
                break
            if at_end:
                ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return out


def read_all(bootstrap: str, topic: str, idle_s: float = 1.0) -> list[Any]:
    return asyncio.run(_read_all(bootstrap, topic, idle_s))


def triggers(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every CloudEvent written to the topic, copies included."""
    return [orjson.loads(m.value) for m in read_all(bootstrap, topic)]


def trigger_ids(bootstrap: str, topic: str) -> Counter[str]:
    """How many times each CloudEvents id was written to the topic."""
    return Counter(ce["id"] for ce in triggers(bootstrap, topic))


def final_states(bootstrap: str, app_id: str) -> dict[str, Any]:
    """The last changelog record of each customer: what a recovering worker would load."""
    out: dict[str, Any] = {}
    for m in read_all(bootstrap, f"{app_id}-customers-changelog"):
        if m.value is not None:
            out[m.key.decode()] = decode_stored(m.value).state
    return out


def watermarks(workers: list[Any]) -> dict[str, float]:
    """churn_watermark_seconds by partition across running workers (ms)."""
    out: dict[str, float] = {}
    for w in workers:
        if w.proc.poll() is not None:
            continue
        _, body = w.get("/metrics")
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                if s.name == "churn_watermark_seconds":
                    out[s.labels["partition"]] = max(out.get(s.labels["partition"], 0), s.value * 1000)
    return out


# -- the verifier ---------------------------------------------------------------------
def write_log(events: list[dict[str, Any]], path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def expected_triggers(log: Path, cfg: DetectorConfig, until_ms: int) -> dict[str, dict[str, Any]]:
    """Trigger id -> CloudEvent that replay emits (suppressed ones go to the audit topic, not here)."""
    out: dict[str, dict[str, Any]] = {}

    def keep(ce: dict[str, Any]) -> None:
        if ce["data"]["decision"] == "emit":
            out[ce["id"]] = ce

    replay(str(log), cfg, until_ms=until_ms, on_trigger=keep)
    return out


#: Fields that count or sum what was applied: an order lost or applied twice changes them.
#: (The seen ring is left out: it follows processing order, and live interleaves the four
#: input topics differently from the log, so its last 8 entries legitimately differ.)
STATE_FIELDS = ("n_orders", "amount_total", "first_order", "last_order", "recent_orders", "categories", "last_event")


def replayed_states(log: Path, cfg: DetectorConfig, until_ms: int) -> dict[str, Any]:
    return replay(str(log), cfg, until_ms=until_ms).states


def state_diff(live: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Customers whose stored event-derived fields differ from replay (lost or doubly applied events)."""
    diff: dict[str, Any] = {}
    for cid in sorted(set(live) | set(expected)):
        a, b = live.get(cid), expected.get(cid)
        if a is None or b is None:
            diff[cid] = ("missing live" if a is None else "not in replay")
            continue
        fields = {f: (getattr(a, f), getattr(b, f)) for f in STATE_FIELDS if getattr(a, f) != getattr(b, f)}
        if fields:
            diff[cid] = fields
    return diff


#: Faust's offset commit interval (broker_commit_interval): states reach the changelog at commits.
COMMIT_INTERVAL_S = 2.8


def verify(tmp: Path, bootstrap: str, topics: Topics, app_id: str, events: list[dict[str, Any]],
           env: dict[str, str], workers: list[Any], settle_until_ms: int | None = None,
           timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the live triggers catch up with replay, then compare triggers and state. Returns figures."""
    cfg = detector_config(env)
    log = write_log(events, tmp / "generated.jsonl")
    last = max(event_ms(e) for e in events)
    settle = settle_until_ms or last
    deadline = time.monotonic() + timeout
    # 1. the live clock must pass every deadline we want to see fired
    while True:
        marks = watermarks(workers)
        # every partition (the tests run 2) must have a clock, not only the ones that ticked
        if len(marks) >= 2 and min(marks.values()) >= settle + LATENESS_MS:
            break
        assert time.monotonic() < deadline, f"live watermarks {marks} never passed {iso_ms(settle)}"
        time.sleep(0.5)
    # 2. bracket the live trigger set between two replays
    while True:
        low = min(watermarks(workers).values())
        live = trigger_ids(bootstrap, topics.triggers)
        high = max(watermarks(workers).values())
        want_low = expected_triggers(log, cfg, int(low))
        missing = set(want_low) - set(live)
        if not missing:
            break
        assert time.monotonic() < deadline, (
            f"{len(missing)} expected triggers never arrived, e.g. "
            f"{[want_low[i]['data'] for i in sorted(missing)[:3]]}; live events by outcome "
            f"{[_outcomes(w) for w in workers]}, "
            f"produced {len(events)}, dead letters {len(read_all(bootstrap, topics.dlq))}")
        time.sleep(1.0)
    want_high = expected_triggers(log, cfg, int(high))
    extra = set(live) - set(want_high)
    if extra:
        shown = [ce["data"] for ce in triggers(bootstrap, topics.triggers) if ce["id"] in extra][:6]
        raise AssertionError(f"{len(extra)} triggers replay does not produce (false or doubly applied) "
                             f"with the clock at {iso_ms(int(high))}: {shown}")
    # 3. state: nothing lost, nothing applied twice. The changelog trails the live state by
    # up to one commit interval (states are written back at each commit, 2.8 s): a backlog
    # applied a second ago may not be logged yet, so poll for two intervals and more.
    expected_states = replayed_states(log, cfg, int(high))
    state_deadline = time.monotonic() + 4 * COMMIT_INTERVAL_S
    while True:
        live_states = final_states(bootstrap, app_id)
        diff = state_diff(live_states, expected_states)
        if not diff or time.monotonic() > state_deadline:
            break
        time.sleep(1.0)
    assert not diff, f"{len(diff)} customers' state differs from replay: {dict(list(diff.items())[:3])}"
    # 4. no input offset skipped: Faust commits the offsets of a jump as if processed (the
    # seek race of a restarted worker did this in most runs, and lost a message in some).
    jumps = {w.env.get("CHURN_WEB_PORT", str(i)): w.metric("churn_consumer_offset_gaps_total")
             for i, w in enumerate(workers)}
    assert not any(jumps.values()), f"consumers skipped input offsets (worker: jumps): {jumps}"
    return {"events": len(events), "triggers": len(live), "copies": sum(live.values()),
            "duplicated_ids": sum(1 for n in live.values() if n > 1), "customers": len(live_states)}


def _outcomes(worker: Any) -> dict[str, float]:
    return {o: worker.metric("churn_events_total", outcome=o) for o in ("accepted", "duplicate", "late", "invalid")}


def event_ms(e: dict[str, Any]) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000)
