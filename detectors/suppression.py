"""Suppression: who must not be contacted, decided in the core, recorded, never silent.

Every decision passes `decide` in time order. The first rule that applies
names the reason (the decision then goes to the audit topic with it):

    holdout            the customer is in the control group (stable hash of
                       salt + customer id, `holdout_share`), so organic
                       returns are not credited to the campaign
    opted_out          the customer opted out of every channel at the trigger's time
    no_consent         no channel left to use, and the family needs a grant: marketing
                       (win_back, retention) without a grant on any channel, or any
                       family under `consent_required`
    return_exclusion   win-back within `return_exclusion` (90 d) of a return
    episode_cap        a new win-back chain while `winback_max_episodes` (2)
                       chains already started within `winback_period` (365 d)
    same_incident      a service-recovery trigger (`now`) of an order whose incident
                       already had its contact within `incident_window` (7 d)
    cooldown           same kind emitted within its cooldown (chain openers only:
                       a follow-up or later stage belongs to an allowed chain)
    contact_cap        a marketing contact (win_back, retention) when `contact_cap` (3)
                       contacts already went out within `contact_cap_period` (7 d)

Measurement events (returns, corrections) are never suppressed. Only emitted
decisions count towards cooldowns and caps, and only an emitted silence stage
makes a later order a return (returns.py).

The holdout is measurement, not suppression: a holdout member's decision is
also judged by every other rule, as if the customer were in treatment. The
reason stays `holdout` (they are never contacted), but one no other rule
suppresses is booked as if emitted (the episode cap, the silence stages a
return may follow, a cooldown where the kind has one), so the control group
runs on the treatment group's clock (win-backs only: other kinds have no
outcome measured). A holdout return is counted exactly when a treatment
customer's return would be, never after a stage that would have gone out to
nobody (no consent, return exclusion, cap, cooldown).

One incident, one contact. A late delivery, a 1-star rating of that order and a
failed redelivery are one incident: the first of them that goes out is its contact,
the later ones go to the audit topic as `same_incident` with the incident in their
evidence (`incident_kind`, `incident_opened_ms`). Not an update of the trigger sent:
it went out when decided (there is no "not gone out yet" in a stream, and holding
every apology back for the window would delay all of them to merge a few), and a
`severity_raised` message would be a second message about one incident, the
apology the rule removes. The incident's follow-up check ("control contact after
72 hours") is not merged: it is the incident's second touch. Only service-recovery
`now` triggers are merged, and they are all caused by deliveries and ratings, applied
in one order live and in replay, so the rule is deterministic. At most
MAX_INCIDENTS incidents are kept (the oldest dropped first).

The contact cap. Every emitted trigger but measurement is a contact and counts.
Service recovery is never held back by the cap (the playbooks fix the problem
first: "first remove the problem, then make an offer"; an owed apology does not
wait for a marketing quota) but its contacts count, so a customer who got two
apologies this week gets one marketing message at most. What a decision counts
must not depend on when the clock ticked, since a time-driven trigger (a silence
stage, a frequency drop, a follow-up) may fire before or after an event of a
later time, depending on the clock:

    time-driven, at deadline t    event-caused contacts before t, time-driven ones
                                  at or before t (these fire in deadline order)
    caused by an order at t       every contact at or before t: the customer's
                                  deadlines up to t less the lateness fired before
                                  the order, and none after that can have

Marketing caused by a delivery or a rating would see neither rule hold; there is
none (service recovery is exempt). The latest MAX_CONTACTS contacts are kept: a
count is exact while at most MAX_CONTACTS - contact_cap contacts later than the
decision were recorded before it (contacts of events read ahead of the clock), and
none that no later decision can count is kept (`forget`).

Consent, as the playbooks ask ("communications must rest on the customer's
consent"; "if the customer unsubscribed from a channel, respect the choice and
offer another way of contact"), by family. Each decision lists the channels it
may use (`channels`, in the configured order):

    win_back, retention   marketing: the channels the customer granted
                          (`marketing_consent_required`, default on; off: every
                          channel not opted out of). Measurement events list
                          the same, though they never ask for a contact.
    service_recovery      every channel the customer did not opt out of: an
                          apology after a failed delivery needs no marketing
                          grant, but a withdrawal on a channel holds for every
                          message there, and one for `all` stops them all.
                          (`consent_required`: granted channels only, for every
                          family.)

A consent event names one configured channel or `all`. `all` changes every
channel the customer has a record of and a record of its own, which channels
without one (added to the configuration later) follow.

Consent is judged at the decision's event time: per channel the state keeps the
current value, since when, and the value before, so a consent event read after
a trigger's deadline still answers "was it allowed then" (one change of
history per channel; older changes are approximated by the one before).

Must never: read the clock.
"""

