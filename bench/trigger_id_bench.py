"""Is CPython's private `_sha256` module worth keeping for trigger ids? An A/B of the replay, same run.

    python bench/trigger_id_bench.py [--events 200000] [--rounds 5]

detectors/envelope.py hashed trigger ids with `_sha256.sha256` (CPython's own
SHA-256, a private module, renamed `_sha2` in Python 3.12, where the gain would
silently vanish). The rule: a private module stays only with a gain of at least 3%
on the replay. Measured here (7 rounds, 200,000 events): x1.005, so envelope.py
uses hashlib.sha256; this bench stays to measure it again.

A: the replay as shipped (hashlib.sha256). B: the same replay, with `hashlib.sha256`
replaced by `_sha256.sha256` before the core is imported: the core binds it once at
import (`_sha256: Final = hashlib.sha256` in envelope.py), so this is the only switch
and the rest is byte for byte the same code. Each side runs in its own process, alternating, pinned to one core;
the figure is the median of the per-round ratios (each round's two runs are
neighbours in time, so load that drifts over the run cancels better than in a
ratio of medians). Both sides must write the same triggers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLD = 1.03

#: One replay in a child process; prints "<events/s> <triggers written> <sha256 of their ids>".
CHILD = r"""
import hashlib, sys, time
if sys.argv[2] == "_sha256":
    import _sha256
    hashlib.sha256 = _sha256.sha256
sys.path.insert(0, sys.argv[3])
import detectors.envelope
assert detectors.envelope._sha256 is hashlib.sha256, "the switch did not reach the core"
from streams.offline.replay import Replayer
from streams.offline.sources import FileSource
ids = hashlib.sha256()
def sink(ce, _d):
    ids.update(ce["id"].encode())
r = Replayer(on_trigger=sink)
t = time.perf_counter()
res = r.run_source(FileSource(sys.argv[1]))
dt = time.perf_counter() - t
print(res.events / dt, res.written, ids.hexdigest())
"""


def run(path: Path, side: str, cpu: int | None) -> tuple[float, int, str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = subprocess.run([*pin, sys.executable, "-c", CHILD, str(path), side, str(ROOT)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), out[2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data", default=os.environ.get("BENCH_DATA", str(Path(tempfile.gettempdir()) / "churn-bench")))
    args = p.parse_args()
    from bench.replay_bench import LOG_VERSION, build_log
    from streams.corebuild import check_fresh
    from streams.corebuild import kind as core_kind

    check_fresh()  # a core compiled from other sources would measure other code

    try:
        import _sha256  # noqa: F401 - only whether it exists
    except ImportError:
        print("no _sha256 module in this Python: envelope.py already uses hashlib's SHA-256")
        return 0
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"replay-{args.events}-seed{args.seed}-v{LOG_VERSION}.jsonl"
    if not path.exists():
        build_log(path, args.events, args.seed)
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"log: {path}; core: {core_kind()}; pinned to cpu {cpu}")
    speeds: dict[str, list[float]] = {"_sha256": [], "hashlib": []}
    outputs = set()
    for i in range(args.rounds):
        for side in (("_sha256", "hashlib") if i % 2 == 0 else ("hashlib", "_sha256")):
            speed, written, digest = run(path, side, cpu)
            speeds[side].append(speed)
            outputs.add((written, digest))
        print(f"round {i + 1}: _sha256 {speeds['_sha256'][-1]:,.0f} events/s, hashlib {speeds['hashlib'][-1]:,.0f}")
    if len(outputs) != 1:
        raise SystemExit(f"the two sides wrote different triggers: {outputs}")
    a, b = statistics.median(speeds["_sha256"]), statistics.median(speeds["hashlib"])
    ratio = statistics.median(x / y for x, y in zip(speeds["_sha256"], speeds["hashlib"], strict=True))
    verdict = "worth a private module" if ratio >= THRESHOLD else "below the 3% bar: hashlib.sha256 stays"
    print(f"medians of {args.rounds}: _sha256 {a:,.0f} events/s, hashlib {b:,.0f} events/s")
    print(f"_sha256 vs hashlib: x{ratio:.3f}, median of the rounds' ratios ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
