"""Offline replay: the live core over a JSON Lines log, on an event-time clock.

The same Engine and PartitionCore as the worker. The clock follows the event
time (the highest occurred_at seen); `until` advances it at the end so due
silence deadlines fire. Invalid lines are reported with their line numbers,
never dropped silently and never fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detectors import CustomerState, Decision, DetectorConfig, Engine, PartitionCore
from detectors.envelope import to_cloudevent
from detectors.snapshot import summary
from schemas import EventDecoder, InvalidEvent
from streams.jsonl import read_lines


@dataclass
class ReplayResult:
    triggers: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, message)
    outcomes: Counter[str] = field(default_factory=Counter)
    events_by_type: Counter[str] = field(default_factory=Counter)
    clock: int = 0
    states: dict[str, CustomerState] = field(default_factory=dict)


def replay(
    path: str,
    cfg: DetectorConfig | None = None,
    until_ms: int | None = None,
    on_trigger: Callable[[dict[str, Any]], None] | None = None,
) -> ReplayResult:
    cfg = cfg or DetectorConfig()
    engine = Engine(cfg)
    result = ReplayResult()
    core = PartitionCore(engine, result.states)
    decoder = EventDecoder()
    version = cfg.version

    def emit(decisions: list[Decision]) -> None:
        for d in decisions:
            ce = to_cloudevent(d, version)
            result.triggers.append(ce)
            if on_trigger:
                on_trigger(ce)

    for line_no, raw in read_lines(path):
        try:
            ev = decoder.decode(raw)
        except InvalidEvent as exc:
            result.invalid.append((line_no, exc.reason, str(exc)))
            result.outcomes["invalid"] += 1
            continue
        decisions, outcome = core.apply(ev)
        result.outcomes[outcome] += 1
        result.events_by_type[ev.type] += 1
        emit(decisions)
        emit(core.advance(core.max_event))
    if until_ms is not None:
        emit(core.advance(until_ms))
    result.clock = core.clock
    return result


def snapshots(cfg: DetectorConfig, result: ReplayResult, now: int) -> list[dict[str, Any]]:
    return [summary(cfg, cid, st, now) for cid, st in sorted(result.states.items())]