from __future__ import annotations

import bisect
import hashlib
import zlib
from typing import Any, Final

from detectors.config import MAX_CONTACT_CAP, DetectorConfig
from detectors.decision import Decision
from detectors.kinds import (
    COOLDOWN_KINDS,
    INCIDENT_KINDS,
    KINDS,
    MEASUREMENT,
    NONE,
    NOW,
    SERVICE_RECOVERY,
    SILENCE,
    SILENCE_STAGES,
    WIN_BACK,
)
from detectors.state import (
    CONSENT_GRANTED,
    CONSENT_UNKNOWN,
    CONSENT_WITHDRAWN,
    INCIDENT_OPENED,
    CustomerState,
    consent_code,
    consent_current,
    consent_previous,
    contact_entry,
    contact_time,
    contact_time_driven,
)
from schemas import Event
from schemas.decode import ALL_CHANNELS

HOLDOUT: Final = "holdout"
TREATMENT: Final = "treatment"
#: A kind's slot in CustomerState.last_emitted, and the code its incidents are kept under (detectors/kinds.py).
_COOLDOWN_SLOT: Final = {k.name: k.cooldown_slot for k in KINDS if k.cooldown_slot != NONE}
_INCIDENT_CODE: Final = {k.name: k.incident_code for k in KINDS if k.incident_code != NONE}
#: Open incidents kept per customer (distinct orders with a service failure within the window).
MAX_INCIDENTS: Final = 4
#: Contacts kept per customer: the cap's count, and room for contacts recorded ahead of the clock.
MAX_CONTACTS: Final = MAX_CONTACT_CAP + 3


