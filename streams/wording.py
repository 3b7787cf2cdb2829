"""A trigger in words: why it fired, and one line for a terminal (`demo`, `explain`); and the kinds table of the docs.

The sentences are the registry's reason templates (detectors/kinds.py), filled
from the trigger's evidence, its `stage` and its `group`, so a new kind is worded
where it is registered. A silence that suspects the service names the failures
after its sentence. A kind this code does not know (a consumer of a newer
detector) is worded as its evidence, `key=value, ...`.

What it returns comes from triggers, which carry ids and categories from the
input: callers that print it pass it through streams/terminal.py.
"""

from __future__ import annotations

from typing import Any

from detectors.config_values import DAY_MS, format_duration
from detectors.kinds import KINDS, MEASUREMENT, NONE, NOW, Kind, kind

_COLOURS = {"high": "\033[31m", "medium": "\033[33m", "low": "\033[36m", "info": "\033[32m"}


def evidence_text(evidence: dict[str, Any]) -> str:
    """The evidence as `key=value, ...`: the wording of a kind without a template."""
    return ", ".join(f"{k}={v}" for k, v in evidence.items())


def reason(ce: dict[str, Any]) -> str:
    """Why a trigger fired, in words, from its evidence.

    Raises KeyError, TypeError or ValueError when the evidence lacks what the kind's
    template names or holds another type (a trigger of another detector version).
    """
    d = ce["data"]
    ev = d["evidence"]
    k = kind(d["kind"])
    template = k.reason(d["stage"]) if k is not None else None
    if template is None:
        return evidence_text(ev)
    why = template.format_map({**ev, "stage": d["stage"], "group": d.get("group")})
    failures = d.get("service_failures")
    if failures:  # suspected cause: service (an apology, not a discount)
        why += ", after " + ", ".join(f"{f['kind'].replace('_', ' ')} (order {f['order_id']})" for f in failures)
    return why


def label(ce: dict[str, Any]) -> str:
    """`kind/stage`, or the kind alone for a trigger without a stage of its own (`now`)."""
    d = ce["data"]
    return f"{d['kind']}/{d['stage']}" if d["stage"] != NOW else str(d["kind"])


def describe(ce: dict[str, Any], colour: bool = False) -> str:
    """One readable line for a trigger CloudEvent."""
    d = ce["data"]
    why = reason(ce)
    head = f"{d['event_time'][:19].replace('T', ' ')}  {d['customer_id']:<11} {label(ce):<18} {d['severity']:<6}"
    if colour:
        head = f"{_COLOURS.get(d['severity'], '')}{head}\033[0m"
    return f"{head} {why}  [{d['family']}, fav={d['favourite_category'] or '-'}]"


# -- the kinds table of docs/triggers.md ----------------------------------------------

#: The line above the table in docs/triggers.md; the table ends at the first blank line after it.
TABLE_MARK = "<!-- kinds: written by `make docs-kinds` (scripts/kinds_table.py) from detectors/kinds.py; edit there -->"


def _cooldown(k: Kind) -> str:
    if k.cooldown_slot == NONE:
        return "never suppressed" if k.family == MEASUREMENT else "none"
    if not k.cooldown_ms:
        return "none (configurable)"
    return f"{k.cooldown_ms // DAY_MS} d" if k.cooldown_ms % DAY_MS == 0 else format_duration(k.cooldown_ms)


def _severity(k: Kind) -> str:
    if len(set(k.severities.values())) == 1:
        return k.severity
    return ", ".join(f"`{stage}` {severity}" for stage, severity in k.severities.items())


def kinds_table() -> str:
    """The registry as the Markdown table of docs/triggers.md (## Kinds), its mark line first."""
    rows = [TABLE_MARK, "| kind | stage(s) | family | severity | cooldown | time-driven? | fires when |",
            "|---|---|---|---|---|---|---|"]
    for k in KINDS:
        stages = ", ".join(f"`{s}`" for s in k.stages) + (f" {k.stage_note}" if k.stage_note else "")
        rows.append(f"| `{k.name}` | {stages} | {k.family} | {_severity(k)} | {_cooldown(k)} | {k.time_driven} "
                    f"| {k.description} |")
    return "\n".join(rows)


def with_kinds_table(doc: str) -> str:
    """docs/triggers.md with its kinds table written again from the registry."""
    start = doc.index(TABLE_MARK)
    end = doc.find("\n\n", start)
    return doc[:start] + kinds_table() + (doc[end:] if end >= 0 else "\n")
