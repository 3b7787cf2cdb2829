"""Consent as the playbooks ask: configurable channels, each a record of its own, `all` for every one."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.config import DAY_MS, DetectorConfig
from detectors.state import CustomerState
from detectors.suppression import channels_at, on_consent
from schemas import Event
from schemas.errors import ConfigError
from streams.settings import load_settings

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
    import orjson

    from streams.replay import replay

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
