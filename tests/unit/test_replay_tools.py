"""Replay for data engineers, on files: sources, reorder buffer, windows, rejects, diff, shadow, explain, progress."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.engine import Engine
from detectors.envelope import iso_ms
from detectors.fold import Fold
from detectors.partition import PartitionCore
from schemas.decode import EventDecoder, to_epoch_ms
from schemas.errors import CommandError
from streams.dev.samples import SampleGenerator
from streams.offline.diff import TriggerSet, diff, render
from streams.offline.replay import Replayer, summary_table
from streams.offline.sources import DirectorySource, FileSource
from streams.progress import Progress
from tests.unit.test_cli import cli

END = to_epoch_ms("2026-03-01T00:00:00Z")
DAY = 86_400_000


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return SampleGenerator(seed=3, customers=30).history(END, days=90)


def _write(path: Path, events: list[Any]) -> Path:
    data = b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _run(items: Any, **kw: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Replay `items(decoder)` through the generic item loop, or a source (FileSource: the line loop)."""
    out: dict[str, dict[str, Any]] = {}
    r = Replayer(on_trigger=lambda ce, _d: out.__setitem__(ce["id"], ce), **kw)
    return (r.run_source(items) if isinstance(items, FileSource) else r.run(items(r.decoder()))), out


def test_a_directory_of_files_replays_like_the_single_sorted_file(tmp_path, history):
    single = _write(tmp_path / "all.jsonl", history)
    folder = tmp_path / "logs"
    folder.mkdir()
    _write(folder / "orders.jsonl", [e for e in history if e["type"] == "order"])
    _write(folder / "deliveries.jsonl.gz", [e for e in history if e["type"] == "delivery"])
    _write(folder / "other.ndjson", [e for e in history if e["type"] not in ("order", "delivery")])
    (folder / "notes.txt").write_text("not a log")
    src = DirectorySource(folder)
    assert [Path(f.path).name for f in src.files] == ["deliveries.jsonl.gz", "orders.jsonl", "other.ndjson"]
    merged_ts = [i.ts for i in src.items(Replayer().decoder())]
    assert merged_ts == sorted(merged_ts)  # merged in event-time order
    res_a, a = _run(FileSource(single).items, until_ms=END)
    res_b, b = _run(src.items, until_ms=END)
    assert a == b
    assert a
    assert res_a.events == res_b.events == len(history)


def test_reorder_buffer_restores_order_within_the_lateness_and_reports_the_rest(tmp_path, history):
    rng = random.Random(5)
    shuffled = list(history)
    for i in range(0, len(shuffled), 8):  # shuffle within small windows: a few hours out of order at most
        window = shuffled[i:i + 8]
        rng.shuffle(window)
        shuffled[i:i + 8] = window
    _, expected = _run(FileSource(_write(tmp_path / "s.jsonl", history)).items, until_ms=END)
    messy = FileSource(_write(tmp_path / "m.jsonl", shuffled))
    res, got = _run(messy.items, until_ms=END, lateness_ms=30 * DAY)
    assert res.reordered > 0
    assert res.late_count == 0
    assert got == expected
    res0, _ = _run(messy.items, until_ms=END, lateness_ms=0)
    assert res0.late_count > 0  # no buffer: out-of-order events are applied as late and reported
    assert res0.late[0][3] > 0
    assert "arrived later than the allowed lateness" in summary_table(res0)


def test_from_and_until_bound_the_window_and_count_what_is_left_out(tmp_path, history):
    log = FileSource(_write(tmp_path / "h.jsonl", history))
    until = END - 30 * DAY
    frm = END - 60 * DAY
    res, got = _run(log.items, from_ms=frm, until_ms=until)
    assert res.after_until == sum(1 for e in history if to_epoch_ms(e["occurred_at"]) > until)
    assert res.events == len(history) - res.after_until
    assert res.before_from > 0
    assert all(iso_ms(frm) <= ce["data"]["event_time"] <= iso_ms(until) for ce in got.values())
    assert res.written == len(got)


