"""Consent as the playbooks ask: configurable channels, each a record of its own, `all` for every one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detectors import Engine, PartitionCore
from detectors.config import DAY_MS, DetectorConfig
from detectors.envelope import iso_ms, to_cloudevent
from detectors.state import CustomerState
from detectors.suppression import channels_at, on_consent
from schemas import Event, EventDecoder
from schemas.errors import ConfigError
from streams.live.metrics import Metrics
from streams.live.runtime import Runtime
from streams.offline.replay import Replayer, replay
from streams.settings import Settings, load_settings
from tests.unit.test_metrics import Clock
from tests.unit.test_metrics import order as raw_order

pytestmark = pytest.mark.unit

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CFG = DetectorConfig()


def consent(st: CustomerState, channel: str, granted: bool, day: float) -> None:
    on_consent(st, Event(f"c-{channel}-{day}", "consent", "c", T0 + int(day * DAY_MS),
                         {"channel": channel, "granted": granted}))


def at(st: CustomerState, day: float, *, grant: bool, cfg: DetectorConfig = CFG) -> tuple[str, ...]:
    return channels_at(cfg, st, T0 + int(day * DAY_MS), grant)


def test_the_default_channels_are_the_playbooks_viber_included():
    assert CFG.channels == ("email", "sms", "push", "viber", "messenger")


def test_a_grant_on_viber_is_recorded_under_its_name():
    st = CustomerState()
    consent(st, "viber", True, 1)
    assert st.consent == ["viber", 1, T0 + DAY_MS]
    assert at(st, 2, grant=True) == ("viber",)
    assert at(st, 0, grant=True) == ()  # judged at the trigger's time: not yet granted
    assert CustomerState.decode(st.encode()) == st


def test_all_speaks_for_every_channel_and_for_channels_configured_later():
    st = CustomerState()
    consent(st, "email", True, 1)
    consent(st, "all", False, 5)
    assert at(st, 6, grant=False) == ()
    assert at(st, 3, grant=True) == ("email",)
    wider = DetectorConfig(channels=(*CFG.channels, "whatsapp"))
    assert at(st, 6, grant=False, cfg=wider) == ()  # whatsapp has no record: it follows `all`
    consent(st, "sms", True, 8)
    assert at(st, 9, grant=True) == ("sms",)
    assert at(st, 6, grant=False) == ()  # sms's record started from what `all` said


def test_a_channel_record_started_by_a_late_event_keeps_the_later_all():
    """`all` withdrawn on day 5, then (read late) an sms grant of day 2: sms is withdrawn after day 5."""
    st = CustomerState()
    consent(st, "all", False, 5)
    consent(st, "sms", True, 2)
    assert at(st, 6, grant=False) == ()
    assert at(st, 3, grant=True) == ("sms",)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("email,sms,all", "'all' is reserved"),
        ("email,E-Mail", "'E-Mail' is not a channel name"),
        ("email,sms,email", "each channel once"),
        ("", "expected 1..16 contact channels, got 0"),
        (",".join(f"c{i}" for i in range(17)), "expected 1..16 contact channels, got 17"),
    ],
)
def test_bad_channel_settings_fail_at_start_up_in_one_line(value, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(env={"CHURN_DETECTOR_CHANNELS": value})
    assert fragment in str(err.value)
    assert str(err.value).startswith("channels: ")
    assert "\n" not in str(err.value)


def test_channels_from_file_and_environment_agree(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[detector]\nchannels = ["email", "viber", "telegram"]\n')
    from_file = load_settings(env={"CHURN_CONFIG": str(toml)})
    from_env = load_settings(env={"CHURN_DETECTOR_CHANNELS": "email, viber, telegram"})
    assert from_file.detector == from_env.detector
    assert from_env.detector.channels == ("email", "viber", "telegram")
    assert from_env.detector.version != CFG.version
    assert from_env.event_decoder().channels == ("email", "viber", "telegram")  # the worker's and replay's


def test_a_channel_list_of_another_type_is_refused():
    bad: dict[str, Any] = {"channels": {"email": True}}
    with pytest.raises(ConfigError, match="channels: expected a list of channel names"):
        DetectorConfig.from_mapping(bad)


def test_replay_rejects_a_consent_event_for_a_channel_not_configured(tmp_path):
    log = tmp_path / "events.jsonl"
    rows = [{"event_id": f"k{i}", "type": "consent", "customer_id": "c", "occurred_at": "2026-01-02T00:00:00Z",
             "channel": channel, "granted": True} for i, channel in enumerate(["viber", "fax", "messenger"])]
    log.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    rejects: list[Any] = []
    result = replay(str(log), on_reject=rejects.append)
    assert [(r.position, r.reason) for r in rejects] == [(2, "unknown_channel")]
    assert result.states["c"].consent[0::3] == ["viber", "messenger"]
    rejects.clear()
    replay(str(log), DetectorConfig(channels=("fax",)), on_reject=rejects.append)  # the replay's own channels
    assert [(r.position, r.reason) for r in rejects] == [(1, "unknown_channel"), (3, "unknown_channel")]


# -- the rules by family -------------------------------------------------------------


def run(events: list[dict[str, Any]], until_day: float, cfg: DetectorConfig = CFG) -> list[Any]:
    """Every decision of `events` (applied in order) with the clock advanced to `until_day`."""
    core = PartitionCore(Engine(cfg), {})
    decoder = EventDecoder(channels=cfg.channels)
    out = []
    for e in events:
        decisions, _ = core.apply(decoder.validate(e))
        out += decisions
        out += core.advance(core.max_event)
    out += core.advance(T0 + int(until_day * DAY_MS))
    return out


def event(type_: str, day: float, cid: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{cid}-{type_}-{day}-{sorted(fields.items())}", "type": type_, "customer_id": cid,
            "occurred_at": iso_ms(T0 + int(day * DAY_MS)), **fields}


def grant(day: float, channel: str, granted: bool = True, cid: str = "alice") -> dict[str, Any]:
    return event("consent", day, cid, channel=channel, granted=granted)


def order(day: float, cid: str = "alice") -> dict[str, Any]:
    return event("order", day, cid, order_id=f"{cid}-o{day}", category="grocery", amount=30.0)


def rating(day: float, cid: str = "alice") -> dict[str, Any]:
    return event("courier_rating", day, cid, order_id=f"{cid}-o0", rating=1)


def by_kind(decisions: list[Any]) -> dict[tuple[str, str], Any]:
    return {(d.kind, d.stage): d for d in decisions}


def test_a_win_back_without_any_grant_is_suppressed_no_consent_and_audited():
    [at_risk, dormant] = run([order(0)], 15)
    assert (at_risk.kind, at_risk.family) == ("silence", "win_back")
    assert (at_risk.suppressed, at_risk.channels) == ("no_consent", ())
    assert dormant.suppressed == "no_consent"
    data = to_cloudevent(at_risk, CFG.version)["data"]
    assert (data["decision"], data["suppression_reason"], data["channels"]) == ("suppressed", "no_consent", [])


def test_a_suppressed_win_back_goes_to_the_audit_topic_and_is_counted():
    settings = Settings()
    metrics = Metrics(CollectorRegistry())
    clock = Clock(T0)
    rt = Runtime(settings, {}, metrics, clock)
    rt.on_input("orders", 0, 0, b"c-1", raw_order("c-1", "e1", T0))
    clock.now = T0 + 8 * DAY_MS
    rt.tick_times([0], lambda _: 0, lambda _: 0)
    out = rt.on_tick(0, b'{"now": %d}' % clock.now)
    assert [o.topic for o in out] == ["churn-trigger-audit"]
    assert metrics.registry.get_sample_value("churn_triggers_total", {"kind": "silence", "decision": "no_consent"}) == 1


def test_a_win_back_lists_exactly_the_granted_channels_in_the_configured_order():
    decisions = run([grant(0, "viber"), grant(0, "email"), order(0)], 8)
    [at_risk] = decisions
    assert at_risk.suppressed is None
    assert at_risk.channels == ("email", "viber")


def test_retention_is_marketing_too():
    """A basket value drop (retention) needs a grant like a win-back; with one it lists the granted channels."""
    amounts = [100.0] * 4 + [30.0] * 3
    orders = [{**order(i * 3), "amount": a} for i, a in enumerate(amounts)]
    [drop] = [d for d in run(orders, 20) if d.kind == "basket_value_drop"]
    assert (drop.family, drop.suppressed) == ("retention", "no_consent")
    [drop] = [d for d in run([grant(0, "sms"), *orders], 20) if d.kind == "basket_value_drop"]
    assert (drop.suppressed, drop.channels) == (None, ("sms",))


def test_service_recovery_without_any_consent_event_goes_out_on_every_channel():
    found = by_kind(run([order(0), rating(1)], 5))
    for stage in ("now", "follow_up"):
        d = found["negative_rating", stage]
        assert (d.family, d.suppressed) == ("service_recovery", None)
        assert d.channels == ("email", "sms", "push", "viber", "messenger")


def test_service_recovery_after_an_opt_out_of_one_channel_uses_the_others():
    d = by_kind(run([order(0), grant(0.5, "email", False), rating(1)], 2))["negative_rating", "now"]
    assert (d.suppressed, d.channels) == (None, ("sms", "push", "viber", "messenger"))


def test_service_recovery_after_an_opt_out_of_all_is_suppressed_opted_out():
    found = by_kind(run([order(0), grant(0.5, "all", False), rating(1)], 15))
    for key in [("negative_rating", "now"), ("negative_rating", "follow_up"), ("silence", "at_risk")]:
        assert (found[key].suppressed, found[key].channels) == ("opted_out", ()), key


def test_opting_out_of_every_channel_one_by_one_is_opting_out():
    events = [order(0)] + [grant(0.5, ch, False) for ch in CFG.channels] + [rating(1)]
    assert by_kind(run(events, 2))["negative_rating", "now"].suppressed == "opted_out"


def test_the_win_back_requirement_can_be_turned_off():
    cfg = DetectorConfig(marketing_consent_required=False)
    [at_risk, _] = run([order(0)], 15, cfg)
    assert (at_risk.suppressed, at_risk.channels) == (None, cfg.channels)
    [at_risk, _] = run([order(0), grant(0.5, "email", False)], 15, cfg)
    assert (at_risk.suppressed, at_risk.channels) == (None, ("sms", "push", "viber", "messenger"))
    from_env = load_settings(env={"CHURN_DETECTOR_MARKETING_CONSENT_REQUIRED": "false"}).detector
    assert from_env == cfg
    assert from_env.version != CFG.version


def test_consent_required_asks_a_grant_of_service_recovery_too():
    cfg = DetectorConfig(consent_required=True)
    d = by_kind(run([order(0), rating(1)], 2, cfg))["negative_rating", "now"]
    assert (d.suppressed, d.channels) == ("no_consent", ())
    d = by_kind(run([order(0), grant(0.5, "push"), rating(1)], 2, cfg))["negative_rating", "now"]
    assert (d.suppressed, d.channels) == (None, ("push",))


def test_measurement_events_are_never_suppressed_and_list_the_marketing_channels():
    returned = [d for d in run([order(0), grant(0, "sms"), order(9)], 9) if d.kind == "customer_returned"]
    assert [(d.suppressed, d.channels) for d in returned] == [(None, ("sms",))]
    # without a grant the win-back was suppressed (no_consent): the order after it is no return
    assert [d.kind for d in run([order(0), order(9)], 9)] == ["silence"]


def test_the_demo_customers_grant_consent_so_the_demo_shows_win_backs():
    from streams.dev.samples import SampleGenerator

    history = SampleGenerator(seed=7, customers=60).history(1_790_000_000_000)
    decisions: list[tuple[str, str]] = []
    r = Replayer(on_trigger=lambda _ce, d: decisions.append((d.kind, d.suppressed or "emit")))
    r.run(r.decoder().validate(e) for e in history)
    assert ("silence", "emit") in decisions
    assert ("silence", "no_consent") in decisions  # every tenth customer granted nothing
    channels = {e["channel"] for e in history if e["type"] == "consent" and e["granted"]}
    assert {"viber", "messenger"} <= channels
