"""Backfill and replay against a real broker: produce with a rate limit, replay a topic range, write to a topic."""

from __future__ import annotations

import time

import orjson

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from streams.dev.samples import SampleGenerator
from tests.conftest import consume
from tests.unit.test_cli import cli

END = to_epoch_ms("2026-06-01T00:00:00Z")


def _env(broker, topics) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            **{f"CHURN_TOPIC_{f.upper()}": getattr(topics, f) for f in topics.__dataclass_fields__}}


def test_backfill_then_replay_the_topic_range_and_write_triggers_to_a_topic(broker, topics, tmp_path):
    history = SampleGenerator(seed=5, customers=25).history(END, days=60)
    log = tmp_path / "h.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in history))
    env = _env(broker, topics)

    rate = 1500.0
    started = time.monotonic()
    p = cli("produce", str(log), "--rate", str(rate), "--progress", "always", env=env)
    elapsed = time.monotonic() - started
    assert p.returncode == 0, p.stderr
    assert f"sent {len(history)} events" in p.stdout
    assert "events/s" in p.stderr  # progress and the closing rate
    assert elapsed >= 0.9 * len(history) / rate  # the rate limit held

    from_file, from_topic = tmp_path / "f.jsonl", tmp_path / "k.jsonl"
    until = iso_ms(END)
    assert cli("replay", str(log), "--until", until, "--out", str(from_file), env=env).returncode == 0
    r = cli("replay", "kafka:", "--until", until, "--out", str(from_topic), env=env)
    assert r.returncode == 0, r.stderr
    assert f"replayed {len(history)} events" in r.stderr
    same = cli("diff", str(from_file), str(from_topic), "--json")
    assert same.returncode == 0, same.stdout  # the topic range replays exactly like the file
    assert orjson.loads(same.stdout)["counts"]["unchanged"] > 0

    shadow = [cli("shadow", src, "--until", until, "--set", "silence_windows=grocery=4d/9d", "--json", env=env)
              for src in (str(log), "kafka:")]
    assert [s.returncode for s in shadow] == [1, 1], shadow[1].stderr
    file_counts, topic_counts = (orjson.loads(s.stdout)["counts"] for s in shadow)
    assert file_counts == topic_counts  # a shadow run over the topic range sees the same log twice
    assert file_counts["changed"] > 0

    start = END - 20 * 86_400_000
    later = cli("replay", "kafka:", "--start", iso_ms(start), "--out", str(tmp_path / "l.jsonl"), env=env)
    expected = sum(1 for e in history if to_epoch_ms(e["occurred_at"]) >= start)
    assert f"replayed {expected} events" in later.stderr, later.stderr

    out_topic = topics.triggers + "-backfill"
    w = cli("replay", str(log), "--until", until, "--out-topic", out_topic, env=env)
    assert w.returncode == 0, w.stderr
    lines = from_file.read_bytes().splitlines()
    msgs = consume(broker.bootstrap, out_topic, until=lambda m: len(m) >= len(lines), timeout=30)
    assert sorted(m.value for m in msgs) == sorted(lines)  # the same canonical bytes as the file
    for m in msgs:
        ce = orjson.loads(m.value)
        assert m.key == ce["subject"].encode()
        assert m.timestamp == to_epoch_ms(ce["data"]["event_time"])