def test_invalid_lines_are_rejected_with_file_line_and_reason(tmp_path, history):
    lines: list[Any] = [history[0], b"{nope", {"type": "order"}, history[1], b"[1]"]
    log = _write(tmp_path / "bad.jsonl.gz", lines)
    rejects = tmp_path / "rej.jsonl"
    r = cli("replay", str(log), "--out", str(tmp_path / "t.jsonl"), "--rejects", str(rejects))
    assert r.returncode == 1, r.stderr  # something was rejected: the exit code says so
    rows = [orjson.loads(x) for x in rejects.read_bytes().splitlines()]
    assert [(x["line"], x["reason"]) for x in rows] == [(2, "malformed_json"), (3, "schema"), (5, "not_an_object")]
    assert rows[0]["raw"] == "{nope"
    assert rows[0]["source"] == str(log)
    assert "rejects:" in r.stderr
    assert "malformed_json" in r.stderr
    clean = _write(tmp_path / "ok.jsonl", history[:5])
    ok = cli("replay", str(clean), "--out", str(tmp_path / "t2.jsonl"))
    assert ok.returncode == 0, ok.stderr
    assert "rejects: none" in ok.stderr


def _result(res: Any) -> tuple[Any, ...]:
    return (res.events, dict(res.by_type), dict(res.triggers), res.written, res.before_from, res.after_until,
            dict(res.rejects), [(r.position, r.reason, r.raw, r.ts) for r in res.reject_samples],
            res.late_count, res.late, res.clock)


def test_a_file_replays_the_same_through_the_line_loop_as_through_its_items(tmp_path, history):
    """run_source reads a file in the compiled line loop; it must agree with the generic item loop."""
    rng = random.Random(5)
    lines: list[Any] = list(history)
    for i in sorted(rng.sample(range(len(lines)), 6), reverse=True):  # untidy: bad, blank and late lines
        lines.insert(i, rng.choice([b"{nope", b"   ", b"", b"[1]", {"type": "order"}]))
    lines[40], lines[400] = lines[400], lines[40]
    # a valid event with whitespace around it and a CRLF ending: read as the stripped line
    lines.insert(200, b"  " + orjson.dumps({**history[200], "event_id": "padded-1"}) + b" \r")
    for suffix in (".jsonl", ".jsonl.gz"):
        log = _write(tmp_path / f"u{suffix}", lines)
        kw = {"from_ms": END - 60 * DAY, "until_ms": END - 10 * DAY}
        by_items, a = _run(FileSource(log).items, **kw)
        by_lines, b = _run(FileSource(log), **kw)
        assert b == a
        assert _result(by_lines) == _result(by_items)
        assert by_lines.rejected == sum(1 for x in lines if x in (b"{nope", b"[1]", {"type": "order"}))
        assert min(by_lines.rejected, by_lines.late_count, by_lines.after_until, by_lines.before_from) > 0


def test_the_line_loop_judges_the_size_limit_on_the_stripped_line(history):
    """The loop decodes a line with its newline; the limit must still count the stripped bytes."""
    ok = orjson.dumps(history[0])
    big = orjson.dumps({**history[1], "comment": "x"})
    decoder = EventDecoder(max_message_bytes=len(ok))
    fold = Fold(PartitionCore(Engine(), {}), "v")
    rejects: list[tuple[int, str]] = []
    n = fold.lines([ok + b"\n", b" " + ok + b"\r\n", big + b"\n", b"\n"], decoder,
                   lambda number, _line, exc, _last: rejects.append((number, exc.reason)))
    assert n == 2
    assert fold.by_type == {(history[0]["type"], "accepted"): 1, (history[0]["type"], "duplicate"): 1}
    assert rejects == [(3, "too_large")]


def test_a_broken_file_is_a_read_error_but_a_failing_sink_is_not(tmp_path, history):
    data = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in history))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CommandError, match=f"cannot read {broken}"):
        Replayer().run_source(FileSource(broken))

    def full(_ce: Any, _d: Any) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        Replayer(on_trigger=full).run_source(FileSource(_write(tmp_path / "ok.jsonl", history)))


