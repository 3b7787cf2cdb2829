"""Offline replay speed and state size, against a bare JSON parse of the same file measured in the same run.

    python bench/replay_bench.py [--events 1000000] [--runs 5] [--cpu 0]

1. Builds (once, cached) a synthetic log of realistic customer histories with
   streams.dev.samples.SampleGenerator: orders, deliveries, courier ratings, consent.
2. Pins the process to one core.
3. Alternates, `runs` times: a bare `orjson.loads` loop over the file (the
   ceiling: reading and parsing, nothing else) and a full replay (read, parse,
   validate, detect, build and encode every trigger), and reports medians.
4. Unless --no-stages, a one-off breakdown of where the time goes, with the reorder buffer's share (the
   default lateness against `--lateness 0`) among it.
5. bytes/customer = mean encoded state size (CustomerState.encode) over the
   customers tracked at the end of the replay.

The last line is the summary:  replay: <N> events/s, <B> bytes/customer, <R> of bare parse
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detectors.envelope import encode  # noqa: E402 - after the path set-up above
from streams.corebuild import kind as core_kind  # noqa: E402
from streams.dev.samples import SampleGenerator  # noqa: E402
from streams.offline.replay import Replayer  # noqa: E402
from streams.offline.sources import FileSource  # noqa: E402

END_MS = 1_790_000_000_000   # a fixed end of history (2026-09-21), so the log is the same in every run
EVENTS_PER_CUSTOMER_YEAR = 86  # what SampleGenerator produces on average over 365 days
#: Part of the cached log's name: a log built by an older SampleGenerator is not reused
#: (2: its customers grant marketing consent).
LOG_VERSION = 2


def build_log(path: Path, events: int, seed: int) -> None:
    customers = max(10, int(events / EVENTS_PER_CUSTOMER_YEAR * 1.05))
    history = SampleGenerator(seed=seed, customers=customers).history(END_MS, days=365)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        for e in history[:events]:
            fh.write(orjson.dumps(e) + b"\n")
    tmp.replace(path)


def bare_parse(path: Path) -> tuple[int, float]:
    loads = orjson.loads
    t = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - t


def decode_only(path: Path) -> float:
    """Read, parse and validate every line (what the replay does before the core), in a bare loop."""
    decode = Replayer().decoder().decode
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            decode(line.strip())
    return time.perf_counter() - t


def core_only(path: Path, lateness_ms: int | None = None) -> float:
    """The full replay without building or encoding triggers (reorder buffer: the default lateness, or as given)."""
    r = Replayer(lateness_ms=lateness_ms)
    t = time.perf_counter()
    r.run_source(FileSource(path))
    return time.perf_counter() - t


def replay_once(path: Path) -> tuple[int, float, int, float]:
    out_bytes = 0

    def sink(ce: dict[str, object], _d: object) -> None:
        nonlocal out_bytes
        out_bytes += len(encode(ce)) + 1   # encoded as the file sink would write it

    r = Replayer(on_trigger=sink)
    t = time.perf_counter()
    res = r.run_source(FileSource(path))
    dt = time.perf_counter() - t
    states = res.states
    size = statistics.fmean(len(st.encode()) for st in states.values()) if states else 0.0
    if res.rejected:
        raise SystemExit(f"the synthetic log has {res.rejected} rejected lines: {res.rejects}")
    return res.events, dt, res.written, size if states else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    p.add_argument("--no-stages", dest="stages", action="store_false",
                   help="skip the one-off breakdown of where the time goes")
    p.add_argument("--data", default=os.environ.get("BENCH_DATA", str(Path(tempfile.gettempdir()) / "churn-bench")))
    args = p.parse_args()

    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to cpu {cpu}")
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"replay-{args.events}-seed{args.seed}-v{LOG_VERSION}.jsonl"
    if not path.exists():
        t = time.perf_counter()
        build_log(path, args.events, args.seed)
        print(f"built {path} in {time.perf_counter() - t:.1f}s")
    print(f"log: {path} ({path.stat().st_size / 1e6:.0f} MB); core: {core_kind()} (make core / make pure)")

    bare: list[float] = []
    rep: list[float] = []
    n = written = 0
    size = 0.0
    for i in range(args.runs):
        gc.collect()
        nb, tb = bare_parse(path)
        gc.collect()
        n, tr, written, size = replay_once(path)
        bare.append(nb / tb)
        rep.append(n / tr)
        print(f"run {i + 1}: bare parse {nb / tb:>11,.0f} events/s   replay {n / tr:>9,.0f} events/s "
              f"({tr:.2f}s, {written:,} triggers)")
    b, r = statistics.median(bare), statistics.median(rep)
    if args.stages:
        gc.collect()
        t_decode = decode_only(path)
        gc.collect()
        t_core = core_only(path)
        gc.collect()
        t_unbuffered = core_only(path, lateness_ms=0)
        per = [("read + parse (bare loop)", 1e6 / b), ("validate into events", t_decode / n * 1e6 - 1e6 / b),
               ("detector core + replay loop", (t_core - t_decode) / n * 1e6),
               ("build + encode triggers", 1e6 / r - t_core / n * 1e6)]
        print("where the time goes (µs per event; one run each, differences of cumulative stages):")
        for name, us in per:
            print(f"  {name:<30} {us:6.2f}")
        print(f"  {'total':<30} {1e6 / r:6.2f}")
        lateness = Replayer().lateness_ms
        print(f"  {'of which the reorder buffer':<30} {(t_core - t_unbuffered) / n * 1e6:6.2f}  "
              f"(--lateness {lateness // 60_000}m against 0: x{t_unbuffered / t_core:.3f} of the speed)")
    print(f"median of {args.runs}: bare parse {b:,.0f} events/s, replay {r:,.0f} events/s; "
          f"{n:,} events, {written:,} triggers")
    print(f"budget: >= 200,000 events/s and <= 300 bytes/customer: "
          f"{'met' if r >= 200_000 else 'NOT met'} / {'met' if size <= 300 else 'NOT met'}")
    print(f"replay: {r:,.0f} events/s, {size:.0f} bytes/customer, {r / b:.1%} of bare parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
