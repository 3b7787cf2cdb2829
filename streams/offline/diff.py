"""Compare two sets of triggers: what a configuration change (or a code change) does.

Triggers are matched by id. The id is a hash of the trigger's identity:
customer, kind, episode, stage and the event (or rating) that caused it
(detectors/envelope.py), never of when it fired or what evidence it carries, so
the same trigger under two configurations has the same id even when it fires at
another time or with other evidence:

    added      id only in B          (B fires a trigger A does not)
    removed    id only in A
    changed    same id, payload differs (the fields that differ are listed)

`config_version` is left out of the comparison by default: it differs
whenever the configurations differ, which is the point of a shadow run.

Within one file, a line with an id already read is either a copy (the same
trigger written again by at-least-once delivery: equal content, counted once)
or a conflict: one id for two different triggers. Ids are unique per trigger,
so a conflict means a file written before detector 2.1.0 (whose ids left out
the causing event: a re-rated order's two ratings shared one) or a bug. A
conflict is reported with the fields that differ; the first trigger read
under the id is the one compared, as a consumer deduplicating by id keeps it,
and the result is never "identical".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.errors import CommandError
from streams.offline.sources import FileSource

IGNORED = ("config_version",)


@dataclass
class TriggerSet:
    label: str
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    copies: int = 0     # lines repeating a trigger already read, content and all (at-least-once copies)
    # (the trigger kept under the id, a different one read later under the same id)
    conflicts: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def add(self, ce: dict[str, Any]) -> None:
        first = self.by_id.get(ce["id"])
        if first is None:
            self.by_id[ce["id"]] = ce
        elif first == ce:
            self.copies += 1
        else:
            self.conflicts.append((first, ce))

    def __len__(self) -> int:
        return len(self.by_id)


def load_triggers(path: str) -> TriggerSet:
    """Read a JSON Lines file of trigger CloudEvents (as written by replay or read off the topic)."""
    out = TriggerSet(path)
    for n, line in FileSource(path).lines():
        try:
            ce = orjson.loads(line)
            if not isinstance(ce, dict) or not isinstance(ce.get("data"), dict) or "id" not in ce:
                raise ValueError("not a trigger CloudEvent (needs id and data)")
        except ValueError as exc:
            raise CommandError(f"{path}:{n}: {exc}") from None
        out.add(ce)
    return out


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, value


def changed_fields(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = IGNORED) -> list[tuple[str, Any, Any]]:
    """(dotted field of `data`, value in A, value in B) for every payload field that differs."""
    skip = set(ignore)
    fa = {k: v for k, v in _flatten(a["data"]) if k not in skip}
    fb = {k: v for k, v in _flatten(b["data"]) if k not in skip}
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]


@dataclass
class Diff:
    a: TriggerSet
    b: TriggerSet
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any], list[tuple[str, Any, Any]]]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def identical(self) -> bool:
        """No trigger added, removed or changed, and no id that stands for two triggers on either side."""
        return not (self.added or self.removed or self.changed or self.a.conflicts or self.b.conflicts)

    def by_kind(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for what, items in (("added", self.added), ("removed", self.removed)):
            for ce in items:
                out.setdefault(_label(ce), Counter())[what] += 1
        for ce, _, _ in self.changed:
            out.setdefault(_label(ce), Counter())["changed"] += 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": _side(self.a),
            "b": _side(self.b),
            "counts": {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                       "unchanged": self.unchanged, "conflicts": len(self.a.conflicts) + len(self.b.conflicts)},
            "by_kind": {k: dict(v) for k, v in self.by_kind().items()},
            "added": self.added,
            "removed": self.removed,
            "changed": [_fields(a, fields) for a, _, fields in self.changed],
            "conflicts": [{"side": side, **_fields(first, changed_fields(first, other, ()), ("first", "other"))}
                          for side, s in (("a", self.a), ("b", self.b)) for first, other in s.conflicts],
        }


def _side(s: TriggerSet) -> dict[str, Any]:
    return {"label": s.label, "triggers": len(s), "copies": s.copies, "conflicts": len(s.conflicts)}


def _fields(ce: dict[str, Any], fields: list[tuple[str, Any, Any]],
            names: tuple[str, str] = ("a", "b")) -> dict[str, Any]:
    d = ce["data"]
    x, y = names
    return {"id": ce["id"], "customer_id": d["customer_id"], "kind": d["kind"], "stage": d["stage"],
            "fields": [{"field": f, x: vx, y: vy} for f, vx, vy in fields]}


def _label(ce: dict[str, Any]) -> str:
    d = ce["data"]
    return f"{d['kind']}/{d['stage']}" if d.get("stage") not in (None, "now") else str(d["kind"])


def _order(ce: dict[str, Any]) -> tuple[str, str, str]:
    d = ce["data"]
    return (str(d.get("event_time", "")), str(d.get("customer_id", "")), ce["id"])


def diff(a: TriggerSet, b: TriggerSet, ignore: Iterable[str] = IGNORED) -> Diff:
    ignore = tuple(ignore)
    out = Diff(a, b)
    for tid, ce in a.by_id.items():
        other = b.by_id.get(tid)
        if other is None:
            out.removed.append(ce)
            continue
        fields = changed_fields(ce, other, ignore)
        if fields:
            out.changed.append((ce, other, fields))
        else:
            out.unchanged += 1
    out.added = [ce for tid, ce in b.by_id.items() if tid not in a.by_id]
    out.added.sort(key=_order)
    out.removed.sort(key=_order)
    out.changed.sort(key=lambda t: _order(t[0]))
    return out


def _decisions(s: TriggerSet) -> str:
    counts = Counter(str(ce["data"].get("decision", "?")) for ce in s.by_id.values())
    return "".join(f", {n} {d}" for d, n in sorted(counts.items()))


def _line(mark: str, ce: dict[str, Any]) -> str:
    d = ce["data"]
    return (f"{mark} {str(d.get('event_time', ''))[:19].replace('T', ' ')}  {d['customer_id']:<12} "
            f"{_label(ce):<20} {d.get('decision', ''):<10} id={ce['id'][:12]}")


def render(result: Diff, limit: int = 50) -> str:
    """Readable report: totals, a table by kind, then the first `limit` triggers of each group."""
    lines = [
        f"A: {result.a.label} ({len(result.a)} triggers{_decisions(result.a)})",
        f"B: {result.b.label} ({len(result.b)} triggers{_decisions(result.b)})",
        f"added {len(result.added)}, removed {len(result.removed)}, changed {len(result.changed)}, "
        f"unchanged {result.unchanged}",
    ]
    lines += _by_kind_table(result)
    for title, mark, items in (("added (only in B)", "+", result.added), ("removed (only in A)", "-", result.removed)):
        if items:
            lines.append(f"{title}:")
            lines.extend(_line(mark, ce) for ce in items[:limit])
            lines += _more(len(items), limit)
    if result.changed:
        lines.append("changed (same id):")
        for a, _, fields in result.changed[:limit]:
            lines.append(_line("~", a))
            lines.extend(f"      {f}: {_show(va)} -> {_show(vb)}" for f, va, vb in fields)
        lines += _more(len(result.changed), limit)
    for s in (result.a, result.b):
        lines += _conflicts(s, limit)
    for s in (result.a, result.b):
        if s.copies:
            lines.append(f"note: {s.label} holds {s.copies} exact copies of triggers read before (same id, same "
                         "content: at-least-once delivery); each trigger counts once")
    return "\n".join(lines)


def _by_kind_table(result: Diff) -> list[str]:
    kinds = result.by_kind()
    if not kinds:
        return []
    width = max(len(k) for k in kinds)
    return [f"  {'kind':<{width}}  {'added':>7} {'removed':>7} {'changed':>7}"] + [
        f"  {k:<{width}}  {c['added']:>7} {c['removed']:>7} {c['changed']:>7}" for k, c in kinds.items()]


def _more(n: int, limit: int) -> list[str]:
    return [f"  ... and {n - limit} more"] if n > limit else []


def _conflicts(s: TriggerSet, limit: int) -> list[str]:
    if not s.conflicts:
        return []
    lines = [f"conflict: {s.label} has {len(s.conflicts)} id(s) shared by different triggers "
             "(ids are unique per trigger: a file written before detector 2.1.0, or a bug); "
             "the first trigger of each id is the one compared:"]
    for first, other in s.conflicts[:limit]:
        lines.append(_line("!", first))
        lines.extend(f"      {f}: {_show(va)} -> {_show(vb)}" for f, va, vb in changed_fields(first, other, ()))
    return lines + _more(len(s.conflicts), limit)


def _show(v: Any) -> str:
    return "(absent)" if v is None else orjson.dumps(v).decode() if not isinstance(v, str) else v
