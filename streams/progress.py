"""A one-line progress bar on stderr: done/total, events/s and ETA.

Shown only on a terminal (or when forced); quiet when stderr is piped, so logs
and CI output stay clean. Callers poll it every few thousand events: `update`
redraws at most a few times per second, so it costs nothing measurable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _rate(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _duration(s: float) -> str:
    s = max(0, int(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    """`position()` returns (done, total) in the source's own unit (bytes, messages)."""

    def __init__(self, position: Callable[[], tuple[float, float | None]], label: str = "",
                 mode: str = "auto", stream: TextIO | None = None, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.enabled = mode == "always" or (mode == "auto" and self.stream.isatty())
        self.position = position
        self.label = label
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._next = self.started
        self._width = 0

    def update(self, events: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now < self._next and not force:
            return
        self._next = now + self.interval
        self.stream.write("\r" + self.line(events, now))
        self.stream.flush()

    def line(self, events: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = events / elapsed
        done, total = self.position()
        parts = [self.label] if self.label else []
        if total:
            frac = min(1.0, done / total)
            filled = int(frac * 24)
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {frac * 100:5.1f}%")
        parts.append(f"{events:,} events  {_rate(rate)} events/s")
        if total and done:
            eta = elapsed * (total - done) / done
            parts.append(f"ETA {_duration(eta)}")
        else:
            parts.append(f"elapsed {_duration(elapsed)}")
        text = "  ".join(parts)
        pad = max(0, self._width - len(text))
        self._width = len(text)
        return text + " " * pad

    def close(self, events: int) -> None:
        if self.enabled:
            self.update(events, force=True)
            self.stream.write("\n")
            self.stream.flush()
