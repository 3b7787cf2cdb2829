"""Offline replay: the live core over files or a topic range, on an event-time clock.

The same Engine and PartitionCore as the worker; the per-event loop itself,
reorder buffer included, is detectors/fold.py, compiled with the core. The
clock follows event time: after each event it advances to the highest event
time applied (with a reorder buffer, to its watermark), so deadlines fire as
they would live, and `until` advances it at the end so silence that became due
by then fires too.

Untidy input is handled, never dropped silently:
- events up to `lateness` out of order are put back in event-time order by a
  reorder buffer (a heap released once the highest event time seen is
  `lateness` past them; by default the detector's `allowed_lateness`, the time
  a live deadline waits for them); events later than that are applied all the
  same and reported as `late` (exactly what the live worker does with them);
- invalid lines and messages become `Reject`s with where they came from and why,
  among them events further in the future than the live worker allows: with
  `now_ms` (the CLI passes `--now`, by default the wall clock when the run
  starts) anything after `now_ms` plus the decoder's max_future_skew is
  rejected as `future_time`, so one line dated 2099 cannot move the clock past
  everyone's deadlines; the past is not bounded, so old logs replay whole;
- so are events whose `event_id` was applied before with other content
  (`event_id_conflict`: the core finds those; the reject keeps the raw bytes,
  which the fused line loop has at hand and other sources record in
  `Event.origin`);
- events after `until` are not applied and are counted; triggers before
  `from` are computed (their events build the state) but not written, and
  counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors import CustomerState, Decision, DetectorConfig, Engine, PartitionCore
from detectors.engine import conflict_error
from detectors.envelope import iso_ms
from detectors.fold import KEEP, Fold, Observer, ReadFailed
from detectors.snapshot import summary
from schemas import Event, EventDecoder, InvalidEvent
from schemas.errors import CommandError
from streams.collector import REPLAY_GEN0, fewer_collections
from streams.offline.sources import FileSource, Item, Reject, Source
from streams.progress import Progress
from streams.terminal import printable


@dataclass
class ReplayResult:
    events: int = 0                                   # valid events applied
    by_type: Counter[tuple[str, str]] = field(default_factory=Counter)      # (type, outcome)
    triggers: Counter[tuple[str, str]] = field(default_factory=Counter)     # (kind, decision)
    written: int = 0                                  # triggers passed on (inside the window)
    before_from: int = 0                              # triggers with event time before --from
    after_until: int = 0                              # events after --until, not applied
    rejects: Counter[str] = field(default_factory=Counter)                  # reason -> count
    reject_samples: list[Reject] = field(default_factory=list)
    late: list[tuple[str, str, int, int]] = field(default_factory=list)     # (event_id, customer, ts, behind ms)
    late_count: int = 0
    reordered: int = 0                                # events the reorder buffer put back in order
    clock: int = 0
    states: dict[str, CustomerState] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    @property
    def outcomes(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, outcome), n in self.by_type.items():
            out[outcome] += n
        return out


class Replayer:
    """One replay run. `on_trigger(cloudevent, decision)` receives triggers inside the window."""

    def __init__(
        self,
        cfg: DetectorConfig | None = None,
        *,
        lateness_ms: int | None = None,
        from_ms: int | None = None,
        until_ms: int | None = None,
        on_trigger: Callable[[dict[str, Any], Decision], None] | None = None,
        on_reject: Callable[[Reject], None] | None = None,
        observer: Observer | None = None,
        decoder: EventDecoder | None = None,
        now_ms: int | None = None,
    ) -> None:
        self.cfg = cfg or DetectorConfig()
        # The plausibility bounds (Settings.event_decoder(): the worker's) and the time the
        # future bound counts from; None: events are not checked against a wall clock.
        self._decoder = decoder or EventDecoder(channels=self.cfg.channels)
        self.now_ms = now_ms
        self.engine = Engine(self.cfg)
        self.version = self.cfg.version
        # The reorder buffer: by default the detector's allowed lateness, so the events a live
        # worker would still take in time (before their deadlines fire) are applied in order.
        self.lateness_ms = self.cfg.allowed_lateness_ms if lateness_ms is None else lateness_ms
        self.from_ms = from_ms
        self.until_ms = until_ms
        self.on_trigger = on_trigger
        self.on_reject = on_reject
        self.observer = observer
        self.result = ReplayResult()
        self.core = PartitionCore(self.engine, self.result.states)
        # The per-event loop, reorder buffer and counts (compiled with the core); copied into `result` at the end.
        self.fold = Fold(self.core, self.version, from_ms=from_ms, until_ms=until_ms, sink=on_trigger,
                         lateness_ms=self.lateness_ms)

    def decoder(self) -> EventDecoder:
        return self._decoder

    def _reject(self, r: Reject) -> None:
        res = self.result
        res.rejects[r.reason] += 1
        if len(res.reject_samples) < KEEP:  # as many as the late events the fold keeps
            res.reject_samples.append(r)
        if self.on_reject is not None:
            self.on_reject(r)

    def _other(self, item: object) -> None:
        if item.__class__ is not Reject:
            raise TypeError(f"a replay source yielded {item!r}, expected an Event or a Reject")
        self._reject(item)

    def _conflict(self, ev: Event) -> None:
        """An event whose id was applied before with other content: a reject, with its raw bytes."""
        exc = conflict_error(ev)
        if ev.origin is None:  # handed in as an Event, not read: its content is all there is
            self._reject(Reject("(events)", 0, None, exc.reason, str(exc), orjson.dumps(ev.data), ev.ts))
            return
        source, position, partition, raw = ev.origin
        self._reject(Reject(source, position, partition, exc.reason, str(exc), raw, ev.ts))

    def run(self, items: Iterable[Item], progress: Progress | None = None) -> ReplayResult:
        """Replay events and rejects from any source, in the order given."""
        self.fold.observer = self.observer  # explain sets it after construction
        with fewer_collections(REPLAY_GEN0):
            n = self.fold.events(items, self._other, None if progress is None else progress.update,
                                 self._conflict)
            return self._finish(n, progress)

    def run_source(self, source: Source, progress: Progress | None = None) -> ReplayResult:
        """Replay a source; one file takes the fused line loop (read, decode and apply in the compiled core)."""
        if not isinstance(source, FileSource):
            return self.run(source.items(self.decoder(), self.now_ms), progress)
        self.fold.observer = self.observer
        path = source.path

        def reject(number: int, line: bytes, exc: InvalidEvent, last: int) -> None:
            self._reject(Reject(path, number, None, exc.reason, str(exc), line, last))

        with fewer_collections(REPLAY_GEN0), source.open() as fh:
            try:
                n = self.fold.lines(fh, self.decoder(), reject, None if progress is None else progress.update,
                                    self.now_ms)
            except ReadFailed as exc:
                raise CommandError(f"cannot read {path}: {exc.cause}") from None
        return self._finish(n, progress)

    def _finish(self, n: int, progress: Progress | None) -> ReplayResult:
        res, fold = self.result, self.fold
        until = self.until_ms
        if until is not None:
            fold.advance(until)
        res.events = n
        res.by_type.update(fold.by_type)
        res.triggers.update(fold.triggers)
        res.written, res.before_from, res.after_until = fold.written, fold.before_from, fold.after_until
        res.late, res.late_count, res.reordered = fold.late, fold.late_count, fold.reordered
        res.clock = self.core.clock
        if progress is not None:
            progress.close(n)
        return res


def replay(
    path: str,
    cfg: DetectorConfig | None = None,
    until_ms: int | None = None,
    on_trigger: Callable[[dict[str, Any]], None] | None = None,
    lateness_ms: int | None = None,
    now_ms: int | None = None,
    on_reject: Callable[[Reject], None] | None = None,
) -> ReplayResult:
    """Replay one JSON Lines file (convenience for tests and scripts)."""
    sink = None if on_trigger is None else (lambda ce, _d: on_trigger(ce))
    r = Replayer(cfg, until_ms=until_ms, lateness_ms=lateness_ms, on_trigger=sink, now_ms=now_ms,
                 on_reject=on_reject)
    return r.run_source(FileSource(path))


def snapshots(cfg: DetectorConfig, result: ReplayResult, now: int) -> list[dict[str, Any]]:
    return [summary(cfg, cid, st, now) for cid, st in sorted(result.states.items())]


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    cells = [tuple(str(c) for c in header), *(tuple(str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return [f"{title}:", "  " + fmt(cells[0]), "  " + "  ".join("-" * w for w in widths),
            *("  " + fmt(r) for r in cells[1:])]


def summary_table(res: ReplayResult, sample: int = 10) -> str:
    """The closing report: events by type and outcome, triggers by kind and decision, rejects."""
    lines: list[str] = []
    outcomes = sorted({o for _, o in res.by_type})
    types = sorted({t for t, _ in res.by_type})
    rows = [(t, *(res.by_type.get((t, o), 0) for o in outcomes), sum(res.by_type.get((t, o), 0) for o in outcomes))
            for t in types]
    if rows:
        rows.append(("total", *(sum(res.by_type.get((t, o), 0) for t in types) for o in outcomes), res.events))
    lines += _table("events", ("type", *outcomes, "total"), rows)
    decisions = sorted({d for _, d in res.triggers})
    kinds = sorted({k for k, _ in res.triggers})
    rows = [(k, *(res.triggers.get((k, d), 0) for d in decisions), sum(res.triggers.get((k, d), 0) for d in decisions))
            for k in kinds]
    if rows:
        rows.append(("total", *(sum(res.triggers.get((k, d), 0) for k in kinds) for d in decisions),
                     sum(res.triggers.values())))
    lines += _table("triggers", ("kind", *decisions, "total"), rows)
    if res.before_from:
        lines.append(f"  {res.before_from} triggers before --from were computed but not written")
    if res.after_until:
        lines.append(f"  {res.after_until} events after --until were not applied")
    lines += _table("rejects", ("reason", "lines"), sorted(res.rejects.items()))
    for r in res.reject_samples[:sample]:
        lines.append(f"  {r.where()}: {r.reason}: {r.message}")
    if res.rejected > sample:
        lines.append(f"  ... and {res.rejected - sample} more")
    if res.reordered:
        lines.append(f"reordered: {res.reordered} events arrived out of order within the allowed lateness")
    if res.late_count:
        lines.append(f"late: {res.late_count} events arrived later than the allowed lateness; applied as late")
        for eid, cid, ts, behind in res.late[:sample]:
            lines.append(f"  event {eid} customer {cid} at {iso_ms(ts)}: {behind / 1000:.0f}s behind the clock")
        if res.late_count > sample:
            lines.append(f"  ... and {res.late_count - sample} more")
    return "\n".join(printable(line) for line in lines)  # ids and rejected text come from the log
