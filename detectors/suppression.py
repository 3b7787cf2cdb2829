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
    cooldown           same kind emitted within its cooldown (chain openers only:
                       a follow-up or later stage belongs to an allowed chain)

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

import hashlib
from typing import Any, Final

from detectors.config import COOLDOWN_KINDS, DetectorConfig
from detectors.decision import MEASUREMENT, SERVICE_RECOVERY, SILENCE_STAGES, Decision
from detectors.state import CONSENT_GRANTED, CONSENT_UNKNOWN, CONSENT_WITHDRAWN, CustomerState
from schemas import Event
from schemas.decode import ALL_CHANNELS

HOLDOUT: Final = "holdout"
TREATMENT: Final = "treatment"
_COOLDOWN_SLOT: Final = {k: i for i, k in enumerate(COOLDOWN_KINDS)}


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
    current = code % 3
    if ts >= since:
        rec[i + 1], rec[i + 2] = value + 3 * current, ts
    else:  # an older change read late: it is what held before the current one
        rec[i + 1] = current + 3 * value


def needs_grant(cfg: DetectorConfig, family: str) -> bool:
    """Whether a decision of `family` may use only granted channels (every family but service recovery
    under `marketing_consent_required`; every family under `consent_required`)."""
    return cfg.consent_required or (cfg.marketing_consent_required and family != SERVICE_RECOVERY)


def _values_at(cfg: DetectorConfig, rec: list[Any], t: int) -> list[int]:
    """Each configured channel's consent value at event time `t`."""
    known: dict[str, int] = {}
    for i in range(0, len(rec), 3):
        code = rec[i + 1]
        known[rec[i]] = code % 3 if t >= rec[i + 2] else code // 3
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
    known = st.hold_salt
    if known is None or known != salt:  # `st` is d's customer: the value is theirs for this salt
        st.hold = holdout_value(salt, d.customer_id)
        st.hold_salt = salt
    d.group = _group(cfg, st.hold)
    d.channels = channels_at(cfg, st, d.time_ms, needs_grant(cfg, d.family))
    if d.family == MEASUREMENT:
        return
    reason = _reason(cfg, st, d)  # what treatment would get: the holdout's counterfactual too
    holdout = d.group == HOLDOUT
    # A holdout member's counterfactual matters for win-backs only (their returns are measured)
    if reason is None and (not holdout or d.family == "win_back"):
        _record(cfg, st, d, holdout)
    d.suppressed = HOLDOUT if d.group == HOLDOUT else reason


def _reason(cfg: DetectorConfig, st: CustomerState, d: Decision) -> str | None:
    """The first rule but the holdout that suppresses `d`, or None."""
    t = d.time_ms
    if not d.channels:
        return _no_channel(cfg, st, t)
    winback = d.family == "win_back"
    if winback and st.returned_at and t < st.returned_at + cfg.return_exclusion_ms:
        return "return_exclusion"
    if winback and st.wb_ep != _episode_ms(d):
        started = sum(1 for s in st.wb if s > t - cfg.winback_period_ms)
        if started >= cfg.winback_max_episodes:
            return "episode_cap"
    slot = _COOLDOWN_SLOT.get(d.kind)
    opener = _opens_chain(st, d)
    cooldown = cfg.cooldowns.get(d.kind, 0)
    if opener and cooldown and slot is not None and st.last_emit:
        last = st.last_emit[slot]
        if last and t < last + cooldown:
            return "cooldown"
    return None


def _opens_chain(st: CustomerState, d: Decision) -> bool:
    """Cooldowns apply to, and are started by, chain openers only.

    A follow-up or a later silence stage belongs to a chain already allowed.
    Keeping time-driven follow-ups out of the bookkeeping of event-driven
    triggers also keeps the outcome independent of when the clock ticked.
    """
    if d.family == "win_back":
        return st.wb_ep != _episode_ms(d)
    return d.stage == "now"


def _episode_ms(d: Decision) -> int:
    return int(d.episode) if d.episode.isdigit() else -1


def _record(cfg: DetectorConfig, st: CustomerState, d: Decision, holdout: bool) -> None:
    """Book a decision that goes out (for a holdout member: would have).

    A holdout member's cooldown clock is kept only for a kind that has a cooldown: the
    8-slot list costs ~57 bytes, and most holdout states would hold it for nothing.
    """
    if d.kind == "silence":
        st.contacted |= 1 << SILENCE_STAGES.index(d.stage)
    slot = _COOLDOWN_SLOT.get(d.kind)
    if slot is not None and _opens_chain(st, d) and (not holdout or cfg.cooldowns.get(d.kind, 0)):
        if not st.last_emit:
            st.last_emit = [0] * len(COOLDOWN_KINDS)
        st.last_emit[slot] = max(st.last_emit[slot], d.time_ms)
    if d.family == "win_back" and st.wb_ep != _episode_ms(d):
        st.wb_ep = _episode_ms(d)
        st.wb.append(d.time_ms)
        del st.wb[: max(0, len(st.wb) - cfg.winback_max_episodes)]
