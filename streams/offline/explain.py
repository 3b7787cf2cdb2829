"""`explain CUSTOMER LOG`: one customer's timeline through the detector, in words.

It runs the full replay (the same Replayer, the same clock, so what it shows
is exactly what `replay` decides) and watches one customer: every event of
theirs with its outcome, the state after it and the next deadline, every
trigger with why it fired (reason codes, evidence) or why it was suppressed,
and every line naming them that was rejected, with its reason.

What it prints comes from the log, so it goes out through streams/terminal.py:
no control character from an event reaches the terminal.
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors import Decision, PartitionCore
from detectors.envelope import iso_ms, to_cloudevent
from detectors.snapshot import summary
from schemas import Event
from streams.offline.replay import Replayer
from streams.offline.sources import Reject
from streams.terminal import printable
from streams.wording import evidence_text, label, reason

DAY_MS = 86_400_000


class Timeline:
    """Observer for a Replayer: records what happens to one customer."""

    def __init__(self, replayer: Replayer, customer_id: str) -> None:
        self.replayer = replayer
        self.customer_id = customer_id
        self.entries: list[dict[str, Any]] = []
        replayer.observer = self
        replayer.on_reject = self.rejected

    def __call__(self, ev: Event | None, outcome: str, decisions: list[Decision], core: PartitionCore) -> None:
        cid = self.customer_id
        if ev is not None and ev.customer_id != cid:
            return
        mine = [d for d in decisions if d.customer_id == cid]
        if ev is None:
            for i, d in enumerate(mine, 1):  # deadlines fired by the clock; the state is the one after the last
                self.entries.append({"at": iso_ms(d.time_ms), "what": "deadline", "trigger": self._trigger(d),
                                     "state": self._state(core) if i == len(mine) else None})
            return
        # An order first fires the customer's own deadlines that passed before it.
        for d in (d for d in mine if d.caused_by is None and d.time_ms <= ev.ts):
            self.entries.append({"at": iso_ms(d.time_ms), "what": "deadline", "trigger": self._trigger(d),
                                 "state": None})
        caused = [self._trigger(d) for d in mine if not (d.caused_by is None and d.time_ms <= ev.ts)]
        self.entries.append({"at": iso_ms(ev.ts), "what": "event", "type": ev.type, "event_id": ev.event_id,
                             "outcome": outcome, "event": ev.data, "triggers": caused, "state": self._state(core)})

    def rejected(self, r: Reject) -> None:
        """A line that is not a valid event: kept when it names this customer."""
        try:
            obj = orjson.loads(r.raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict) or obj.get("customer_id") != self.customer_id:
            return
        type_ = obj.get("type")
        self.entries.append({"what": "rejected", "where": r.where(), "type": type_ if isinstance(type_, str) else None,
                             "reason": r.reason, "message": r.message, "raw": r.raw.decode("utf-8", "replace")})

    def _trigger(self, d: Decision) -> dict[str, Any]:
        return to_cloudevent(d, self.replayer.version)

    def _state(self, core: PartitionCore) -> dict[str, Any] | None:
        st = core.store.get(self.customer_id)
        if st is None:
            return None
        row = summary(self.replayer.cfg, self.customer_id, st, core.clock)
        nxt = self.replayer.engine.next_deadline(st)
        row["next_deadline"] = iso_ms(nxt) if nxt is not None else None
        return row


def _event_text(e: dict[str, Any]) -> str:
    d = e["event"]
    t = e["type"]
    if t == "order":
        amount = f"{d.get('amount')} {d.get('currency', '')}".rstrip()
        return f"{d.get('category')} {amount} (order {d.get('order_id')})"
    if t == "delivery":
        late = ""
        if "promised_at" in d and "delivered_at" in d:
            late = f", promised {d['promised_at'][11:16]}, delivered {d['delivered_at'][11:16]}"
        return f"{d.get('status')}{late} (order {d.get('order_id')})"
    if t == "courier_rating":
        return f"rating {d.get('rating')}/5 (order {d.get('order_id')})"
    if t == "consent":
        return f"{d.get('channel')} {'granted' if d.get('granted') else 'withdrawn'}"
    return ""


def _state_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return ""
    parts = [f"{s['orders']} orders"]
    if s["orders"]:
        parts += [f"favourite {s['favourite_category']}", f"avg {s['average_order_value']}",
                  f"{s['days_since_last_order']:g} d since last order"]
    parts.append(f"silence stage {s['silence_stage'] or '-'}")
    parts.append(f"risk {s['risk']:.2f}")
    nxt = s.get("next_deadline")
    parts.append(f"next deadline {nxt[:19].replace('T', ' ')}" if nxt else "no pending deadline")
    return "    state: " + ", ".join(parts)


def _trigger_text(ce: dict[str, Any], indent: str = "    ") -> list[str]:
    d = ce["data"]
    verdict = "EMITTED" if d["decision"] == "emit" else f"SUPPRESSED ({d.get('suppression_reason')})"
    evidence = evidence_text(d["evidence"])
    try:
        why = reason(ce)
    except (KeyError, TypeError, ValueError):  # a kind whose evidence reads differently
        why = evidence
    if why == evidence:  # no sentence for this kind: say the codes
        why = "; ".join(c.replace("_", " ") for c in d["reason_codes"])
    cause = f", suspected cause {d['suspected_cause']}" if "suspected_cause" in d else ""
    return [f"{indent}-> {label(ce)} {verdict}, severity {d['severity']}, family {d['family']}{cause}",
            f"{indent}   why: {why}",
            f"{indent}   reason codes: {', '.join(d['reason_codes'])}; evidence: {evidence}",
            f"{indent}   id {ce['id']}, episode {d['episode_id']}"]


def render(customer_id: str, entries: list[dict[str, Any]], clock: int) -> str:
    """The timeline as text for a terminal: every line passes through printable()."""
    events = [e for e in entries if e["what"] == "event"]
    triggers = [t for e in entries if e["what"] != "rejected"
                for t in ([e["trigger"]] if e["what"] == "deadline" else e["triggers"])]
    emitted = sum(1 for t in triggers if t["data"]["decision"] == "emit")
    rejected = sum(1 for e in entries if e["what"] == "rejected")
    lines = [f"customer {customer_id}: {len(events)} events, {len(triggers)} triggers "
             f"({emitted} emitted, {len(triggers) - emitted} suppressed)"
             f"{f', {rejected} rejected lines' if rejected else ''}; clock at the end {iso_ms(clock)}"]
    if not events:
        lines.append("  (no event of this customer in the log)")
    for e in entries:
        if e["what"] == "rejected":
            lines.append(f"{'(not applied)':<19}  {e['type'] or '?':<14} rejected  {e['reason']} at {e['where']}: "
                         f"{e['message']}")
            lines.append(f"    raw: {e['raw']}")
            continue
        at = e["at"][:19].replace("T", " ")
        if e["what"] == "deadline":
            lines.append(f"{at}  deadline passed without an order")
            lines.extend(_trigger_text(e["trigger"]))
            if e["state"]:
                lines.append(_state_text(e["state"]))
            continue
        lines.append(f"{at}  {e['type']:<14} {e['outcome']:<9} {_event_text(e)}  [{e['event_id']}]")
        for t in e["triggers"]:
            lines.extend(_trigger_text(t))
        lines.append(_state_text(e["state"]))
    return "\n".join(printable(line) for line in lines if line)
