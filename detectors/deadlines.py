"""Per-partition deadline index: a heap with lazy deletion.

A sweep costs O(due log n), not O(customers): only customers whose deadline has
passed are touched. Each customer has at most one live entry (its earliest
deadline); superseded heap entries are skipped when popped and compacted away
when they outnumber live ones. Ties pop in customer-id order, so sweeps are
deterministic.

The index is derived data: it is rebuilt from the state table when a partition
is assigned and dropped when it is revoked.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Final

#: "No deadline" for the detectors' integer deadline functions: later than any real one
#: (year 9999 is ~2.5e14 ms), so the earliest of several is a plain `min`, and a plain int
#: keeps the compiled core from allocating an object per `int | None` result.
NEVER: Final = 1 << 61


class DeadlineIndex:
    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, customer_id: str, deadline: int | None) -> None:
        current = self._due.get(customer_id)
        if deadline is None:
            if current is not None:
                del self._due[customer_id]
            return
        if current == deadline:
            return
        self._due[customer_id] = deadline
        heapq.heappush(self._heap, (deadline, customer_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def get(self, customer_id: str) -> int | None:
        return self._due.get(customer_id)

    def peek(self) -> int | None:
        """Earliest live deadline, or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def overdue(self, now: int) -> int:
        """How many live deadlines are at or before `now` (for metrics; O(n))."""
        return sum(1 for d in self._due.values() if d <= now)

    def pop_due(self, now: int) -> Iterator[str]:
        """Yield (and remove) every customer whose deadline is at or before `now`."""
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            deadline, customer_id = heapq.heappop(heap)
            if due.get(customer_id) == deadline:
                del due[customer_id]
                yield customer_id

    def _compact(self) -> None:
        self._heap = [(d, c) for c, d in self._due.items()]
        heapq.heapify(self._heap)
