"""The reorder buffer in the compiled fold replays exactly as the interpreted loop it replaced.

Until detector 2.3.0 made a 15-minute `allowed_lateness` (and so `--lateness`) the
default, a replay with a reorder buffer took an interpreted loop in streams/offline/replay.py.
That loop is kept here, as it was, as the oracle: the fold (detectors/fold.py, both its
line loop and its event loop) must give the same triggers in the same order, the same
snapshot, the same summary and the same observer calls (explain), over logs out of
order within and beyond the lateness, with rejected lines, duplicates and re-used ids.
"""

from __future__ import annotations

import heapq
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors import Decision, PartitionCore
from detectors.engine import CONFLICT
from detectors.envelope import encode, iso_ms, to_cloudevent
from schemas import Event
from schemas.decode import to_epoch_ms
from streams.dev.samples import SampleGenerator
from streams.offline.replay import Replayer, ReplayResult, snapshots, summary_table
from streams.offline.sources import FileSource, Reject

END = to_epoch_ms("2026-03-01T00:00:00Z")
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Calls = list[tuple[Any, ...]]


def _watch(calls: Calls, version: str) -> Any:
    def observe(ev: Event | None, outcome: str, decisions: list[Decision], core: PartitionCore) -> None:
        calls.append((None if ev is None else ev.event_id, outcome,
                      [to_cloudevent(d, version)["id"] for d in decisions], core.clock, core.max_event))
    return observe


def reference(path: Path, **kw: Any) -> tuple[ReplayResult, list[bytes], Calls]:
    """The replay as streams/offline/replay.py ran it before the buffer moved into the fold (`_run_buffered`)."""
    triggers: list[bytes] = []
    calls: Calls = []
    r = Replayer(on_trigger=lambda ce, _d: triggers.append(encode(ce)), **kw)
    observer = _watch(calls, r.version)
    fold, core, res = r.fold, r.core, r.result
    fold.lateness = 0  # this loop holds events itself and hands the fold one at a time

    def apply(ev: Event) -> None:
        decisions, outcome, fired = fold.apply(ev)
        if outcome == CONFLICT:
            r._conflict(ev)
            return
        observer(ev, outcome, decisions, core)
        if fired:
            observer(None, "deadline", fired, core)

    def advance(now: int) -> None:
        fired = core.advance(now)
        if fired:
            fold.emit(fired)
            observer(None, "deadline", fired, core)

    lateness = r.lateness_ms
    heap: list[tuple[int, int, Event]] = []
    seq = high = n = 0
    for item in FileSource(path).items(r.decoder(), r.now_ms):
        if isinstance(item, Reject):
            r._reject(item)
            continue
        ev = item
        ts = ev.ts
        if not fold.admit(ts):
            continue
        n += 1
        if not lateness:
            apply(ev)
            continue
        if ts < high - lateness:
            apply(ev)
            continue
        if ts < high:
            res.reordered += 1
        else:
            high = ts
        heapq.heappush(heap, (ts, seq, ev))
        seq += 1
        limit = high - lateness
        while heap and heap[0][0] <= limit:
            apply(heapq.heappop(heap)[2])
        advance(limit)
    while heap:
        apply(heapq.heappop(heap)[2])
    if r.until_ms is not None:
        advance(r.until_ms)
    res.events = n - fold.conflicts
    res.by_type.update(fold.by_type)
    res.triggers.update(fold.triggers)
    res.written, res.before_from, res.after_until = fold.written, fold.before_from, fold.after_until
    res.late, res.late_count = fold.late, fold.late_count
    res.clock = core.clock
    return res, triggers, calls


def fold_replay(path: Path, lines: bool, **kw: Any) -> tuple[ReplayResult, list[bytes], Calls]:
    """The replay as it runs now: the fold's line loop (run_source) or its event loop (run over items)."""
    triggers: list[bytes] = []
    calls: Calls = []
    r = Replayer(on_trigger=lambda ce, _d: triggers.append(encode(ce)), **kw)
    r.observer = _watch(calls, r.version)
    res = r.run_source(FileSource(path)) if lines else r.run(FileSource(path).items(r.decoder(), r.now_ms))
    return res, triggers, calls


def _summary(res: ReplayResult, cfg: Any) -> tuple[Any, ...]:
    now = res.clock
    return (res.events, dict(res.by_type), dict(res.triggers), res.written, res.before_from, res.after_until,
            dict(res.rejects), [(r.source, r.position, r.reason, r.message, r.raw, r.ts) for r in res.reject_samples],
            res.late_count, res.late, res.reordered, res.clock, summary_table(res, sample=1000),
            b"".join(orjson.dumps(row) + b"\n" for row in snapshots(cfg, res, now)))


