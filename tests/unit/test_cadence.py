"""Personal cadence: the BG/NBD fit reproduces the paper; closed forms; streaming state equals the batch summary."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from detectors import CustomerState, DetectorConfig, Engine, PartitionCore
from detectors.cadence import CadenceParams, crossing_time, expected_orders, p_alive, p_no_order
from detectors.config import DAY_MS
from detectors.envelope import iso_ms
from detectors.fitting import summarize
from detectors.silence import stage_plan
from detectors.snapshot import day_grid, model_view
from schemas import EventDecoder
from schemas.decode import to_epoch_ms
from streams.offline.cdnow import convert
from streams.offline.fit import fit_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "cdnow" / "CDNOW_sample.txt"
CAL_END = "1997-09-30T00:00:00Z"
WEEK = 7 * DAY_MS
#: Fader, Hardie & Lee (2005), table 1 / section 5: BG/NBD on the CDNOW sample.
PAPER = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PAPER_PARAMS = CadenceParams(**PAPER, time_unit="weeks")


@pytest.fixture(scope="module")
def sample_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cdnow") / "sample.jsonl"
    assert convert(SAMPLE, out) == 6919
    return out


def _restamped(log: Path, out: Path, clock: str) -> Path:
    """The same orders stamped at another time of day (CDNOW dates carry none)."""
    out.write_bytes(log.read_bytes().replace(b"T00:00:00Z", f"T{clock}Z".encode()))
    return out


def test_fit_reproduces_fader_hardie_lee_on_the_cdnow_sample(sample_log):
    fitted, warnings = fit_file(str(sample_log), to_epoch_ms(CAL_END), "weeks")
    assert warnings == []
    for name, published in PAPER.items():
        assert fitted[name] == pytest.approx(published, rel=0.005), name
    assert fitted["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert fitted["customers"] == 2357
    assert fitted["repeat_transactions"] == 2457  # same-day purchases collapsed, as in the paper
    assert fitted["time_unit"] == "weeks"


@pytest.mark.parametrize(("clock", "until"), [("12:00:00", "1997-09-30T23:59:59Z"),
                                              ("23:30:00", "1997-09-30T23:59:59.999Z"),
                                              ("00:00:00", "1997-09-30T18:00:00Z")])
def test_the_fit_does_not_depend_on_the_time_of_day(sample_log, tmp_path, clock, until):
    """Noon-stamped orders and --until at the end of the last day fit as the paper's whole days do."""
    log = _restamped(sample_log, tmp_path / "restamped.jsonl", clock)
    fitted, _ = fit_file(str(log), to_epoch_ms(until), "weeks")
    for name, published in PAPER.items():
        assert fitted[name] == pytest.approx(published, rel=0.005), name
    assert fitted["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert fitted["repeat_transactions"] == 2457


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)