def test_summary_table_counts_events_by_type_and_outcome_and_triggers_by_kind(tmp_path, history):
    dup = [*history[:50], history[10]]
    res, got = _run(FileSource(_write(tmp_path / "d.jsonl", dup)).items, until_ms=END)
    text = summary_table(res)
    assert res.by_type[(history[10]["type"], "duplicate")] == 1
    assert "duplicate" in text
    assert "events:" in text
    assert "triggers:" in text
    assert sum(res.triggers.values()) == len(got)


def _ce(cid: str, kind: str, stage: str, time: str, **evidence: Any) -> dict[str, Any]:
    return {"id": f"{cid}-{kind}-{stage}", "subject": cid,
            "data": {"customer_id": cid, "kind": kind, "stage": stage, "event_time": time, "decision": "emit",
                     "evidence": evidence, "config_version": "x"}}


def test_diff_reports_added_removed_and_changed_triggers_by_id():
    a, b = TriggerSet("A"), TriggerSet("B")
    a.add(_ce("c1", "silence", "at_risk", "2026-01-08T00:00:00.000Z", days=7))
    a.add(_ce("c2", "negative_rating", "now", "2026-01-02T00:00:00.000Z"))
    b.add({**_ce("c1", "silence", "at_risk", "2026-01-06T00:00:00.000Z", days=5)})
    b.add(_ce("c3", "silence", "at_risk", "2026-01-06T00:00:00.000Z", days=5))
    same = _ce("c4", "delivery_failed", "now", "2026-01-03T00:00:00.000Z")
    a.add(same)
    b.add({**same, "data": {**same["data"], "config_version": "y"}})  # only the config version differs
    d = diff(a, b)
    assert [c["subject"] for c in d.added] == ["c3"]
    assert [c["subject"] for c in d.removed] == ["c2"]
    assert [(x[0]["subject"], x[2]) for x in d.changed] == [
        ("c1", [("event_time", "2026-01-08T00:00:00.000Z", "2026-01-06T00:00:00.000Z"), ("evidence.days", 7, 5)])]
    assert d.unchanged == 1
    assert not diff(a, a).added
    assert diff(a, a).identical
    assert len(diff(a, b, ignore=()).changed) == 2  # --strict: the config version counts too
    text = render(d)
    assert "added 1, removed 1, changed 1, unchanged 1" in text
    assert "evidence.days: 7 -> 5" in text


def test_diff_counts_a_copy_once_and_reports_one_id_for_two_triggers_as_a_conflict():
    """A line repeating a trigger exactly is an at-least-once copy; the same id with other content
    is two triggers sharing an id (files written before detector 2.1.0): never called a copy."""
    first = _ce("c1", "negative_rating", "now", "2026-01-02T00:00:00.000Z", order_id="o1")
    first["data"]["caused_by_event_id"] = "r1"
    re_rated = {**first, "data": {**first["data"], "event_time": "2026-01-05T00:00:00.000Z",
                                  "caused_by_event_id": "r2"}}
    a, b = TriggerSet("A"), TriggerSet("B")
    for ce in (first, dict(first)):
        a.add(ce)
        b.add(ce)
    assert (a.copies, a.conflicts) == (1, [])
    assert diff(a, b).identical
    b.add(re_rated)
    assert (len(b), b.copies, b.conflicts) == (1, 1, [(first, re_rated)])
    d = diff(a, b)
    assert (d.unchanged, d.changed, d.identical) == (1, [], False)  # compared by the first of the id
    body = d.to_json()
    assert body["counts"]["conflicts"] == 1
    assert body["b"] == {"label": "B", "triggers": 1, "copies": 1, "conflicts": 1}
    assert body["conflicts"][0]["side"] == "b"
    assert body["conflicts"][0]["fields"] == [
        {"field": "caused_by_event_id", "first": "r1", "other": "r2"},
        {"field": "event_time", "first": "2026-01-02T00:00:00.000Z", "other": "2026-01-05T00:00:00.000Z"}]
    text = render(d)
    assert "conflict: B has 1 id(s) shared by different triggers" in text
    assert "caused_by_event_id: r1 -> r2" in text
    assert "redelivered" not in text
    assert "note: B holds 1 exact copies of triggers read before" in text