def untidy_log(path: Path, seed: int) -> Path:
    """A busy stretch of history read out of order: most events a few minutes late, some hours or days.

    Plus lines that are not events, an exact copy (duplicate) and re-used ids with other
    content (conflicts), one of them read before the event whose id it re-uses.
    """
    rng = random.Random(seed)
    history = SampleGenerator(seed=seed, customers=400).history(END, days=21)

    def delay() -> int:
        p = rng.random()
        if p < 0.55:
            return 0
        if p < 0.93:
            return rng.randrange(20 * MINUTE)   # within and just past 15 minutes
        if p < 0.98:
            return rng.randrange(6 * HOUR)
        return rng.randrange(3 * DAY)

    arrivals = sorted(((to_epoch_ms(e["occurred_at"]) + delay(), i, e) for i, e in enumerate(history)),
                      key=lambda a: (a[0], a[1]))
    lines: list[bytes] = [orjson.dumps(e) for _, _, e in arrivals]
    orders = [i for i, (_, _, e) in enumerate(arrivals) if e["type"] == "order"]
    for k, i in enumerate(rng.sample(orders, 6)):
        other = {**arrivals[i][2], "amount": arrivals[i][2]["amount"] + 1}
        at = i + rng.randrange(1, 40) if k % 2 else max(0, i - rng.randrange(1, 5))  # after, or just before it
        lines.insert(at, orjson.dumps(other))
    lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])  # a redelivery
    for bad in (b"{nope", b"", b"[1]", b'{"type": "order"}', b"   "):
        lines.insert(rng.randrange(len(lines)), bad)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.fixture(scope="module", params=[3, 8])
def log(request: Any, tmp_path_factory: Any) -> Path:
    return untidy_log(tmp_path_factory.mktemp("buffer") / f"untidy-{request.param}.jsonl", request.param)


@pytest.mark.parametrize("lines", [True, False], ids=["line loop", "event loop"])
@pytest.mark.parametrize("window", [{}, {"from_ms": END - 12 * DAY, "until_ms": END - 3 * DAY}],
                         ids=["whole", "from-until"])
@pytest.mark.parametrize("lateness", [None, 0, 2 * HOUR, 2 * DAY], ids=["default", "0", "2h", "2d"])
def test_the_fold_replays_an_untidy_log_exactly_as_the_interpreted_buffer(log, lines, window, lateness):
    kw = {"lateness_ms": lateness, "until_ms": END, **window}
    want_res, want_triggers, want_calls = reference(log, **kw)
    got_res, got_triggers, got_calls = fold_replay(log, lines, **kw)
    cfg = Replayer().cfg
    assert got_triggers == want_triggers
    assert got_calls == want_calls
    assert _summary(got_res, cfg) == _summary(want_res, cfg)
    # the log exercises what the comparison is about
    assert len(want_triggers) > 100
    assert want_res.rejects["event_id_conflict"] >= 3
    assert want_res.outcomes["duplicate"] >= 1
    assert sum(want_res.rejects.values()) > want_res.rejects["event_id_conflict"]
    if lateness is None:  # the detector's 15 minutes: events put back in order and events too late for it
        assert want_res.reordered > 20
        assert want_res.late_count > 20


def test_an_in_order_log_is_held_back_by_the_lateness_and_fires_deadlines_at_the_watermark(tmp_path):
    """Each event waits for one 15 minutes later; the clock trails the newest event by the lateness."""
    history = SampleGenerator(seed=5, customers=300).history(END, days=90)
    path = tmp_path / "sorted.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in history))
    want, want_triggers, want_calls = reference(path)
    got, got_triggers, got_calls = fold_replay(path, lines=True)
    assert got_triggers == want_triggers
    assert got_calls == want_calls
    assert _summary(got, Replayer().cfg) == _summary(want, Replayer().cfg)
    assert got.reordered == got.late_count == 0
    assert got.clock == max(to_epoch_ms(e["occurred_at"]) for e in history)  # the end releases every held event
    assert any(outcome == "deadline" for _, outcome, *_ in got_calls)


def _order(customer: str, n: int, at: int, amount: float = 10.0) -> bytes:
    return orjson.dumps({"event_id": f"{customer}-o{n}", "type": "order", "customer_id": customer,
                         "occurred_at": iso_ms(at), "order_id": f"{customer}-{n}", "category": "grocery",
                         "amount": amount})


@pytest.mark.parametrize("lines", [True, False], ids=["line loop", "event loop"])
def test_an_event_exactly_at_the_watermark_is_released_at_once(tmp_path, lines):
    """`high - lateness` itself is passed: such an event, queued or just read out of order, goes now.

    Rejects show when an event was applied: a re-used id is found then, and its reject comes
    before those of the lines read after it only when it was applied at once.
    """
    t = END - 10 * DAY
    log = tmp_path / "edge.jsonl"
    log.write_bytes(b"".join(line + b"\n" for line in (
        _order("a", 1, t),
        _order("b", 1, t + 15 * MINUTE),       # the watermark reaches a-o1 (queued): applied
        _order("a", 1, t, amount=11.0),        # out of order, exactly at the watermark: a conflict now
        b"{nope",
        _order("b", 1, t + 15 * MINUTE, 11.0),  # in order: held until the watermark reaches it
        _order("c", 1, t + 30 * MINUTE),       # ... now
        b"[1]",
    )))
    got = fold_replay(log, lines)[0]
    want = reference(log)[0]
    assert [(r.position, r.reason) for r in got.reject_samples] == [
        (3, "event_id_conflict"), (4, "malformed_json"), (5, "event_id_conflict"), (7, "not_an_object")]
    assert _summary(got, Replayer().cfg) == _summary(want, Replayer().cfg)
    assert got.reordered == 1
    assert got.late_count == 0
