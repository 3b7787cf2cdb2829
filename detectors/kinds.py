"""Every trigger kind in one place: its family, stages, severities, cooldown and wording.

The rest of the project reads this registry instead of keeping lists of its own:

    detectors/*.py            a decision's kind, family and severity (Decision(kind=K.name, family=K.family, ...))
    detectors/config.py       the kinds a cooldown may name and their default cooldowns
    detectors/suppression.py  the cooldown slot and the service-incident code a kind is kept under
    streams/live/metrics.py        the `kind` label values that start at zero
    streams/wording.py        a trigger in words (`demo`, `explain`), from `reason` below
    docs/triggers.md          the kinds table (scripts/kinds_table.py writes it; a test compares)

Families are the playbooks' answers: win-back (an offer to come back), retention
(keep an active customer engaged), service recovery ("first remove the problem,
then make an offer": an apology, no coupon) and measurement (an outcome recorded,
never a reason to contact anyone).

Two numbers are part of the customer state's encoding, so they are fixed once
given and new kinds take the next free one: `cooldown_slot` (the kind's place in
CustomerState.last_emitted) and `incident_code` (how CustomerState.incidents
names the kind that opened an incident). tests/unit/test_kinds.py pins them.

Must never: read the clock, import streams/.
"""

from __future__ import annotations

from typing import Final

from detectors.config_values import DAY_MS

#: Families (docs/triggers.md, "family").
WIN_BACK: Final = "win_back"
RETENTION: Final = "retention"
SERVICE_RECOVERY: Final = "service_recovery"
MEASUREMENT: Final = "measurement"
FAMILIES: Final = (WIN_BACK, RETENTION, SERVICE_RECOVERY, MEASUREMENT)
#: Families that market (need a consent grant, count against the contact cap's quota).
MARKETING: Final = (WIN_BACK, RETENTION)

#: Severities, lowest first; `info` is for measurement events only.
SEVERITIES: Final = ("info", "low", "medium", "high")

#: The stage of a trigger that has none of its own.
NOW: Final = "now"
#: A rating's control check 72 hours after it.
FOLLOW_UP: Final = "follow_up"
#: Silence stages, in firing order.
SILENCE_STAGES: Final = ("at_risk", "dormant", "lost")

#: `reason` key for a template that holds for every stage of the kind.
ANY_STAGE: Final = "*"
#: No slot or code (Kind.cooldown_slot, Kind.incident_code).
NONE: Final = -1


class Kind:
    """One trigger kind. Plain data; the registry below holds one of each."""

    __slots__ = ("cooldown_ms", "cooldown_slot", "description", "family", "incident_code", "name", "reasons",
                 "severities", "severity", "stage_note", "stages", "time_driven")

    def __init__(
        self,
        name: str,
        family: str,
        stages: tuple[str, ...],
        severities: tuple[str, ...],
        *,
        time_driven: str,
        description: str,
        reasons: dict[str, str],
        cooldown_ms: int = 0,
        cooldown_slot: int = NONE,
        incident_code: int = NONE,
        stage_note: str = "",
    ) -> None:
        self.name = name
        self.family = family
        self.stages = stages
        #: stage -> the kind's own severity (before value-aware severity raises a contact's);
        #: a detector may choose another by its own rule (a courier rating of 2 is `medium`).
        self.severities = dict(zip(stages, severities, strict=True))
        #: The first stage's: the severity of a kind with one stage.
        self.severity = severities[0]
        #: Whether the clock fires it, for the docs ("yes", "no (order)", ...).
        self.time_driven = time_driven
        #: When it fires, one line for the docs.
        self.description = description
        #: stage (or ANY_STAGE) -> a str.format template over the trigger's evidence, `stage` and
        #: `group`: why it fired, in words (streams/wording.py).
        self.reasons = reasons
        #: Default cooldown after an emitted trigger of the kind (0: none; `cooldowns` setting).
        self.cooldown_ms = cooldown_ms
        #: Index in CustomerState.last_emitted; NONE: the kind takes no cooldown. Encoded: never renumber.
        self.cooldown_slot = cooldown_slot
        #: Code in CustomerState.incidents of a kind that opens a service incident. Encoded: never renumber.
        self.incident_code = incident_code
        #: Said after the stages in the docs (e.g. which of them a correction carries).
        self.stage_note = stage_note

    def reason(self, stage: str) -> str | None:
        """The wording template of `stage`, or None."""
        template = self.reasons.get(stage)
        return template if template is not None else self.reasons.get(ANY_STAGE)

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"


