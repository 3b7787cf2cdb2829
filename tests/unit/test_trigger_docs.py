"""docs/triggers.md stays true: every kind has a section and a payload that the contract accepts."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import orjson

from detectors.kinds import NAMES as KINDS
from schemas import load_schema

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "triggers.md").read_text()


def _examples() -> list[dict]:
    return [orjson.loads(block) for block in re.findall(r"```json\n(.*?)\n```", DOC, flags=re.S)]


def test_every_kind_has_a_section_with_an_example_payload():
    sections = re.split(r"^### ", DOC, flags=re.M)[1:]
    by_kind = {s.split("\n", 1)[0].strip("` "): s for s in sections}
    for kind in KINDS:
        assert kind in by_kind, kind
        payloads = [orjson.loads(b) for b in re.findall(r"```json\n(.*?)\n```", by_kind[kind], flags=re.S)]
        assert any(p["kind"] == kind for p in payloads), kind


def test_every_example_is_valid_under_the_contract():
    envelope, payload = load_schema("cloudevent-v1.json"), load_schema("trigger-v1.json")
    examples = _examples()
    assert len(examples) >= len(KINDS) + 2
    for ex in examples:
        if "specversion" in ex:
            jsonschema.validate(ex, envelope)
            jsonschema.validate(ex["data"], payload)
        else:
            jsonschema.validate(ex, payload)


def test_the_contract_lists_the_documented_kinds_and_reasons():
    schema = load_schema("trigger-v1.json")
    kind_doc = schema["properties"]["kind"]["description"]
    assert all(k in kind_doc for k in KINDS)
    reasons = [r for r in schema["properties"]["suppression_reason"]["enum"] if r]
    assert all(f"`{r}`" in DOC for r in reasons)


def test_the_suspected_cause_of_a_silence_is_documented_with_what_to_send():
    schema = load_schema("trigger-v1.json")["properties"]
    section = DOC.split("#### Suspected cause", 1)[1].split("\n### ", 1)[0]
    assert all(f"`{cause}`" in section for cause in schema["suspected_cause"]["enum"])
    assert "discount" in section
    silences = [ex for ex in _examples() if ex.get("kind") == "silence"]
    assert {ex["suspected_cause"] for ex in silences} == {"service", "none"}
    assert all(("service_failures" in ex) for ex in silences)
