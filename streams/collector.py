"""The cyclic garbage collector's settings for the project's two long loops: one home, one name.

Both loops allocate a few container objects per event and free nearly all of
them at once by reference counting; CPython's default young-generation
threshold (700) still runs the collector every few hundred events and walks the
long-lived heap (customer states, modules, Faust's app) each time. Only cyclic
garbage waits a little longer with a larger threshold.

Measured:
- replay (bench/replay_bench.py): the collector took ~5% of a replay with the
  default thresholds; REPLAY_GEN0 removes most of it.
- worker (bench/live_bench.py, 40,000 events): the defaults spent 6.6% of the
  worker's time in the collector (220 young collections of ~0.5 ms, 20 middle
  ones of ~4 ms, 2 full ones of ~60 ms over ~5 s); start-up objects frozen and
  WORKER_GEN0: 2.0%.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Young-generation thresholds (net allocations between collections; CPython: 700).
REPLAY_GEN0 = 50_000
WORKER_GEN0 = 5_000


@contextmanager
def fewer_collections(gen0: int, *, freeze: bool = False) -> Iterator[None]:
    """Collect less often for the length of the block; the thresholds are restored afterwards.

    `freeze`: collect once, then move every object alive now (modules, the app) out of the
    collector's sight for good: they are never garbage and need not be walked again.
    """
    if freeze:
        gc.collect()
        gc.freeze()
    old = gc.get_threshold()
    gc.set_threshold(gen0, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
