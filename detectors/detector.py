"""The detector contract: the hooks a signal module provides, and when the engine calls them.

A signal is one module in detectors/ (silence, frequency, basket, favourite,
rating, delivery, returns; cause keeps the service failures a silence names).
Each provides the hooks it needs, all with the same arguments in the same order
(configuration, the customer's state, then the input):

    on_order(cfg, st, ev)                    an order, before the engine counts it: `st` is the history
                                             before it (its last order, its silence episode, its favourite)
    on_order_counted(cfg, st, ev)            the same order, once counted (n_orders, amounts, order times,
                                             categories, last_order include it)
    on_event(cfg, st, ev)                    a delivery or a courier rating (they come from other topics
                                             and never move the customer's clock)
    deadline_ms(cfg, st) -> int              the module's next deadline, NEVER (detectors/deadlines.py)
                                             for none; the engine takes the earliest of all
    on_deadline(cfg, st, customer_id, now)   the decisions due at `now` (past the deadline and the allowed
                                             lateness: the engine decides when), with the deadline as their time

An order or event hook returns its decisions (a list, empty for none) or, when it
only keeps the state up to date, None. Hooks mutate `st` in place and never read
the clock. Every decision names a registered kind and takes its family and
severity from it (detectors/kinds.py).

The engine calls each module's hooks by name, in the order its `apply` lists
them (orders: returns, favourite, silence; count; frequency, rating, cause,
basket), never through a table of callables: the compiled core turns a direct
call into a C call and a dynamic one into a Python call with every argument
boxed. HOOKS and SIGNALS are the contract as data, for
tests/unit/test_kinds.py, which holds every module to it.

Must never: read the clock, import streams/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.state import CustomerState

#: Hook name -> its parameters, in order.
HOOKS: Final[dict[str, tuple[str, ...]]] = {
    "on_order": ("cfg", "st", "ev"),
    "on_order_counted": ("cfg", "st", "ev"),
    "on_event": ("cfg", "st", "ev"),
    "deadline_ms": ("cfg", "st"),
    "on_deadline": ("cfg", "st", "customer_id", "now"),
}

#: Signal module -> the hooks it provides (the engine calls exactly these).
SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "silence": ("on_order", "deadline_ms", "on_deadline"),
    "frequency": ("on_order_counted", "deadline_ms", "on_deadline"),
    "basket": ("on_order_counted",),
    "favourite": ("on_order",),
    "rating": ("on_order_counted", "on_event", "deadline_ms", "on_deadline"),
    "delivery": ("on_event",),
    "returns": ("on_order",),
    "cause": ("on_order_counted",),
}

#: An on_deadline hook (the engine keeps the one whose deadline is earliest).
OnDeadline = Callable[[DetectorConfig, CustomerState, str, int], list[Decision]]