def holdout_value(salt: str, customer_id: str) -> float:
    """Uniform in [0, 1), stable across processes, versions and partitions.

    Not cached here: decide() keeps each customer's value in their state (~0.6 µs per hash).
    """
    digest = hashlib.blake2b(f"{salt}\x1f{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _group(cfg: DetectorConfig, value: float) -> str:
    return HOLDOUT if value < cfg.holdout_share else TREATMENT


def group_of(cfg: DetectorConfig, customer_id: str) -> str:
    return _group(cfg, holdout_value(cfg.holdout_salt, customer_id))


# -- consent ---------------------------------------------------------------------

def on_consent(st: CustomerState, ev: Event) -> None:
    """Record a grant or a withdrawal on its channel; one for `all` on every record (see above)."""
    channel = ev.data["channel"]
    value = CONSENT_GRANTED if ev.data["granted"] else CONSENT_WITHDRAWN
    rec = st.consent
    every = channel == ALL_CHANNELS
    found = False
    for i in range(0, len(rec), 3):
        name = rec[i]
        if every or name == channel:
            _change(rec, i, value, ev.ts)
            found = found or name == channel
    if found:
        return
    # A channel's first record starts from what `all` said (it followed that until now).
    for i in range(0, len(rec), 3):
        if rec[i] == ALL_CHANNELS:
            rec.extend((channel, rec[i + 1], rec[i + 2]))
            _change(rec, len(rec) - 3, value, ev.ts)
            return
    rec.extend((channel, value, ev.ts))  # before it: unknown


def _change(rec: list[Any], i: int, value: int, ts: int) -> None:
    code, since = rec[i + 1], rec[i + 2]
    current = consent_current(code)
    if ts >= since:
        rec[i + 1], rec[i + 2] = consent_code(value, current), ts
    else:  # an older change read late: it is what held before the current one
        rec[i + 1] = consent_code(current, value)


def needs_grant(cfg: DetectorConfig, family: str) -> bool:
    """Whether a decision of `family` may use only granted channels (every family but service recovery
    under `marketing_consent_required`; every family under `consent_required`)."""
    return cfg.consent_required or (cfg.marketing_consent_required and family != SERVICE_RECOVERY)


def _values_at(cfg: DetectorConfig, rec: list[Any], t: int) -> list[int]:
    """Each configured channel's consent value at event time `t`."""
    known: dict[str, int] = {}
    for i in range(0, len(rec), 3):
        code = rec[i + 1]
        known[rec[i]] = consent_current(code) if t >= rec[i + 2] else consent_previous(code)
    every = known.get(ALL_CHANNELS, CONSENT_UNKNOWN)
    return [known.get(name, CONSENT_UNKNOWN) or every for name in cfg.channels]


def channels_at(cfg: DetectorConfig, st: CustomerState, t: int, grant: bool) -> tuple[str, ...]:
    """The channels a decision may use at event time `t`: granted ones if `grant`, else those not withdrawn."""
    if not st.consent:  # never set (most customers): every channel is unknown
        return () if grant else cfg.channels
    values = _values_at(cfg, st.consent, t)
    if grant:
        return tuple(name for name, v in zip(cfg.channels, values, strict=True) if v == CONSENT_GRANTED)
    return tuple(name for name, v in zip(cfg.channels, values, strict=True) if v != CONSENT_WITHDRAWN)


def _no_channel(cfg: DetectorConfig, st: CustomerState, t: int) -> str:
    """Why a decision has no channel: the customer opted out of every one, or gave no grant it needs."""
    if st.consent and all(v == CONSENT_WITHDRAWN for v in _values_at(cfg, st.consent, t)):
        return "opted_out"
    return "no_consent"


# -- the decision ----------------------------------------------------------------

def decide(cfg: DetectorConfig, st: CustomerState, d: Decision) -> None:
    """Fill group and channels, set `suppressed` when a rule applies, record emitted ones."""
    salt = cfg.holdout_salt
    known = st.holdout_salt
    if known is None or known != salt:  # `st` is d's customer: the value is theirs for this salt
        st.holdout_value = holdout_value(salt, d.customer_id)
        st.holdout_salt = salt
    d.group = _group(cfg, st.holdout_value)
    d.channels = channels_at(cfg, st, d.time_ms, needs_grant(cfg, d.family))
    if d.family == MEASUREMENT:
        return
    reason = _reason(cfg, st, d)  # what treatment would get: the holdout's counterfactual too
    holdout = d.group == HOLDOUT
    # A holdout member's counterfactual matters for win-backs only (their returns are measured)
    if reason is None and (not holdout or d.family == WIN_BACK):
        _record(cfg, st, d, holdout)
    d.suppressed = HOLDOUT if d.group == HOLDOUT else reason


def _reason(cfg: DetectorConfig, st: CustomerState, d: Decision) -> str | None:
    """The first rule but the holdout that suppresses `d`, or None."""
    t = d.time_ms
    if not d.channels:
        return _no_channel(cfg, st, t)
    winback = d.family == WIN_BACK
    if winback and st.returned_at and t < st.returned_at + cfg.return_exclusion_ms:
        return "return_exclusion"
    if winback and st.winback_episode != _episode_ms(d):
        started = sum(1 for s in st.winback_starts if s > t - cfg.winback_period_ms)
        if started >= cfg.winback_max_episodes:
            return "episode_cap"
    incident = d.family == SERVICE_RECOVERY and d.stage == NOW and cfg.incident_window_ms > 0
    if incident and _same_incident(cfg, st, d):
        return "same_incident"
    slot = _COOLDOWN_SLOT.get(d.kind)
    opener = _opens_chain(st, d)
    cooldown = cfg.cooldowns.get(d.kind, 0)
    if opener and cooldown and slot is not None and st.last_emitted:
        last = st.last_emitted[slot]
        if last and t < last + cooldown:
            return "cooldown"
    if cfg.contact_cap and d.family != SERVICE_RECOVERY and _contacts_before(cfg, st, d) >= cfg.contact_cap:
        return "contact_cap"
    return None


def _same_incident(cfg: DetectorConfig, st: CustomerState, d: Decision) -> bool:
    """Whether `d`'s order has an incident whose contact went out within the window; if so, say which."""
    order = order_digest(d.episode)
    for digest, opened, code in st.incidents:
        if digest == order and abs(d.time_ms - opened) < cfg.incident_window_ms:
            d.evidence["incident_kind"] = INCIDENT_KINDS[code]
            d.evidence["incident_opened_ms"] = opened
            return True
    return False


def order_digest(order_id: str) -> int:
    """CRC-32 of an order id: what an incident keeps of its order (5 bytes where the id took ~13;
    two orders of one customer share one once in 2**32, and their incidents then merge)."""
    return zlib.crc32(order_id.encode())


def _timed(d: Decision) -> bool:
    """Time-driven: fired by the clock at a deadline, not caused by an input event."""
    return d.caused_by is None


def _contacts_before(cfg: DetectorConfig, st: CustomerState, d: Decision) -> int:
    """The contacts within the cap period that `d` sees in every order of processing (see above)."""
    t = d.time_ms
    since = t - cfg.contact_cap_period_ms
    timed = _timed(d)
    n = 0
    for c in st.contacts:
        at = contact_time(c)
        if since < at < t or (at == t and (contact_time_driven(c) or not timed)):
            n += 1
    return n


def _opens_chain(st: CustomerState, d: Decision) -> bool:
    """Cooldowns apply to, and are started by, chain openers only.

    A follow-up or a later silence stage belongs to a chain already allowed.
    Keeping time-driven follow-ups out of the bookkeeping of event-driven
    triggers also keeps the outcome independent of when the clock ticked.
    """
    if d.family == WIN_BACK:
        return st.winback_episode != _episode_ms(d)
    return d.stage == NOW


def _episode_ms(d: Decision) -> int:
    return int(d.episode) if d.episode.isdigit() else -1


def _record(cfg: DetectorConfig, st: CustomerState, d: Decision, holdout: bool) -> None:
    """Book a decision that goes out (for a holdout member: would have).

    A holdout member's cooldown clock is kept only for a kind that has a cooldown: the
    8-slot list costs ~57 bytes, and most holdout states would hold it for nothing.
    """
    if d.kind == SILENCE.name:
        st.contacted |= 1 << SILENCE_STAGES.index(d.stage)
    slot = _COOLDOWN_SLOT.get(d.kind)
    if slot is not None and _opens_chain(st, d) and (not holdout or cfg.cooldowns.get(d.kind, 0)):
        if not st.last_emitted:
            st.last_emitted = [0] * len(COOLDOWN_KINDS)
        st.last_emitted[slot] = max(st.last_emitted[slot], d.time_ms)
    if d.family == WIN_BACK and st.winback_episode != _episode_ms(d):
        st.winback_episode = _episode_ms(d)
        st.winback_starts.append(d.time_ms)
        del st.winback_starts[: max(0, len(st.winback_starts) - cfg.winback_max_episodes)]
    t = d.time_ms
    code = _INCIDENT_CODE.get(d.kind)
    if code is not None and d.stage == NOW and cfg.incident_window_ms > 0:
        incidents = st.incidents  # a new one: an emitted `now` never belongs to an open incident
        incidents.append([order_digest(d.episode), t, code])
        del incidents[: max(0, len(incidents) - MAX_INCIDENTS)]
    contacts = st.contacts
    entry = contact_entry(t, _timed(d))
    if not contacts or entry >= contacts[-1]:
        contacts.append(entry)
    else:
        bisect.insort(contacts, entry)
    if len(contacts) > MAX_CONTACTS:
        del contacts[0]


def forget(cfg: DetectorConfig, st: CustomerState, floor: int) -> None:
    """Drop the contacts and incidents no later decision can count, given that none comes before `floor`.

    The engine passes the earliest of the decisions just made and the customer's next deadline:
    a later decision is caused by an event read later (at or after it, unless late) or fires at a
    deadline (none is pending before it, and an event schedules none before itself). So this
    changes no decision; it keeps the state small.
    """
    keep = floor - cfg.contact_cap_period_ms
    if st.contacts and contact_time(st.contacts[0]) <= keep:
        st.contacts = [c for c in st.contacts if contact_time(c) > keep]
    since = floor - cfg.incident_window_ms
    if st.incidents and st.incidents[0][INCIDENT_OPENED] <= since:
        st.incidents = [i for i in st.incidents if i[INCIDENT_OPENED] > since]