def test_fit_command_writes_a_parameter_file_replay_accepts(sample_log, tmp_path):
    params = tmp_path / "params.json"
    r = _cli("fit", str(sample_log), "--until", CAL_END, "--out", str(params))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    assert "fitted on 2357 customers (946 with repeat orders" in r.stderr
    assert "Pareto/NBD  r=0.5533 alpha=10.5777 s=0.6062 beta=11.6687 log-likelihood=-9594.98 converged" in r.stderr
    written = orjson.loads(params.read_bytes())
    assert written["model"] == "bgnbd"
    assert written["time_unit"] == "weeks"
    assert written["calibration_end"] == "1997-09-30T00:00:00.000Z"
    assert written["converged"] is True
    assert (written["customers"], written["customers_with_repeat_orders"]) == (2357, 946)
    assert set(written["pareto_nbd"]) == {"r", "alpha", "s", "beta", "log_likelihood", "converged"}
    lo, hi = written["rfm"]["recency_days"]
    assert 0 <= lo <= hi
    snap = tmp_path / "snap.jsonl"
    r = _cli("replay", str(sample_log), "--until", CAL_END, "--params", str(params), "--out",
             str(tmp_path / "t.jsonl"), "--snapshot-out", str(snap))
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(line) for line in snap.read_bytes().splitlines()]
    assert len(rows) == 2357
    assert {row["risk_model"] for row in rows} == {"pareto_nbd_expected_orders"}
    assert all(0.0 <= row["risk"] <= 1.0 and 0.0 <= row["p_alive"] <= 1.0 for row in rows)
    assert all(row["risk"] == pytest.approx(math.exp(-row["pareto_nbd_expected_orders"]), abs=2e-6) for row in rows)
    # one-day buyers: BG/NBD cannot tell them apart, Pareto/NBD can
    once = [row for row in rows if row["order_days"] == 1]
    assert {row["p_alive"] for row in once} == {1.0}
    assert len({row["pareto_nbd_p_alive"] for row in once}) > 10

    # a parameter file of before Pareto/NBD still works: risk ranks by BG/NBD
    bg_only = tmp_path / "bg.json"
    bg_only.write_bytes(orjson.dumps({k: v for k, v in written.items() if k != "pareto_nbd"}))
    r = _cli("replay", str(sample_log), "--until", CAL_END, "--params", str(bg_only), "--out",
             str(tmp_path / "t2.jsonl"), "--snapshot-out", str(snap))
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(line) for line in snap.read_bytes().splitlines()]
    assert {row["risk_model"] for row in rows} == {"bgnbd_expected_orders"}
    assert all("pareto_nbd_p_alive" not in row for row in rows)


def test_fit_refuses_too_few_customers_and_writes_nothing(sample_log, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"\n".join(line for line in sample_log.read_bytes().splitlines()
                                 if int(orjson.loads(line)["customer_id"].split("-")[1]) % 20 == 0) + b"\n")
    params = tmp_path / "params.json"
    r = _cli("fit", str(small), "--until", CAL_END, "--out", str(params))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "error: cannot fit" in r.stderr
    assert "the model needs at least 300 customers" in r.stderr
    assert not params.exists()
    # knowingly lowered: written, with a warning that the estimates are rough
    r = _cli("fit", str(small), "--until", CAL_END, "--out", str(params), "--min-customers", "100")
    assert r.returncode == 0, r.stderr
    assert "churn-signals fit: warning: only" in r.stderr
    assert "the estimates are rough" in r.stderr
    assert params.exists()


def test_fit_refuses_a_bgnbd_fit_that_did_not_converge(tmp_path):
    """400 customers who all order every week to the end: nobody ever drops out, so b runs off to infinity."""
    log = tmp_path / "steady.jsonl"
    lines = []
    for c in range(400):
        for w in range(20):
            day = iso_ms(to_epoch_ms("2026-01-01T09:00:00Z") + (w * 7 + c % 7) * DAY_MS)
            lines.append(orjson.dumps({"event_id": f"e{c}-{w}", "type": "order", "customer_id": f"c{c}",
                                       "occurred_at": day, "order_id": f"o{c}-{w}", "category": "other",
                                       "amount": 10.0}))
    log.write_bytes(b"\n".join(lines) + b"\n")
    params = tmp_path / "params.json"
    r = _cli("fit", str(log), "--until", "2026-05-27T00:00:00Z", "--out", str(params))
    assert r.returncode == 2, r.stderr
    assert "BG/NBD did not converge on 400 customers" in r.stderr
    assert "ran off" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not params.exists()


def test_fit_warns_and_leaves_pareto_nbd_out_when_it_did_not_converge(sample_log, tmp_path):
    """307 CDNOW customers (master id = 6 mod 8) whose drop-out rates look alike: s and beta run off together."""
    subset = tmp_path / "subset.jsonl"
    keep = [line for line in sample_log.read_bytes().splitlines()
            if int(orjson.loads(line)["customer_id"].split("-")[1]) % 8 == 6]
    subset.write_bytes(b"\n".join(keep) + b"\n")
    params = tmp_path / "params.json"
    r = _cli("fit", str(subset), "--until", CAL_END, "--out", str(params))
    assert r.returncode == 0, r.stderr
    assert "BG/NBD      r=" in r.stderr
    assert "churn-signals fit: warning: Pareto/NBD did not converge" in r.stderr
    assert "written without 'pareto_nbd'" in r.stderr
    written = orjson.loads(params.read_bytes())
    assert written["customers"] == 307
    assert "pareto_nbd" not in written


