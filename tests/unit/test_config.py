"""One configuration schema: file and environment agree, every setting is documented, bad values fail clearly."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from detectors.config import DAY_MS, HOUR_MS, DetectorConfig, format_duration, parse_duration, setting_names
from schemas.errors import ConfigError
from streams.settings import _TOPIC_KEYS, _WORKER_KEYS, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def _documented() -> dict[str, str]:
    """setting name -> default cell, from the tables of docs/configuration.md."""
    rows = re.findall(r"^\| `([a-z_]+)`[^|]*\| ([^|]+) \|", DOC, flags=re.M)
    return {name: default.strip() for name, default in rows}


def test_every_detector_setting_is_documented_with_its_default():
    documented = _documented()
    cfg = DetectorConfig()
    for name in setting_names():
        assert name in documented, f"docs/configuration.md lacks detector setting {name}"
        field = name if hasattr(cfg, name) else f"{name}_ms"
        value = getattr(cfg, field)
        if isinstance(value, bool):
            assert documented[name] == f"`{str(value).lower()}`", name
        elif field.endswith("_ms"):
            shown = documented[name].split("`")[1]
            assert parse_duration(shown, name, allow_zero=True) == value, (name, shown, format_duration(value))
        elif isinstance(value, (int, float, str)):
            assert documented[name] == f"`{value}`", name
    assert "params" in documented


def test_every_worker_setting_is_documented():
    documented = _documented()
    for name in [*_WORKER_KEYS, *_TOPIC_KEYS]:
        assert name in documented or f"`{name}`" in DOC, name


def test_file_and_environment_give_the_same_configuration(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[detector]\nholdout_share = 0.05\nholdout_salt = "spring"\nconsent_required = true\n'
        'rating_follow_up = "48h"\nbasket_recent_orders = 4\n'
        '[detector.silence_windows]\npharmacy = "25d/50d"\n'
        '[detector.cooldowns]\nnegative_rating = "3d"\ndelivery_late = "0s"\n'
    )
    from_file = load_settings(env={"CHURN_CONFIG": str(toml)}).detector
    from_env = load_settings(env={
        "CHURN_DETECTOR_HOLDOUT_SHARE": "0.05", "CHURN_DETECTOR_HOLDOUT_SALT": "spring",
        "CHURN_DETECTOR_CONSENT_REQUIRED": "true", "CHURN_DETECTOR_RATING_FOLLOW_UP": "48h",
        "CHURN_DETECTOR_BASKET_RECENT_ORDERS": "4", "CHURN_DETECTOR_SILENCE_WINDOWS": "pharmacy=25d/50d",
        "CHURN_DETECTOR_COOLDOWNS": "negative_rating=3d,delivery_late=0s",
    }).detector
    assert from_file == from_env
    assert from_file.version == from_env.version != DetectorConfig().version
    assert from_file.holdout_share == 0.05
    assert from_file.consent_required is True
    assert from_file.rating_follow_up_ms == 48 * HOUR_MS
    assert from_file.silence_windows["pharmacy"] == (25 * DAY_MS, 50 * DAY_MS)
    assert from_file.silence_windows["grocery"] == (7 * DAY_MS, 14 * DAY_MS)   # merged over the defaults
    assert from_file.cooldowns["negative_rating"] == 3 * DAY_MS
    assert from_file.cooldowns["delivery_late"] == 0
    assert from_file.cooldowns["delivery_failed"] == DAY_MS


def test_params_setting_loads_a_fitted_file(tmp_path):
    params = tmp_path / "p.json"
    params.write_bytes(orjson.dumps({"model": "bgnbd", "time_unit": "weeks", "r": 0.243, "alpha": 4.414,
                                     "a": 0.793, "b": 2.426, "rfm": {"recency_days": [10, 20],
                                                                     "frequency": [1, 2], "monetary": [5, 9]}}))
    cfg = load_settings(env={"CHURN_DETECTOR_PARAMS": str(params)}).detector
    assert cfg.cadence is not None
    assert cfg.cadence.alpha == 4.414
    assert cfg.cadence.unit_ms == 7 * DAY_MS
    assert cfg.rfm.recency_days == (10.0, 20.0)
    assert cfg.version != DetectorConfig().version


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"CHURN_DETECTOR_HOLDOUT_SHARE": "1.5"}, ("holdout_share", "1.5")),
        ({"CHURN_DETECTOR_CONSENT_REQUIRED": "maybe"}, ("consent_required", "true or false")),
        ({"CHURN_DETECTOR_CADENCE_DORMANT_P_ALIVE": "0.7"}, ("thresholds must fall",)),
        ({"CHURN_DETECTOR_COOLDOWNS": "silence_forever=3d"}, ("cooldowns", "silence_forever")),
        ({"CHURN_DETECTOR_COOLDOWNS": "negative_rating"}, ("cooldowns", "kind=duration")),
        ({"CHURN_DETECTOR_LATE_REPEAT_COUNT": "9"}, ("late_repeat_count", "2..5")),
        ({"CHURN_DETECTOR_WINBACK_MAX_EPISODES": "0"}, ("winback_max_episodes",)),
        ({"CHURN_DETECTOR_RETURN_EXCLUSION": "soon"}, ("return_exclusion", "duration")),
        ({"CHURN_DETECTOR_BASKET_DROP_RATIO": "1"}, ("basket_drop_ratio",)),
        ({"CHURN_DETECTOR_HOLDOUT_SALT": ""}, ("holdout_salt",)),
        ({"CHURN_DETECTOR_PARAMS": "/nonexistent/p.json"}, ("parameter file", "not found")),
        ({"CHURN_DETECTOR_NO_SUCH_THING": "1"}, ("unknown detector setting", "no_such_thing")),
        ({"CHURN_MERGE_WAIT": "soon"}, ("merge_wait", "duration")),
        ({"CHURN_PRODUCER_DELAY": "-1s"}, ("producer_delay",)),
        ({"CHURN_MERGE_MAX_HELD": "-1"}, ("merge_max_held", "negative")),
    ],
)
def test_bad_values_fail_at_start_up_naming_the_setting(env, fragments):
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    for f in fragments:
        assert f in str(err.value)


def test_zero_lateness_and_zero_holdout_are_allowed():
    cfg = load_settings(env={"CHURN_DETECTOR_ALLOWED_LATENESS": "0s", "CHURN_DETECTOR_HOLDOUT_SHARE": "0"}).detector
    assert cfg.allowed_lateness_ms == 0
    assert cfg.holdout_share == 0.0


@pytest.mark.parametrize(("raw", "ms"), [("0", 0), ("0s", 0), ("500ms", 500), ("3s", 3000)])
def test_merge_wait_and_producer_delay_take_durations_and_a_bare_zero(raw, ms):
    assert load_settings(env={"CHURN_MERGE_WAIT": raw}).merge_wait_ms == ms
    assert load_settings(env={"CHURN_PRODUCER_DELAY": raw}).producer_delay_ms == ms
    assert load_settings(env={}).producer_delay_ms == 2000


def test_max_delivery_offset_bounds_the_decoder_of_worker_and_replay():
    assert load_settings(env={}).event_decoder().max_delivery_offset_ms == 30 * DAY_MS
    settings = load_settings(env={"CHURN_MAX_DELIVERY_OFFSET": "7d", "CHURN_MAX_FUTURE_SKEW": "1m"})
    decoder = settings.event_decoder()
    assert (decoder.max_delivery_offset_ms, decoder.max_future_skew_ms) == (7 * DAY_MS, 60_000)
    with pytest.raises(ConfigError, match="max_delivery_offset"):
        load_settings(env={"CHURN_MAX_DELIVERY_OFFSET": "0"})
