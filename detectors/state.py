"""Per-customer state: a small flat record with an explicit compact encoding.

Budget (DESIGN.md section 4): a few hundred bytes per customer, so tens of
millions of customers fit a handful of workers. Only numbers and short strings;
bounded lists (the last `RECENT` order times, the last `SEEN` event digests,
at most `MAX_CATEGORIES` categories, and lists sized by bounded settings: the
latest basket amounts, late-delivery times, win-back episode starts, and the
few recent service failures of detectors/cause.py, the latest contacts and open service
incidents of detectors/suppression.py). Empty optional parts
(consent, cooldown slots) encode as an empty list.

The encoding is lossless: a state decoded from the changelog behaves exactly
like the one that was written, which is what keeps recovery deterministic.

Must never: hold configuration (thresholds live in DetectorConfig), read the clock.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any, Final

import orjson

from detectors.statecodec import pack, unpack

#: Order times kept for the recent-rate window (frequency drop).
RECENT: Final = 8
#: Event digests (id and content) kept to make redelivered events idempotent.
SEEN: Final = 8
#: Categories tracked per customer (least ordered dropped first).
MAX_CATEGORIES: Final = 6
#: 2: cadence (n_days), basket, favourite, follow-up, lateness, consent and
#: suppression bookkeeping fields.
#: 3: the version-2 value list, packed (detectors/statecodec.py) instead of JSON,
#: within the few-hundred-bytes budget; JSON records of version 2 still read.
#: 4: `seen` holds a content digest next to each event-id digest, as one byte string
#: (a re-used event_id with other content is a conflict, not a duplicate); the id-only
#: rings of versions 1-3 still read, their content unknown (UNKNOWN_CONTENT).
#: 5: `failures`, the latest service failures (detectors/cause.py), appended to the list (a
#: state of versions 1-4 reads with none: failures before the upgrade are not known); and
#: consent kept per channel *name* (the channels are configurable), one entry per channel
#: the customer's consent events named, plus `all`; the positional email, sms, push records
#: of versions 2-4 still read (upgrade_consent).
#: 6: `contacts` (the latest emitted contacts, for the contact cap), `incidents` (the open
#: service incidents, one contact each; detectors/suppression.py) and `contacted` (the silence
#: stages of the current episode that were emitted or, for a holdout member, would have been: a
#: return counts only after one), appended. A state of versions 1-5 reads with no contacts or
#: incidents (not known before the upgrade) and every fired stage of its episode counted, the rule
#: it was written under.
ENCODING_VERSION: Final = 6
#: Values in the list of versions 2-4; version 5 appends one, version 6 three more.
_V4_VALUES: Final = 24
_VALUES: Final = {2: _V4_VALUES, 3: _V4_VALUES, 4: _V4_VALUES, 5: _V4_VALUES + 1, 6: _V4_VALUES + 4}

#: A consent value: never said, granted, withdrawn (CustomerState.consent).
CONSENT_UNKNOWN: Final = 0
CONSENT_GRANTED: Final = 1
CONSENT_WITHDRAWN: Final = 2
#: The channels of the positional consent records of encodings 2-4, in their order.
_CONSENT_CHANNELS_V4: Final = ("email", "sms", "push")


#: A category's [orders, last order ms] packed in one int: orders << CAT_SHIFT | last. Event
#: times are below 2**48 (years up to 9999), so packed values order exactly as (orders, last)
#: pairs do; one int per category instead of a list holding two (fewer objects to reach).
CAT_SHIFT: Final = 48
CAT_LAST: Final = (1 << CAT_SHIFT) - 1
#: Distinct category names kept shared (intern_category); names past it are used as they come.
MAX_INTERNED: Final = 4096
_CATEGORY_NAMES: Final[dict[str, str]] = {}


def cat_entry(orders: int, last: int) -> int:
    return orders << CAT_SHIFT | last


def cat_orders(entry: int) -> int:
    return entry >> CAT_SHIFT


def cat_last(entry: int) -> int:
    return entry & CAT_LAST


#: A contact (CustomerState.contacts) is one int: its time << 1 | 1 when the clock fired it (a
#: time-driven trigger), so a sorted list orders contacts by time, time-driven ones last at one instant.
def contact_entry(at: int, time_driven: bool) -> int:
    return at << 1 | (1 if time_driven else 0)


def contact_time(entry: int) -> int:
    return entry >> 1


def contact_time_driven(entry: int) -> bool:
    return entry & 1 == 1


#: A channel's consent (CustomerState.consent) keeps its current value and the one before in one
#: small int, each CONSENT_UNKNOWN, CONSENT_GRANTED or CONSENT_WITHDRAWN.
def consent_code(current: int, previous: int) -> int:
    return current + 3 * previous


def consent_current(code: int) -> int:
    return code % 3


def consent_previous(code: int) -> int:
    return code // 3


#: Positions in a pending follow-up (CustomerState.follow_ups): due time, rated order id, and the
#: event_hash of the rating that scheduled it (absent in checks scheduled before detector 2.1.0).
FOLLOW_UP_DUE: Final = 0
FOLLOW_UP_ORDER: Final = 1
FOLLOW_UP_RATING: Final = 2
#: Positions in a service failure (CustomerState.failures, detectors/cause.py): time, kind code, order id.
FAILURE_AT: Final = 0
FAILURE_KIND: Final = 1
FAILURE_ORDER: Final = 2
#: Positions in an open incident (CustomerState.incidents): its order's digest, when its contact went
#: out, and the kinds.INCIDENT_KINDS index of the kind that opened it.
INCIDENT_ORDER: Final = 0
INCIDENT_OPENED: Final = 1
INCIDENT_KIND: Final = 2


def intern_category(name: str) -> str:
    """One shared string per category name, so every customer's `cats` keys and `fav` are the
    same few objects: a look-up matches by identity and touches memory that is already cached."""
    shared = _CATEGORY_NAMES.get(name)
    if shared is not None:
        return shared
    if len(_CATEGORY_NAMES) < MAX_INTERNED:
        _CATEGORY_NAMES[name] = name
    return name


#: Bytes of one event-id digest.
DIGEST: Final = 6
#: Bytes of one content digest (content_digest).
CONTENT: Final = 4
#: Bytes of one `seen` entry: the id digest, then the content digest; up to SEEN back to back.
ENTRY: Final = DIGEST + CONTENT
#: The content digest of an entry read from a state of before version 4, which kept ids only:
#: the event behind it is a duplicate whatever its content (content_digest is never this).
UNKNOWN_CONTENT: Final = bytes(CONTENT)
#: An empty 6-byte BLAKE2b: copying it skips parsing the constructor's keyword arguments
#: (~25% of the hash, which runs once per event).
_EVENT_HASH: Final = hashlib.blake2b(digest_size=DIGEST)
#: Bound once: a compiled module reads `module.function` from the module's dict on every call.
_dumps: Final = orjson.dumps
_crc32: Final = zlib.crc32
_SORTED: Final = orjson.OPT_SORT_KEYS


def event_digest(event_id: str) -> bytes:
    """6-byte BLAKE2b digest of an event id: stable across processes, unlike hash()."""
    h = _EVENT_HASH.copy()
    h.update(event_id.encode())
    return h.digest()


def event_hash(event_id: str) -> int:
    """The 48-bit event hash the encoded state stores: the digest read as a big-endian int."""
    return int.from_bytes(event_digest(event_id), "big")


def content_digest(data: dict[str, Any]) -> bytes:
    """4-byte digest of an event's content: CRC-32 of its JSON with sorted keys, never UNKNOWN_CONTENT.

    The same event sent again, byte for byte or re-serialised (other key order, other
    whitespace or escapes), has the same digest; one whose fields differ has another, except
    once in 2**32 (and never for a difference within 32 contiguous bits, CRC-32's burst
    guarantee). Values are compared as they were written: 30 and 30.0 differ. CRC-32
    rather than a cryptographic hash: a producer can re-use an id deliberately anyway,
    and this runs for every event.
    """
    crc = _crc32(_dumps(data, option=_SORTED))
    return (crc or 1).to_bytes(CONTENT, "big")


def seen_find(seen: bytes, digest: bytes) -> int:
    """Offset of the entry of `seen` whose event-id digest is `digest`, or -1 (a match must start an entry)."""
    i = seen.find(digest)
    while i >= 0 and i % ENTRY:
        i = seen.find(digest, i + 1)
    return i


def _pack_contacts(contacts: list[int]) -> list[int]:
    """`[flags, t0, t1, ...]`: the contact times as they are (the codec codes each as a small
    difference to the time before it) and the time-driven bits apart, in one small integer.

    Kept in memory as `t << 1 | time_driven` (one sorted list), a contact would be a number
    twice the size of a time, and cost the codec two more bytes each.
    """
    if not contacts:
        return []
    flags = 0
    for i, c in enumerate(contacts):
        flags |= (c & 1) << i
    return [flags, *[c >> 1 for c in contacts]]


def _unpack_contacts(v: list[int]) -> list[int]:
    if not v:
        return []
    flags = v[0]
    return [t << 1 | (flags >> i & 1) for i, t in enumerate(v[1:])]


class CustomerState:
    """Mutable per-customer record. The engine updates it in place and returns it."""

    __slots__ = (
        "amount_total",
        "basket_fired",
        "categories",
        "consent",
        "contacted",
        "contacts",
        "failures",
        "favourite",
        "favourite_fired",
        "first_order",
        "follow_up_rated",
        "follow_ups",
        "frequency_fired",
        "holdout_salt",
        "holdout_value",
        "incidents",
        "last_emitted",
        "last_event",
        "last_order",
        "late_deliveries",
        "n_orders",
        "order_days",
        "partition",
        "recent_amounts",
        "recent_orders",
        "returned_at",
        "seen",
        "silence_stage",
        "winback_episode",
        "winback_starts",
    )

    def __init__(self) -> None:
        self.partition = -1          # input partition the customer lives on (-1: replay)
        self.first_order = 0         # epoch ms of the first order (0: none yet)
        self.last_order = 0          # epoch ms of the latest order; starts the silence episode
        self.n_orders = 0
        self.amount_total = 0.0
        self.recent_orders: list[int] = []  # last RECENT order times, ascending
        self.categories: dict[str, int] = {}  # category -> cat_entry(orders, last order ms)
        # favourite_category() of `categories`, kept up to date by the engine's order update (derived,
        # not encoded): the detectors read it a few times per event and recomputing it was ~5%
        # of the replay time.
        self.favourite: str | None = None
        # suppression.holdout_value(holdout_salt, customer id) once worked out (derived, not encoded):
        # a pure function of the two, kept with the customer because a look-up by customer id in a
        # shared cache was ~2% of a replay (its keys are cold). holdout_salt None: not yet.
        self.holdout_salt: str | None = None
        self.holdout_value = 0.0
        self.silence_stage = 0       # stages fired in the current episode: 0 none, 1 at_risk, 2 dormant, 3 lost
        # stages of the current episode the customer was contacted about (emitted; for a holdout
        # member, would have been): bit i for SILENCE_STAGES[i]. Only these make an order a return.
        self.contacted = 0
        self.frequency_fired = 0     # epoch ms the current frequency-drop episode fired (0: none)
        # the last SEEN events applied, oldest first, back to back, each its event-id digest
        # (event_digest) then its content digest (content_digest): one object to scan, where a
        # list of ints was SEEN objects scattered over the heap, each a cache miss for a
        # customer not seen lately (~4% of a replay). Encoded as it is (a byte string).
        self.seen = b""
        self.last_event = 0          # highest event time applied
        # personal cadence: distinct UTC order days (BG/NBD x = order_days - 1)
        self.order_days = 0
        # basket value: amounts of the latest orders (arrival order), drop episode
        self.recent_amounts: list[float] = []
        self.basket_fired = 0        # epoch ms of the order that fired the current drop (0: none)
        self.favourite_fired = 0     # last favourite-category order the abandonment fired for (0: none)
        # pending negative-rating follow-ups: [due ms, rated order id, event_hash of the rating] (FOLLOW_UP_*),
        # by due time (checks scheduled before detector 2.1.0 have no hash; older code ignores it)
        self.follow_ups: list[list[Any]] = []
        self.follow_up_rated = 0     # event time of the latest rating that scheduled a follow-up
        self.late_deliveries: list[int] = []  # times of the latest late deliveries, ascending
        # recent service failures (detectors/cause.py): [time ms, kind code, order id] (FAILURE_*), ascending,
        # at most cause.MAX_FAILURES, none older than the last order less the cause lookback
        self.failures: list[list[Any]] = []
        # consent: [] (never set) or, per channel a consent event named ("all" included), back to
        # back: name, code, since_ms; code = consent_code(current, previous), each CONSENT_UNKNOWN,
        # CONSENT_GRANTED or CONSENT_WITHDRAWN (detectors/suppression.py reads and writes it)
        self.consent: list[Any] = []
        # suppression bookkeeping
        self.returned_at = 0         # epoch ms of the latest return after a win-back trigger
        self.winback_episode = 0     # silence episode (its last order ms) of the latest emitted win-back chain
        self.winback_starts: list[int] = []  # start times of the latest emitted win-back chains
        # [] or per kinds.COOLDOWN_KINDS (a kind's cooldown_slot): epoch ms of its latest emitted trigger
        self.last_emitted: list[int] = []
        # the latest emitted contacts, ascending: contact_entry(time ms, time-driven) (contact cap)
        self.contacts: list[int] = []
        # open service incidents: [suppression.order_digest of its order, ms its contact went out,
        # kinds.INCIDENT_KINDS index] (INCIDENT_*)
        self.incidents: list[list[Any]] = []

    def favourite_category(self) -> str | None:
        """Category with most orders; ties go to the most recently ordered one."""
        cats = self.categories
        if len(cats) == 1:
            return next(iter(cats))
        # packed entries compare like (count, last) tuples; max keeps the first of equals.
        return max(cats, key=cats.__getitem__) if cats else None

    def seen_hashes(self) -> list[int]:
        """The event-id hashes in `seen` as ints (event_hash), oldest first."""
        seen = self.seen
        return [int.from_bytes(seen[i:i + DIGEST], "big") for i in range(0, len(seen), ENTRY)]

    def to_list(self) -> list[Any]:
        cats = [[c, e >> CAT_SHIFT, e & CAT_LAST] for c, e in sorted(self.categories.items())]
        return [
            ENCODING_VERSION, self.partition, self.first_order, self.last_order, self.n_orders,
            self.amount_total, self.recent_orders, cats, self.silence_stage, self.frequency_fired,
            self.seen, self.last_event, self.order_days, self.recent_amounts, self.basket_fired,
            self.favourite_fired, self.follow_ups, self.follow_up_rated, self.late_deliveries, self.consent,
            self.returned_at, self.winback_episode, self.winback_starts, self.last_emitted, self.failures,
            _pack_contacts(self.contacts), self.incidents, self.contacted,
        ]

    def encode(self) -> bytes:
        return pack(self.to_list())

    @classmethod
    def from_list(cls, v: list[Any]) -> CustomerState:
        if v and v[0] == 1:
            return cls._from_v1(v)
        if not v or v[0] not in _VALUES:  # 2, 3 and 4 share the list layout; 5 and 6 add to it
            raise ValueError(f"unsupported customer state encoding {v[:1]!r}")
        if len(v) != _VALUES[v[0]]:
            raise ValueError(f"customer state encoding {v[0]} with {len(v)} values")
        st = cls()
        (version, st.partition, st.first_order, st.last_order, st.n_orders, st.amount_total,
         st.recent_orders, cats, st.silence_stage, st.frequency_fired, seen, st.last_event, st.order_days,
         amounts, st.basket_fired, st.favourite_fired, st.follow_ups, st.follow_up_rated, st.late_deliveries,
         consent, st.returned_at, st.winback_episode, st.winback_starts, st.last_emitted, *rest) = v
        if rest:
            st.failures = rest[0]
        if len(rest) > 1:
            st.contacts, st.incidents, st.contacted = _unpack_contacts(rest[1]), rest[2], rest[3]
        else:
            # Before 6 every fired stage made an order a return: an episode in flight at the upgrade ends so.
            st.contacted = (1 << st.silence_stage) - 1
        st.consent = consent if version >= 5 else upgrade_consent(consent)
        st.seen = seen if type(seen) is bytes else _digests(seen)
        st.amount_total = float(st.amount_total)
        st.recent_amounts = [float(a) for a in amounts]
        st.categories = {intern_category(c): cat_entry(n, t) for c, n, t in cats}
        st.favourite = st.favourite_category()
        return st

    @classmethod
    def _from_v1(cls, v: list[Any]) -> CustomerState:
        """Upgrade a version-1 record (changelogs written before version 2) on read.

        Version 1 has no distinct-day count: it is estimated as the distinct days
        among the kept recent orders plus the older orders (each counted as a
        day). Everything added in version 2 starts empty, as for a customer
        who had none of those signals yet.
        """
        st = cls()
        (_, st.partition, st.first_order, st.last_order, st.n_orders, st.amount_total,
         st.recent_orders, cats, st.silence_stage, st.frequency_fired, seen, st.last_event) = v
        st.seen = _digests(seen)
        st.amount_total = float(st.amount_total)
        st.categories = {intern_category(c): cat_entry(n, t) for c, n, t in cats}
        st.favourite = st.favourite_category()
        st.contacted = (1 << st.silence_stage) - 1  # as for versions 2-5
        older = max(0, st.n_orders - len(st.recent_orders))
        st.order_days = len({t // 86_400_000 for t in st.recent_orders}) + older if st.n_orders else 0
        return st

    @classmethod
    def decode(cls, raw: bytes) -> CustomerState:
        # Packed bytes never start with "[": JSON records (versions 1 and 2) still read.
        # A packed version 3 record holds `seen` as ints, like the JSON ones.
        return cls.from_list(orjson.loads(raw) if raw[:1] == b"[" else unpack(raw))

    def copy(self) -> CustomerState:
        """An independent copy: lists and dicts are new, and so are the lists they hold.

        Field by field rather than through the encoding: the live worker copies a state
        on every read (streams/live/state_store.py), and an encode/decode round trip cost
        ~27 µs. tests/unit/test_write_back.py fails if a field is left out or shared.
        """
        c = CustomerState.__new__(CustomerState)
        c.partition, c.first_order, c.last_order = self.partition, self.first_order, self.last_order
        c.n_orders, c.amount_total, c.recent_orders = self.n_orders, self.amount_total, self.recent_orders[:]
        c.categories = self.categories.copy()  # ints: immutable
        c.favourite, c.silence_stage, c.frequency_fired = self.favourite, self.silence_stage, self.frequency_fired
        c.contacted = self.contacted
        c.holdout_salt, c.holdout_value = self.holdout_salt, self.holdout_value
        c.seen, c.last_event, c.order_days = self.seen, self.last_event, self.order_days  # bytes: immutable
        c.recent_amounts, c.basket_fired = self.recent_amounts[:], self.basket_fired
        c.favourite_fired = self.favourite_fired
        c.follow_ups, c.follow_up_rated = [f[:] for f in self.follow_ups], self.follow_up_rated
        c.late_deliveries, c.consent, c.returned_at = self.late_deliveries[:], self.consent[:], self.returned_at
        c.failures = [f[:] for f in self.failures]
        c.winback_episode, c.winback_starts = self.winback_episode, self.winback_starts[:]
        c.last_emitted = self.last_emitted[:]
        c.contacts, c.incidents = self.contacts[:], [i[:] for i in self.incidents]
        return c

    __hash__ = None  # type: ignore[assignment]  # mutable record: equal by value, not hashable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomerState) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"CustomerState({self.to_list()!r})"


def upgrade_consent(old: list[int]) -> list[Any]:
    """The consent of an encoding 2-4 state (code, since for email, sms, push by position) by name.

    Those encodings wrote a consent event for `all` to the three records and kept no record
    of its own. Three records withdrawn at one instant are read as such an `all`, so a
    channel configured since (viber, messenger) follows it and a customer who opted out of
    everything stays out. Three grants at one instant are not: they may be three choices
    made on one form, and a grant must be given, not inferred.
    """
    out: list[Any] = []
    for i, name in enumerate(_CONSENT_CHANNELS_V4):
        code, since = old[2 * i: 2 * i + 2] if len(old) >= 2 * i + 2 else (0, 0)
        if code:  # 0: no event named it
            out += [name, code, since]
    if (len(out) == 9 and out[1] % 3 == out[4] % 3 == out[7] % 3 == CONSENT_WITHDRAWN
            and out[2] == out[5] == out[8]):
        out += ["all", CONSENT_WITHDRAWN, out[2]]
    return out


def _digests(hashes: list[int]) -> bytes:
    """`seen` from the event-id hashes of a state before version 4: content unknown."""
    return b"".join(h.to_bytes(DIGEST, "big") + UNKNOWN_CONTENT for h in hashes)
