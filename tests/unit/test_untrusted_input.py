"""Input that cannot poison the clock: what replay and explain do with lines no live worker would apply.

One line dated 2099 used to move replay's event-time clock 73 years ahead and
fire every customer's silence, `lost` included. Replay and explain now bound
the future as the live worker does: from `--now` (default: the wall clock when
the run starts) plus max_future_skew; later lines are rejected with their raw
bytes and reason. The past is not bounded, so an old log replays whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from streams.samples import SampleGenerator
from tests.unit.test_cli import cli

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
