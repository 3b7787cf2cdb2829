"""Per-partition deadline index: near deadlines in a heap, later ones in time buckets.

A sweep costs O(due), not O(customers): only customers whose deadline has
passed are touched. Each customer has one live deadline (its earliest, kept in
`_due`); the structures below may also hold superseded entries, which are
skipped when they come up and compacted away when they outnumber live ones.
Due customers pop in (deadline, customer id) order, so sweeps are
deterministic.

Why two levels: nearly every order moves its customer's deadline, and with one
heap of (deadline, customer id) pairs each move cost a push, and every
superseded entry later a pop, each O(log n) tuple comparisons: ~12% of a
replay. Here a deadline past the horizon is only appended to its bucket
(deadline >> BUCKET_BITS, about 70 minutes); a bucket is opened, its live
entries moved into the heap, only when the clock reaches its start, so the
heap holds just the next hour's deadlines and superseded far entries are
dropped in bulk at O(1) each.

The index is derived data: it is rebuilt from the state table when a partition
is assigned and dropped when it is revoked.
"""

from __future__ import annotations

import heapq
from typing import Final

#: "No deadline" for the detectors' integer deadline functions: later than any real one
#: (year 9999 is ~2.5e14 ms), so the earliest of several is a plain `min`, and a plain int
#: keeps the compiled core from allocating an object per `int | None` result.
NEVER: Final = 1 << 61

#: Bucket width of the far deadlines: 2**22 ms, about 70 minutes.
BUCKET_BITS: Final = 22

#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


class DeadlineIndex:
    __slots__ = ("_due", "_entries", "_far", "_horizon", "_keys", "_near")

    def __init__(self) -> None:
        self._due: dict[str, int] = {}            # customer -> live deadline
        self._near: list[tuple[int, str]] = []    # heap of deadlines before the horizon
        self._far: dict[int, list[str]] = {}      # bucket -> customers set to a deadline in it
        self._keys: list[int] = []                # heap of the buckets in _far
        self._horizon = 0                         # start of the first bucket not yet opened
        self._entries = 0                         # entries in _near and _far, live or superseded

    def __len__(self) -> int:
        return len(self._due)

    def set(self, customer_id: str, deadline: int | None) -> None:
        due = self._due
        current = due.get(customer_id)
        if deadline is None:
            if current is not None:
                del due[customer_id]
            return
        if current is not None and current == deadline:  # narrowed to int: a C compare, not a generic one
            return
        due[customer_id] = deadline
        if deadline < self._horizon:
            _heappush(self._near, (deadline, customer_id))
        else:
            key = deadline >> BUCKET_BITS
            bucket = self._far.get(key)
            if bucket is None:
                self._far[key] = [customer_id]
                _heappush(self._keys, key)
            else:
                bucket.append(customer_id)
        self._entries += 1
        if self._entries > 2 * len(due) + 1024:
            self._compact()

    def get(self, customer_id: str) -> int | None:
        return self._due.get(customer_id)

    def any_due(self, now: int) -> bool:
        """False when certainly nothing is due at `now`: O(1), the sweep's common case.

        True may still find nothing (only superseded entries, or a bucket whose
        deadlines are later than `now`); pop_due then tidies up.
        """
        near, keys = self._near, self._keys
        return bool((near and near[0][0] <= now) or (keys and keys[0] << BUCKET_BITS <= now))

    def peek(self) -> int | None:
        """Earliest live deadline, or None."""
        near, keys, due = self._near, self._keys, self._due
        while True:
            while near and due.get(near[0][1]) != near[0][0]:
                _heappop(near)
            if near or not keys:  # near deadlines are all before the first bucket
                return near[0][0] if near else None
            self._open()

    def overdue(self, now: int) -> int:
        """How many live deadlines are at or before `now` (for metrics; O(n))."""
        return sum(1 for d in self._due.values() if d <= now)

    def pop_due(self, now: int) -> list[str]:
        """Remove and return every customer whose deadline is at or before `now`, in order."""
        keys = self._keys
        while keys and keys[0] << BUCKET_BITS <= now:
            self._open()
        near, due = self._near, self._due
        out: list[str] = []
        while near and near[0][0] <= now:
            deadline, customer_id = _heappop(near)
            self._entries -= 1
            live = due.get(customer_id)
            if live is not None and live == deadline:
                del due[customer_id]
                out.append(customer_id)
        return out

    def _open(self) -> None:
        """Move the first bucket's live entries into the heap and the horizon past it."""
        key = _heappop(self._keys)
        bucket = self._far.pop(key)
        near, due = self._near, self._due
        for customer_id in bucket:
            d = due.get(customer_id)
            if d is not None and d >> BUCKET_BITS == key:
                _heappush(near, (d, customer_id))
            else:
                self._entries -= 1
        self._horizon = (key + 1) << BUCKET_BITS

    def _compact(self) -> None:
        horizon = self._horizon
        self._near = [(d, c) for c, d in self._due.items() if d < horizon]
        heapq.heapify(self._near)
        far: dict[int, list[str]] = {}
        for c, d in self._due.items():
            if d >= horizon:
                far.setdefault(d >> BUCKET_BITS, []).append(c)
        self._far = far
        self._keys = list(far)
        heapq.heapify(self._keys)
        self._entries = len(self._due)