@pytest.mark.parametrize(("content", "message"), [
    ('{"model": "bgnbd", "r": -1, "alpha": 1, "a": 1, "b": 1, "time_unit": "weeks"}',
     "cadence parameter r must be a positive number"),
    ('{"model": "bgnbd", "r": 1, "alpha": 1, "a": 1, "b": 1, "time_unit": "weeks", "pareto_nbd": {"r": 1}}',
     "pareto_nbd: missing alpha, s, beta"),
    ('{"model": "bgnbd", "r": 1, "alpha": 1, "a": 1, "b": 1, "time_unit": "weeks", '
     '"pareto_nbd": {"r": 1, "alpha": 1, "s": "x", "beta": 1}}', "pareto_nbd: r, alpha, s and beta must be numbers"),
])
def test_a_broken_parameter_file_is_one_line(tmp_path, content, message):
    bad = tmp_path / "p.json"
    bad.write_text(content)
    log = tmp_path / "e.jsonl"
    log.write_text("")
    r = _cli("replay", str(log), "--params", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert message in r.stderr


@pytest.mark.parametrize("clock", ["00:00:00", "13:45:00"])
def test_streaming_state_is_the_batch_summary(sample_log, tmp_path, clock):
    """Per order O(1) updates of x, t_x, T end where the batch summary of the same orders is, on the day grid."""
    until = to_epoch_ms(CAL_END) + 20 * 3_600_000  # late on the last day: still that day
    log = _restamped(sample_log, tmp_path / "restamped.jsonl", clock)
    core = PartitionCore(Engine(), {})
    decoder = EventDecoder()
    orders = []
    for line in log.read_bytes().splitlines():
        ev = decoder.decode(line)
        if ev.ts <= until:
            core.apply(ev)
            orders.append((ev.customer_id, ev.ts, float(ev.data["amount"])))
    s = summarize(orders, until, WEEK)
    assert s.T.max() == pytest.approx(272 / 7)  # first bought 1997-01-01: 38.86 weeks, as in the paper
    for cid, x, t_x, big_t in zip(s.customers, s.x, s.t_x, s.T, strict=True):
        assert day_grid(core.store[cid], until, WEEK) == (x, pytest.approx(t_x), pytest.approx(big_t))  # type: ignore[comparison-overlap]  # approx compares by value


def test_the_snapshot_view_does_not_depend_on_the_time_of_day():
    cfg = DetectorConfig(cadence=PAPER_PARAMS)
    morning = _customer([0, 9, 30], clock="2026-01-01T06:00:00Z")
    evening = _customer([0, 9, 30], clock="2026-01-01T22:00:00Z")
    day_60 = to_epoch_ms("2026-03-02T00:00:00Z")
    views = [model_view(cfg, st, now) for st in (morning, evening) for now in (day_60, day_60 + DAY_MS - 1)]
    assert views[0] is not None
    assert views[0]["p_alive"] < 1
    assert all(v == views[0] for v in views)


@pytest.mark.parametrize(("x", "t_x"), [(1, 2.0), (2, 30.43), (7, 35.0), (20, 38.0)])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.1])
def test_the_crossing_time_solves_p_alive_equals_the_threshold(x, t_x, threshold):
    t = crossing_time(PAPER_PARAMS, x, t_x, threshold)
    assert t is not None
    if t > t_x:
        assert p_alive(PAPER_PARAMS, x, t_x, t) == pytest.approx(threshold, rel=1e-9)
        assert p_alive(PAPER_PARAMS, x, t_x, t * 0.99 + t_x * 0.01) > threshold
    else:  # already below right after the last order
        assert p_alive(PAPER_PARAMS, x, t_x, t_x) <= threshold