def test_diff_and_shadow_commands_on_real_files(tmp_path, history):
    log = _write(tmp_path / "h.jsonl", history)
    until = iso_ms(END)
    base, cand = tmp_path / "base.jsonl", tmp_path / "cand.jsonl"
    assert cli("replay", str(log), "--until", until, "--out", str(base)).returncode == 0
    env = {"CHURN_DETECTOR_SILENCE_WINDOWS": "grocery=4d/9d"}
    assert cli("replay", str(log), "--until", until, "--out", str(cand), env=env).returncode == 0
    same = cli("diff", str(base), str(base))
    assert same.returncode == 0
    assert "added 0, removed 0, changed 0" in same.stdout
    d = cli("diff", str(base), str(cand), "--json")
    assert d.returncode == 1
    body = orjson.loads(d.stdout)
    assert body["counts"]["added"] > 0
    assert body["counts"]["changed"] > 0
    out_dir = tmp_path / "shadow"
    out_dir.mkdir()
    s = cli("shadow", str(log), "--until", until, "--set", "silence_windows=grocery=4d/9d", "--json",
            "--out-dir", str(out_dir))
    assert s.returncode == 1, s.stderr
    assert orjson.loads(s.stdout)["counts"] == body["counts"]  # shadow == two replays and a diff
    assert (out_dir / "candidate.jsonl").read_bytes()
    assert (out_dir / "baseline.jsonl").read_bytes()
    text = cli("shadow", str(log), "--until", until, "--set", "silence_windows=grocery=4d/9d")
    assert "silence/at_risk" in text.stdout
    assert "event_time:" in text.stdout
    nothing = cli("shadow", str(log))
    assert nothing.returncode == 2
    assert "needs a candidate" in nothing.stderr


def test_explain_tells_one_customers_story(tmp_path, history):
    log = _write(tmp_path / "h.jsonl", history)
    out = tmp_path / "t.jsonl"
    cli("replay", str(log), "--until", iso_ms(END), "--out", str(out))
    triggers = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    cid = next(t["subject"] for t in triggers if t["data"]["kind"] == "silence")
    mine = {t["id"] for t in triggers if t["subject"] == cid}
    r = cli("explain", cid, str(log), "--until", iso_ms(END))
    assert r.returncode == 0, r.stderr
    assert f"customer {cid}: " in r.stdout
    assert "deadline passed without an order" in r.stdout
    assert "why:" in r.stdout
    assert "state:" in r.stdout
    j = cli("explain", cid, str(log), "--until", iso_ms(END), "--json")
    body = orjson.loads(j.stdout)
    ids = {e["trigger"]["id"] for e in body["entries"] if e["what"] == "deadline"}
    ids |= {t["id"] for e in body["entries"] if e["what"] == "event" for t in e["triggers"]}
    assert ids == mine  # explain shows exactly what replay decided for this customer
    events = [e for e in body["entries"] if e["what"] == "event"]
    assert len(events) == sum(1 for h in history if h["customer_id"] == cid)
    assert all(e["state"]["orders"] >= 0 for e in events)
    missing = cli("explain", "nobody", str(log))
    assert missing.returncode == 1
    assert "no event of customer nobody" in missing.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_rate_and_eta_on_a_terminal_only():
    ticks = iter([0.0, 2.0, 2.1, 4.0, 4.0])
    tty = _Tty()
    p = Progress(lambda: (50.0, 100.0), label="x", stream=tty, clock=lambda: next(ticks))
    p.update(1000)
    p.close(2000)
    text = tty.getvalue()
    assert "500 events/s" in text
    assert "50.0%" in text
    assert "ETA 00:02" in text
    piped = io.StringIO()
    q = Progress(lambda: (1.0, 2.0), stream=piped)
    q.update(10, force=True)
    q.close(10)
    assert piped.getvalue() == ""
    r = cli("replay", "-", "--progress", "always")
    assert "events/s" in r.stderr
