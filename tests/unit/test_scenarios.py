"""Scenario suite: event files in, expected triggers out, through the replay core.

Each folder of tests/scenarios/ holds `events.jsonl` (input events, in the
order they are read) and `expected.json`: a description, detector settings
(`config`, optional fitted `params`), the clock's final time (`until`) and
every trigger decision expected, emitted or suppressed, with its reason. A
row may also pin payload fields (group, family, severity, rfm_segment,
channels, reason_codes, favourite_category, and a silence's suspected_cause and
service_failures) and a subset of the evidence.
The list must match exactly: a missing or an extra trigger fails. So must
`rejects`, the lines replay refuses (line number and reason; none when absent),
judged against `now` (the present for the future-time bound; absent: none).

Win-back and retention triggers need a grant of marketing consent, so the
customers of scenarios about other rules grant `all` just before their first
event (`<customer>-grant`); the consent scenarios say what they grant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from detectors import DetectorConfig
from schemas import load_schema
from schemas.decode import to_epoch_ms
from streams.offline.replay import replay
from streams.offline.sources import Reject

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
NAMES = sorted(p.name for p in SCENARIOS.iterdir() if (p / "expected.json").exists())
PAYLOAD_FIELDS = ("group", "family", "severity", "rfm_segment", "channels", "reason_codes", "favourite_category",
                  "suspected_cause", "service_failures")


def run_scenario(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[Reject]]:
    spec = orjson.loads((SCENARIOS / name / "expected.json").read_bytes())
    cfg = DetectorConfig.from_mapping(spec.get("config", {}))
    if spec.get("params"):
        cfg = cfg.with_params(spec["params"])
    out: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    now = to_epoch_ms(spec["now"]) if "now" in spec else None
    replay(str(SCENARIOS / name / "events.jsonl"), cfg, to_epoch_ms(spec["until"]), on_trigger=out.append,
           now_ms=now, on_reject=rejects.append)
    return spec, out, rejects


def _row(ce: dict[str, Any]) -> tuple[str, str, str, str, str]:
    d = ce["data"]
    return (d["event_time"], d["customer_id"], d["kind"], d["stage"],
            "emit" if d["decision"] == "emit" else d["suppression_reason"])


def test_every_signal_and_rule_has_a_scenario():
    kinds, reasons = set(), set()
    for name in NAMES:
        spec = orjson.loads((SCENARIOS / name / "expected.json").read_bytes())
        kinds |= {t["kind"] + "/" + t["stage"] for t in spec["triggers"]}
        reasons |= {t["decision"] for t in spec["triggers"]}
    assert kinds >= {
        "silence/at_risk", "silence/dormant", "silence/lost", "frequency_drop/now", "basket_value_drop/now",
        "favourite_category_abandoned/now", "negative_rating/now", "negative_rating/follow_up",
        "delivery_failed/now", "delivery_late/now", "delivery_late_repeated/now", "customer_returned/now",
        "silence_retracted/at_risk", "silence_retracted/dormant",
    }
    assert reasons == {"emit", "holdout", "opted_out", "no_consent", "return_exclusion", "episode_cap", "cooldown",
                       "same_incident", "contact_cap"}


@pytest.mark.parametrize("name", NAMES)
def test_scenario(name):
    spec, out, rejects = run_scenario(name)
    # by line: a conflict is found when its event is applied, after the reorder buffer held it
    expected_rejects = [(r["line"], r["reason"]) for r in spec.get("rejects", [])]
    assert sorted((r.position, r.reason) for r in rejects) == expected_rejects
    envelope, payload = load_schema("cloudevent-v1.json"), load_schema("trigger-v1.json")
    for ce in out:
        jsonschema.validate(ce, envelope)
        jsonschema.validate(ce["data"], payload)
        d = ce["data"]
        # never an actionable trigger for a holdout or non-consenting customer
        if d["decision"] == "emit" and d["family"] != "measurement":
            assert d["group"] == "treatment", ce
            assert d["channels"], ce
    got = sorted(out, key=_row)
    expected = sorted(spec["triggers"], key=lambda t: (t["time"], t["customer"], t["kind"], t["stage"],
                                                        t["decision"]))
    assert [_row(ce) for ce in got] == [
        (t["time"], t["customer"], t["kind"], t["stage"], t["decision"]) for t in expected], spec["description"]
    for ce, t in zip(got, expected, strict=True):
        d = ce["data"]
        # every silence stage says what it suspects; no other kind does
        assert ("suspected_cause" in d) == (d["kind"] == "silence"), ce
        for key in PAYLOAD_FIELDS:
            if key in t:
                assert d[key] == t[key], (key, t)
        for key, value in t.get("evidence", {}).items():
            assert key in d["evidence"], (key, t)
            if isinstance(value, float):
                assert d["evidence"][key] == pytest.approx(value, abs=1e-3), (key, t)
            else:
                assert d["evidence"][key] == value, (key, t)


def test_the_demo_describes_every_scenario_trigger_in_words():
    from streams.wording import reason

    for name in NAMES:
        for ce in run_scenario(name)[1]:
            text = reason(ce)
            assert "=" not in text, (ce["data"]["kind"], text)  # not the generic key=value fallback