def test_closed_forms_behave():
    p = PAPER_PARAMS
    assert p_alive(p, 0, 0.0, 30.0) == 1.0       # no repeat purchase: cannot have dropped out yet
    assert crossing_time(p, 0, 0.0, 0.5) is None  # so one-order customers use category windows
    assert p_alive(p, 3, 10.0, 12.0) > p_alive(p, 3, 10.0, 30.0)  # falls with silence
    assert p_no_order(p, 3, 10.0, 12.0, 1.0) > p_no_order(p, 3, 10.0, 12.0, 39.0)
    e = [expected_orders(p, 3, 10.0, 12.0, h) for h in (1.0, 10.0, 39.0)]
    assert 0 < e[0] < e[1] < e[2]
    # for x = 0 and a brand-new customer, E[Y(t)] is the unconditional BG/NBD mean (paper eq. 9)
    t = 39.0
    z = t / (p.alpha + t)
    from scipy.special import hyp2f1

    unconditional = (p.a + p.b - 1) / (p.a - 1) * (
        1 - (p.alpha / (p.alpha + t)) ** p.r * hyp2f1(p.r, p.b, p.a + p.b - 1, z))
    assert expected_orders(p, 0, 0.0, 0.0, t) == pytest.approx(unconditional, rel=1e-9)


def _customer(order_days: list[int], category: str = "other", clock: str = "2026-01-01T10:00:00Z") -> CustomerState:
    core = PartitionCore(Engine(), {})
    t0 = to_epoch_ms(clock)
    for i, d in enumerate(order_days):
        core.apply(EventDecoder().validate({
            "event_id": f"e{i}", "type": "order", "customer_id": "c", "occurred_at": iso_ms(t0 + d * DAY_MS),
            "order_id": f"o{i}", "category": category, "amount": 10.0}))
    return core.store["c"]


def test_deadlines_follow_the_personal_cadence_but_never_precede_the_category_floor():
    cfg = DetectorConfig(cadence=CadenceParams(0.243, 4.414, 0.793, 2.426, "weeks"))
    slow = _customer([0, 70, 140, 210])     # every ten weeks: P(alive) stays high long after 30 days
    plan = stage_plan(cfg, slow)
    floors = stage_plan(DetectorConfig(), slow)
    assert [d for d, _, _ in plan] >= [d for d, _, _ in floors]
    assert all(d >= f for d, f, _ in plan)
    assert plan[0][2] == "personal_cadence"
    assert plan[0][0] > floors[0][0]
    unit = WEEK
    x, t_x = 3, (slow.last_order - slow.first_order) / unit
    assert cfg.cadence is not None
    assert p_alive(cfg.cadence, x, t_x, (plan[0][0] - slow.first_order) / unit) == pytest.approx(0.5, abs=1e-6)
    one = _customer([0])                    # one order: the model says nothing yet
    assert stage_plan(cfg, one) == stage_plan(DetectorConfig(), one)
    same_day = _customer([0, 0, 0])         # three orders on one day are one transaction
    assert same_day.order_days == 1
    assert same_day.n_orders == 3
    assert stage_plan(cfg, same_day) == stage_plan(DetectorConfig(), same_day)
    assert plan[0][0] <= plan[1][0] <= plan[2][0]


def test_degenerate_parameters_fall_back_to_the_no_order_probability():
    p = CadenceParams(0.5, 1.0, 0.5, 0.5, "weeks")   # a + b - 1 = 0: eq. 10 is singular for x = 0
    assert math.isnan(expected_orders(p, 0, 0.0, 3.0, 13.0))
    cfg = DetectorConfig(cadence=p)
    view = model_view(cfg, _customer([0]), to_epoch_ms("2026-01-22T10:00:00Z"))
    assert view is not None
    assert math.isfinite(view["risk"])
    assert view["risk"] == pytest.approx(view["p_no_order"], abs=1e-6)


def test_pareto_parameters_reach_the_configuration_and_its_version():
    bg = {"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "time_unit": "days"}
    with_pnbd = {**bg, "pareto_nbd": {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67, "log_likelihood": -1.0}}
    cfg = DetectorConfig().with_params(with_pnbd)
    assert cfg.pareto is not None
    assert (cfg.pareto.s, cfg.pareto.time_unit) == (0.61, "days")  # in the file's one time unit
    assert DetectorConfig().with_params(bg).pareto is None
    assert cfg.version != DetectorConfig().with_params(bg).version
