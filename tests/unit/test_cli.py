"""The command line: help everywhere, one-line errors, replay end to end on files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streams.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], check=False, cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", ["worker", "broker", "demo", "produce", "replay", "shadow", "diff", "explain",
                                     "report", "topics"])
def test_every_command_has_help(command):
    r = cli(command, "--help")
    assert r.returncode == 0
    assert "usage: churn-signals " + command in r.stdout
    assert "KAFKA_BOOTSTRAP_SERVERS" in r.stdout


def _assert_one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0]


def test_topics_prints_the_plan_of_the_flags_over_the_environment_without_a_broker():
    r = cli("topics", "--format", "json", "--replication-factor", "3", "--min-insync-replicas", "2",
            "--partitions", "8", env={"CHURN_APP_ID": "eu", "CHURN_REPLICATION_FACTOR": "1"})
    assert r.returncode == 0, r.stderr
    rows = {t["name"]: t for t in orjson.loads(r.stdout)}
    assert rows["eu-customers-changelog"]["partitions"] == 8
    assert rows["eu-__assignor-__leader"]["partitions"] == 1
    assert {t["replication_factor"] for t in rows.values()} == {3}
    assert {t["configs"]["min.insync.replicas"] for t in rows.values()} == {"2"}


def test_topics_apply_without_a_broker_is_one_line():
    r = cli("topics", "--apply")
    assert r.returncode == 2
    assert r.stderr.strip() == ("churn-signals topics: error: topics --apply needs a broker: set "
                                "KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers)")


def test_unknown_flag_is_a_usage_error():
    r = cli("replay", "x.jsonl", "--bogus")
    assert r.returncode == 2
    assert "unrecognized arguments: --bogus" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_replay_file_is_one_line(tmp_path):
    _assert_one_line_error(cli("replay", str(tmp_path / "nope.jsonl")), "file not found", "nope.jsonl")


def test_bad_detector_setting_is_one_line(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text("")
    r = cli("replay", str(f), env={"CHURN_DETECTOR_NEGATIVE_RATING_MAX": "lots"})
    _assert_one_line_error(r, "negative_rating_max", "lots")
    r = cli("replay", str(f), env={"CHURN_DETECTOR_SILENCE_WINDOWS": "grocery=14d/7d"})
    _assert_one_line_error(r, "silence_windows.grocery", "shorter than dormant")


def test_bad_config_file_is_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detector\nnegative_rating_max = 2")
    f = tmp_path / "e.jsonl"
    f.write_text("")
    _assert_one_line_error(cli("replay", str(f), env={"CHURN_CONFIG": str(cfg)}), "not valid TOML")
    _assert_one_line_error(cli("replay", str(f), env={"CHURN_CONFIG": str(tmp_path / "missing.toml")}),
                           "not found")


@pytest.mark.parametrize("command", [("produce",), ("worker",)])
def test_unreachable_broker_is_one_line(tmp_path, command):
    f = tmp_path / "e.jsonl"
    f.write_text("")
    args = (*command, str(f)) if command == ("produce",) else command
    r = cli(*args, env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    _assert_one_line_error(r, "cannot reach the Kafka broker")


def _write_log(path: Path, lines: list[bytes]) -> None:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz"])
def test_replay_reports_invalid_lines_and_writes_triggers_and_snapshots(tmp_path, name):
    log = tmp_path / name
    _write_log(log, [
        orjson.dumps({"event_id": "1", "type": "order", "customer_id": "c1", "occurred_at": "2026-01-01T10:00:00Z",
                      "order_id": "o1", "category": "grocery", "amount": 10}),
        b"{broken",
        orjson.dumps({"event_id": "2", "type": "courier_rating", "customer_id": "c2",
                      "occurred_at": "2026-01-02T10:00:00Z", "order_id": "o9", "rating": 1}),
        orjson.dumps({"event_id": "3", "type": "order", "customer_id": "c3", "occurred_at": "2026-01-02T10:00:00Z",
                      "order_id": "o1", "category": "grocery", "amount": -3}),
    ])
    out, snap = tmp_path / "t.jsonl", tmp_path / "s.jsonl"
    r = cli("replay", str(log), "--until", "2026-01-09T10:00:00Z", "--out", str(out), "--snapshot-out", str(snap))
    assert r.returncode == 1, r.stderr  # lines were rejected: the exit code says so
    assert "2 rejected lines" in r.stderr
    assert f"{log}:2: malformed_json" in r.stderr
    assert f"{log}:4: schema" in r.stderr
    triggers = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # c2 rated badly and never ordered: the service-recovery trigger and its 72-hour follow-up
    assert sorted((t["data"]["kind"], t["data"]["stage"], t["subject"]) for t in triggers) == [
        ("negative_rating", "follow_up", "c2"), ("negative_rating", "now", "c2"), ("silence", "at_risk", "c1")]
    rows = {r["customer_id"]: r for r in map(orjson.loads, snap.read_bytes().splitlines())}
    assert set(rows) == {"c1", "c2"}
    assert 0.0 <= rows["c2"]["risk"] <= 1.0
    assert rows["c1"]["risk"] > 0.5  # eight days silent, past its seven-day window
