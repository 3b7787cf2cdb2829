"""Input that cannot poison the clock: what replay and explain do with lines no live worker would apply,
and with the odd bytes real files carry.

One line dated 2099 used to move replay's event-time clock 73 years ahead and
fire every customer's silence, `lost` included. Replay and explain now bound
the future as the live worker does: from `--now` (default: the wall clock when
the run starts) plus max_future_skew; later lines are rejected with their raw
bytes and reason. The past is not bounded, so an old log replays whole.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.engine import Engine
from detectors.envelope import iso_ms
from detectors.fold import Fold
from detectors.partition import PartitionCore
from schemas.decode import UTF8_BOM, EventDecoder, to_epoch_ms
from streams.dev.produce import route
from streams.dev.samples import SampleGenerator
from streams.offline.jsonl import read_lines
from streams.offline.sources import FileSource
from streams.settings import Settings
from streams.terminal import printable, printable_json
from tests.unit.test_cli import cli
from tests.unit.test_metrics import T0, make, sample

END = to_epoch_ms("2026-03-01T00:00:00Z")


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return SampleGenerator(seed=5, customers=20).history(END, days=60)


def _lines(events: list[Any]) -> bytes:
    return b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events)


def _triggers(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _from_2099(history: list[dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
    """An order of a customer of the log, dated 2099, and its bytes."""
    cid = history[len(history) // 2]["customer_id"]
    line = {"event_id": "from-2099", "type": "order", "customer_id": cid, "occurred_at": "2099-01-01T00:00:00Z",
            "order_id": "o-2099", "category": "grocery", "amount": 10.0}
    return line, orjson.dumps(line)


@pytest.mark.parametrize("how", ["file", "file --lateness 1h", "directory"])
def test_one_line_from_2099_is_rejected_and_moves_no_clock(tmp_path, history, how):
    _, bad = _from_2099(history)
    half = len(history) // 2
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(_lines(history))
    if how == "directory":
        source = tmp_path / "logs"
        source.mkdir()
        (source / "a.jsonl").write_bytes(_lines(history[:half]))
        (source / "b.jsonl").write_bytes(_lines([bad, *history[half:]]))
    else:
        source = tmp_path / "poisoned.jsonl"
        source.write_bytes(_lines([*history[:half], bad, *history[half:]]))
    extra = ["--lateness", "1h"] if "lateness" in how else []
    for until in ([], ["--until", iso_ms(END)]):
        want, got, rejects = tmp_path / "want.jsonl", tmp_path / "got.jsonl", tmp_path / "rejects.jsonl"
        ok = cli("replay", str(clean), *until, *extra, "--out", str(want))
        assert ok.returncode == 0, ok.stderr
        r = cli("replay", str(source), *until, *extra, "--out", str(got), "--rejects", str(rejects))
        assert r.returncode == 1, r.stderr
        assert "1 rejected lines" in r.stderr
        assert _triggers(got) == _triggers(want)  # the same triggers, none of them 'lost'
        assert all(t["data"]["stage"] != "lost" for t in _triggers(got))
        [reject] = _triggers(rejects)
        assert reject["reason"] == "future_time"
        assert reject["raw"].encode() == bad
        assert "2099-01-01T00:00:00Z is more than 300s in the future" in reject["message"]
    # what it did when believed: every customer of the log silent for 73 years
    believed = cli("replay", str(source), *extra, "--now", "2099-01-01T00:00:00Z", "--out", str(got))
    assert believed.returncode == 0, believed.stderr
    lost = {t["subject"] for t in _triggers(got) if t["data"]["stage"] == "lost"}
    assert len(lost) >= len({e["customer_id"] for e in history}) - 1


def test_now_sets_the_present_for_a_reproducible_run(tmp_path):
    def order(eid: str, at: str) -> dict[str, Any]:
        return {"event_id": eid, "type": "order", "customer_id": "c1", "occurred_at": at, "order_id": eid,
                "category": "grocery", "amount": 10.0}

    log = tmp_path / "log.jsonl"
    log.write_bytes(_lines([order("e1", "2026-01-01T00:00:00Z"), order("e2", "2026-01-05T00:00:00Z")]))
    rejects = tmp_path / "rejects.jsonl"
    early = cli("replay", str(log), "--now", "2026-01-03T00:00:00Z", "--rejects", str(rejects), "--out", "-")
    assert early.returncode == 1, early.stderr
    assert [(r["line"], r["reason"]) for r in _triggers(rejects)] == [(2, "future_time")]
    # within the skew (5 minutes, as live) of the present: applied
    inside = cli("replay", str(log), "--now", "2026-01-04T23:56:00Z", "--out", "-")
    assert inside.returncode == 0, inside.stderr
    skew = cli("replay", str(log), "--now", "2026-01-04T23:59:00Z", "--out", "-",
               env={"CHURN_MAX_FUTURE_SKEW": "30s"})
    assert skew.returncode == 1, skew.stderr  # max_future_skew is the worker's setting, shared
    # no --now: the wall clock, and a log from the past is never rejected for its age
    assert cli("replay", str(log), "--out", "-").returncode == 0


def test_explain_bounds_the_future_as_replay_does(tmp_path, history):
    line, bad = _from_2099(history)
    cid = line["customer_id"]
    log = tmp_path / "poisoned.jsonl"
    log.write_bytes(_lines([*history, bad]))
    r = cli("explain", cid, str(log), "--json")
    assert r.returncode == 0, r.stderr
    body = orjson.loads(r.stdout)
    assert body["clock"] < to_epoch_ms("2027-01-01T00:00:00Z")
    stages = [e["trigger"]["data"]["stage"] for e in body["entries"] if e["what"] == "deadline"]
    assert "lost" not in stages
    assert all(e.get("event_id") != "from-2099" for e in body["entries"] if e["what"] == "event")


@pytest.mark.parametrize("how", ["log.jsonl", "log.jsonl.gz", "log.jsonl --lateness 1h", "dir"])
def test_a_byte_order_mark_at_the_start_of_a_file_is_skipped(tmp_path, history, how):
    clean, marked = tmp_path / "clean.jsonl", tmp_path / how.split()[0]
    clean.write_bytes(_lines(history))
    data = UTF8_BOM + _lines(history)
    if how == "dir":
        marked.mkdir()
        (marked / "a.jsonl").write_bytes(data)
    else:
        marked.write_bytes(gzip.compress(data) if how.endswith(".gz") else data)
    extra = how.split()[1:]
    want, got = tmp_path / "want.jsonl", tmp_path / "got.jsonl"
    assert cli("replay", str(clean), *extra, "--out", str(want)).returncode == 0
    r = cli("replay", str(marked), *extra, "--out", str(got))
    assert r.returncode == 0, r.stderr
    assert "0 rejected lines" in r.stderr
    assert got.read_bytes() == want.read_bytes()


def test_every_file_reader_skips_the_mark_and_only_at_the_start(tmp_path, history):
    first, second = orjson.dumps(history[0]), orjson.dumps(history[1])
    log = tmp_path / "log.jsonl"
    log.write_bytes(UTF8_BOM + first + b"\n" + UTF8_BOM + second + b"\n")
    # what produce, fit and the replay sources read
    assert list(FileSource(log).lines()) == [(1, first), (2, UTF8_BOM + second)]
    assert list(read_lines(log)) == [(1, first), (2, UTF8_BOM + second)]
    # produce sends the line without the mark (the history opens with the customers' consent)
    assert route(Settings(), first)[0] == Settings().topics.for_event_type(history[0]["type"])
    # the fused replay loop: the mark inside the file is no JSON, and its line is rejected with its bytes
    rejects: list[tuple[int, bytes, str]] = []
    fold = Fold(PartitionCore(Engine(), {}), "test")
    with FileSource(log).open() as fh:
        n = fold.lines(fh, EventDecoder(), lambda number, line, exc, _last: rejects.append((number, line, exc.reason)))
    assert n == 1
    assert rejects == [(2, UTF8_BOM + second, "malformed_json")]
    # a file that is nothing but the mark has no events and nothing to reject
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(UTF8_BOM + b"\n")
    assert list(FileSource(empty).lines()) == []


def test_explain_escapes_every_control_character_it_would_print(tmp_path):
    """No byte of the log drives the terminal: rejected lines shown raw, free text in --json, the id asked for."""
    t0 = "2026-01-01T00:00:00Z"
    order = {"event_id": "e1", "type": "order", "customer_id": "c1", "occurred_at": t0, "order_id": "o1",
             "category": "grocery", "amount": 10.0}
    rating = {"event_id": "e2", "type": "courier_rating", "customer_id": "c1", "occurred_at": "2026-01-01T01:00:00Z",
              "order_id": "o1", "rating": 1, "comment": "rude\u009b2J\u007f\u202e"}  # C1, DEL, bidi override: free text
    escape = dict(order, event_id="e3", category="groc\u001b[2Jery")   # an ANSI escape in a category: rejected
    raw_del = orjson.dumps(dict(order, event_id="e4", order_id="o\u007f\u009b1"))  # raw DEL and C1 bytes in an id
    assert b"\x7f" in raw_del
    assert b"\xc2\x9b" in raw_del
    log = tmp_path / "log.jsonl"
    log.write_bytes(_lines([order, rating, escape, raw_del]))

    text = cli("explain", "c1", str(log), "--now", "2026-01-02T00:00:00Z")
    assert text.returncode == 0, text.stderr
    for out in (text.stdout, text.stderr):
        assert all(line.isprintable() for line in out.splitlines()), out
    assert "2 rejected lines" in text.stdout
    assert "rejected  schema at" in text.stdout
    assert "o\\x7f\\x9b1" in text.stdout                              # the raw line, escaped
    assert "2 lines of the log were rejected" in text.stderr

    as_json = cli("explain", "c1", str(log), "--now", "2026-01-02T00:00:00Z", "--json")
    assert all(line.isprintable() for line in as_json.stdout.splitlines())
    body = orjson.loads(as_json.stdout)                               # still JSON, the same values
    [applied] = [e for e in body["entries"] if e["what"] == "event" and e["event_id"] == "e2"]
    assert applied["event"]["comment"] == rating["comment"]
    assert [e["reason"] for e in body["entries"] if e["what"] == "rejected"] == ["schema", "schema"]

    nobody = cli("explain", "c\u001b[31m1", str(log))
    assert nobody.returncode == 1
    assert all(line.isprintable() for line in (nobody.stdout + nobody.stderr).splitlines())
    assert "c\\x1b[31m1" in nobody.stdout


def test_printable_escapes_what_could_drive_a_terminal():
    assert printable("cust-42 Zoë") == "cust-42 Zoë"
    assert printable("a\u001b[2Jb\rc\u009bd\u202ee\U000e0001") == "a\\x1b[2Jb\\x0dc\\x9bd\\u202ee\\U000e0001"
    value = {"k": "a\u007f\u009b\u202e\U000e0001\u001b"}
    text = printable_json(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
    assert all(line.isprintable() for line in text.splitlines())
    assert orjson.loads(text) == value


def _reused_ids(history: list[dict[str, Any]]) -> tuple[list[bytes], bytes, bytes]:
    """The history with two more lines: a redelivery of one event (re-serialised) and another event re-using its id."""
    first = next(e for e in history if e["type"] == "order")
    later = next(e for e in history
                 if e["type"] == "order" and e["customer_id"] == first["customer_id"] and e is not first)
    cut = history.index(later)
    redelivered = orjson.dumps(dict(reversed(list(first.items()))), option=orjson.OPT_INDENT_2).replace(b"\n", b"")
    conflicting = orjson.dumps({**later, "event_id": first["event_id"]})
    lines = [orjson.dumps(e) for e in history[:cut]] + [redelivered, conflicting] + [
        orjson.dumps(e) for e in history[cut:]]
    return lines, redelivered, conflicting


@pytest.mark.parametrize("how", ["file", "file --lateness 1h", "directory"])
def test_a_reused_event_id_with_other_content_is_rejected_as_a_conflict(tmp_path, history, how):
    lines, redelivered, conflicting = _reused_ids(history)
    assert redelivered in lines
    if how == "directory":
        source = tmp_path / "logs"
        source.mkdir()
        (source / "all.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    else:
        source = tmp_path / "log.jsonl"
        source.write_bytes(b"\n".join(lines) + b"\n")
    extra = how.split()[1:]
    rejects, got, want = tmp_path / "rejects.jsonl", tmp_path / "got.jsonl", tmp_path / "want.jsonl"
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(_lines(history))
    assert cli("replay", str(clean), *extra, "--out", str(want)).returncode == 0
    r = cli("replay", str(source), *extra, "--out", str(got), "--rejects", str(rejects))
    assert r.returncode == 1, r.stderr
    [reject] = _triggers(rejects)
    assert reject["reason"] == "event_id_conflict"
    assert reject["raw"].encode() == conflicting
    assert reject["line"] == lines.index(conflicting) + 1
    assert "was applied before with other content" in reject["message"]
    # the redelivery is a plain duplicate, the conflict applies nothing: the clean log's triggers
    assert _triggers(got) == _triggers(want)
    assert f"replayed {len(history) + 1} events" in r.stderr  # the redelivery counted (duplicate), not the conflict
    assert "duplicate" in r.stderr  # the events table counts the redelivery
    assert "event_id_conflict" in r.stderr


def test_explain_shows_a_conflicting_event_as_not_applied(tmp_path, history):
    lines, _, conflicting = _reused_ids(history)
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    cid = orjson.loads(conflicting)["customer_id"]
    r = cli("explain", cid, str(log))
    assert r.returncode == 0, r.stderr
    assert "rejected  event_id_conflict at" in r.stdout
    assert "1 lines of the log were rejected" in r.stderr


def test_the_worker_dead_letters_a_conflict_with_its_raw_bytes_and_keeps_duplicates_quiet():
    rt, m, _ = make()
    first = orjson.dumps({"event_id": "e1", "type": "order", "customer_id": "c-1", "occurred_at": iso_ms(T0),
                          "order_id": "o-1", "category": "grocery", "amount": 20.0})
    assert rt.on_input("orders", 0, 0, b"c-1", first) == []
    rt.write_state()
    state = rt.store["c-1"].encode()
    other = first.replace(b"20.0", b"25.0")
    [letter] = rt.on_input("orders", 0, 1, b"c-1", other, 99.0, [("trace", b"t")])
    assert (letter.topic, letter.key, letter.value, letter.timestamp) == ("churn-dlq", b"c-1", other, 99.0)
    headers = dict(letter.headers)
    assert (headers["trace"], headers["dlq.error.class"], headers["dlq.stage"]) == (
        b"t", b"event_id_conflict", b"semantic")
    assert headers["dlq.source.offset"] == b"1"
    rt.write_state()
    assert rt.store["c-1"].encode() == state
    assert rt.on_input("orders", 0, 2, b"c-1", b" " + first) == []  # the same event again: a duplicate
    assert sample(m, "churn_dlq_messages_total", reason="event_id_conflict") == 1
    assert sample(m, "churn_events_total", topic="orders", outcome="invalid") == 1
    assert sample(m, "churn_events_total", topic="orders", outcome="duplicate") == 1

    # through the event-time merge, as the worker receives messages: the same answer
    handles = [(h, records) for h, records in rt.receive("orders", 0, 3, b"c-1", other, 7.0, [], "h3",
                                                        lambda tp, position: False)]
    assert [(h, [r.topic for r in records]) for h, records in handles] == [("h3", ["churn-dlq"])]
    assert handles[0][1][0].value == other
