"""CDNOW purchase logs (Fader & Hardie's public data set) -> our JSON Lines order events.

Two layouts exist, both whitespace separated, one purchase per line:

    sample (CDNOW_sample.txt):  master_id  sample_id  YYYYMMDD  cds  dollars
    master (CDNOW_master.txt):  id  YYYYMMDD  cds  dollars   (a header line first)

Each line becomes an `order` event at 00:00 UTC of its date, category "music",
amount = dollars (USD), customer id `cdnow-<id>` (the master id, so sample and
master name the same customer alike). Several purchases on one day stay
separate orders; the model counts them as one transaction (calendar days).

    python -m streams.offline.cdnow CDNOW_sample.txt events.jsonl[.gz]
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

_EPOCH = date(1970, 1, 1)
DAY_MS = 86_400_000


def _open(path: Path) -> Any:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_cdnow(path: str | Path) -> Iterator[tuple[str, int, float, int]]:
    """Yield (customer id, epoch ms, dollars, line number) for each purchase line."""
    with _open(Path(path)) as fh:
        for n, line in enumerate(fh, 1):
            cols = line.split()
            if not cols or not cols[0].isdigit():
                continue  # blank or header line
            if len(cols) == 5:
                cid, day, dollars = cols[0], cols[2], cols[4]
            elif len(cols) == 4:
                cid, day, dollars = cols[0], cols[1], cols[3]
            else:
                raise ValueError(f"{path}:{n}: expected 4 or 5 columns, got {len(cols)}")
            d = date(int(day[:4]), int(day[4:6]), int(day[6:8]))
            yield f"cdnow-{int(cid):05d}", (d - _EPOCH).days * DAY_MS, float(dollars), n


def to_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Order events in file order (CDNOW files are sorted by customer, then date)."""
    for cid, ms, dollars, n in read_cdnow(path):
        d = date.fromordinal(_EPOCH.toordinal() + ms // DAY_MS)
        yield {
            "event_id": f"cdnow-{n}", "type": "order", "customer_id": cid,
            "occurred_at": f"{d.isoformat()}T00:00:00Z", "order_id": f"cdnow-{n}",
            "category": "music", "amount": dollars, "currency": "USD",
        }


def convert(src: str | Path, dst: str | Path, time_order: bool = True) -> int:
    """Write `src` as JSON Lines to `dst` (.gz compresses); sorted by event time unless told not to.

    Replay and the live worker expect a customer's orders in time order and a
    log roughly in time order overall; CDNOW is sorted by customer.
    """
    events = list(to_events(src))
    if time_order:
        events.sort(key=lambda e: (e["occurred_at"], e["customer_id"], e["event_id"]))
    out = Path(dst)
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    out.write_bytes(gzip.compress(data, mtime=0) if out.suffix == ".gz" else data)
    return len(events)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m streams.offline.cdnow CDNOW_FILE OUT.jsonl[.gz]", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {convert(sys.argv[1], sys.argv[2])} order events to {sys.argv[2]}", file=sys.stderr)