SILENCE: Final = Kind(
    "silence", WIN_BACK, SILENCE_STAGES, ("low", "medium", "high"),
    time_driven="yes",
    description="no order for longer than the customer's cadence or category allows",
    reasons={ANY_STAGE: "{days_silent:.1f} days without an order (window {window_days:g} d)"},
    cooldown_slot=0,
)
FREQUENCY_DROP: Final = Kind(
    "frequency_drop", RETENTION, (NOW,), ("low",),
    time_driven="yes",
    description="recent order rate below half the baseline",
    reasons={ANY_STAGE: "{recent_orders} orders in {recent_window_days:g} d "
                        "vs baseline {baseline_orders_per_30d:.1f}/30 d"},
    cooldown_ms=30 * DAY_MS, cooldown_slot=1,
)
BASKET_VALUE_DROP: Final = Kind(
    "basket_value_drop", RETENTION, (NOW,), ("low",),
    time_driven="no (order)",
    description="recent average order value below half the baseline",
    reasons={ANY_STAGE: "average order {recent_order_value:g} vs baseline {baseline_order_value:g}"},
    cooldown_ms=30 * DAY_MS, cooldown_slot=2,
)
FAVOURITE_CATEGORY_ABANDONED: Final = Kind(
    "favourite_category_abandoned", RETENTION, (NOW,), ("medium",),
    time_driven="no (order)",
    description="the favourite category lapsed while other orders continue",
    reasons={ANY_STAGE: "no {abandoned_category} for {days_since_favourite_order:.0f} d, ordered {ordered_category}"},
    cooldown_ms=30 * DAY_MS, cooldown_slot=3,
)
NEGATIVE_RATING: Final = Kind(
    "negative_rating", SERVICE_RECOVERY, (NOW, FOLLOW_UP), ("high", "medium"),
    time_driven="`follow_up` is",
    description="courier rating <= 2 (`now` for a 2: medium); follow-up 72 h later without an order",
    reasons={NOW: "rated the courier {rating}/5 (order {order_id})",
             FOLLOW_UP: "no order {hours_since_rating:g} h after a bad rating (order {order_id})"},
    cooldown_ms=7 * DAY_MS, cooldown_slot=4, incident_code=0,
)
DELIVERY_FAILED: Final = Kind(
    "delivery_failed", SERVICE_RECOVERY, (NOW,), ("high",),
    time_driven="no (delivery)",
    description="delivery failed or returned",
    reasons={ANY_STAGE: "delivery {status} (order {order_id})"},
    cooldown_ms=DAY_MS, cooldown_slot=5, incident_code=1,
)
DELIVERY_LATE: Final = Kind(
    "delivery_late", SERVICE_RECOVERY, (NOW,), ("medium",),
    time_driven="no (delivery)",
    description="delivered later than promised beyond the grace",
    reasons={ANY_STAGE: "delivered {minutes_late:.0f} min late (order {order_id})"},
    cooldown_ms=7 * DAY_MS, cooldown_slot=6, incident_code=2,
)
DELIVERY_LATE_REPEATED: Final = Kind(
    "delivery_late_repeated", SERVICE_RECOVERY, (NOW,), ("high",),
    time_driven="no (delivery)",
    description="the 2nd late delivery within 30 days (instead of `delivery_late`)",
    reasons={ANY_STAGE: "{late_deliveries_in_window} late deliveries in {window_days:g} d (order {order_id})"},
    cooldown_ms=14 * DAY_MS, cooldown_slot=7, incident_code=3,
)
CUSTOMER_RETURNED: Final = Kind(
    "customer_returned", MEASUREMENT, (NOW,), ("info",),
    time_driven="no (order)",
    description="an order after a silence trigger that went out (holdout: that only the holdout suppressed)",
    reasons={ANY_STAGE: "ordered {days_since_trigger:g} d after silence/{preceding_stage} ({group})"},
)
SILENCE_RETRACTED: Final = Kind(
    "silence_retracted", MEASUREMENT, SILENCE_STAGES, ("info", "info", "info"),
    time_driven="no (order)",
    description="a late order proves fired silence stages wrong",
    reasons={ANY_STAGE: "late order proves silence/{stage} wrong ({retracted_stages})"},
    stage_note="(the first wrong one)",
)

#: Every kind, in the order the docs list them.
KINDS: Final = (SILENCE, FREQUENCY_DROP, BASKET_VALUE_DROP, FAVOURITE_CATEGORY_ABANDONED, NEGATIVE_RATING,
                DELIVERY_FAILED, DELIVERY_LATE, DELIVERY_LATE_REPEATED, CUSTOMER_RETURNED, SILENCE_RETRACTED)
NAMES: Final = tuple(k.name for k in KINDS)
BY_NAME: Final[dict[str, Kind]] = {k.name: k for k in KINDS}
#: Kinds that can carry a cooldown, by their slot in CustomerState.last_emitted.
COOLDOWN_KINDS: Final = tuple(k.name for k in sorted((k for k in KINDS if k.cooldown_slot != NONE),
                                                     key=lambda k: k.cooldown_slot))
#: The default cooldowns (the playbooks' "don't pester": 3-5 touches per chain at most).
DEFAULT_COOLDOWNS: Final[dict[str, int]] = {k.name: k.cooldown_ms for k in KINDS if k.cooldown_ms}
#: Kinds that can open a service incident, by their code in CustomerState.incidents.
INCIDENT_KINDS: Final = tuple(k.name for k in sorted((k for k in KINDS if k.incident_code != NONE),
                                                     key=lambda k: k.incident_code))


def kind(name: str) -> Kind | None:
    """The registered kind of that name, or None (a consumer must ignore kinds it does not know)."""
    return BY_NAME.get(name)
