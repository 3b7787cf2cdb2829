"""One registry of trigger kinds, one detector contract: everything that names a kind reads the registry.

A kind added to a detector and not to detectors/kinds.py, or to the registry and
not to the docs, the contract, the wording or the metrics, fails here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import detectors
from detectors import kinds
from detectors.config import DetectorConfig
from detectors.detector import HOOKS, SIGNALS
from detectors.kinds import FAMILIES, KINDS, MEASUREMENT, NAMES, SEVERITIES, Kind
from schemas import load_schema
from streams.live.metrics import TRIGGER_KINDS
from streams.wording import kinds_table, reason, with_kinds_table

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "detectors"


def _tree(module: str) -> ast.Module:
    return ast.parse((CORE / f"{module}.py").read_text())


def _core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(detectors.__path__))


def _decision_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for name in _core_modules():
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Decision":
                calls.append((name, node))
    return calls


def test_every_decision_of_the_detectors_takes_its_kind_and_family_from_one_registered_kind():
    calls = _decision_calls()
    assert len(calls) >= 10, "the scan no longer finds the detectors' decisions"
    for module, call in calls:
        args = {k.arg: k.value for k in call.keywords}
        where = f"detectors/{module}.py:{call.lineno}"
        kind, family = args.get("kind"), args.get("family")
        # kind=K.name and family=K.family of one Kind K: never a string typed at the call
        assert isinstance(kind, ast.Attribute), f"{where}: kind= is not a Kind's .name"
        assert kind.attr == "name", f"{where}: kind= is not a Kind's .name"
        assert isinstance(family, ast.Attribute), f"{where}: family= is not a Kind's"
        assert family.attr == "family", f"{where}: family= is not a Kind's"
        assert ast.dump(kind.value) == ast.dump(family.value), f"{where}: kind and family of two kinds"


def test_every_kind_object_in_the_core_is_in_the_registry():
    found = 0
    for name in _core_modules():
        module = importlib.import_module(f"detectors.{name}")
        for value in vars(module).values():
            if isinstance(value, Kind):
                assert value in KINDS, f"detectors/{name}.py: {value!r} is not in kinds.KINDS"
                found += 1
    assert found >= len(KINDS)
    assert len(set(NAMES)) == len(NAMES)


def test_each_kind_has_a_known_family_and_a_severity_per_stage():
    for k in KINDS:
        assert k.family in FAMILIES, k
        assert k.stages, k
        assert set(k.severities) == set(k.stages), k
        assert set(k.severities.values()) <= set(SEVERITIES), k
        # measurement records an outcome, never a contact: `info`, and only measurement is `info`
        assert (set(k.severities.values()) == {"info"}) == (k.family == MEASUREMENT), k


def test_the_cooldown_slots_and_incident_codes_the_state_encodes_never_move():
    # CustomerState.last_emitted holds one time per slot and incidents keep a kind's code: renumbering
    # would read every stored state wrongly. New kinds take the next number.
    assert kinds.COOLDOWN_KINDS == (
        "silence", "frequency_drop", "basket_value_drop", "favourite_category_abandoned",
        "negative_rating", "delivery_failed", "delivery_late", "delivery_late_repeated",
    )
    assert kinds.INCIDENT_KINDS == ("negative_rating", "delivery_failed", "delivery_late", "delivery_late_repeated")
    slots = sorted(k.cooldown_slot for k in KINDS if k.cooldown_slot != kinds.NONE)
    assert slots == list(range(len(slots)))
    codes = sorted(k.incident_code for k in KINDS if k.incident_code != kinds.NONE)
    assert codes == list(range(len(codes)))
    assert all(k.cooldown_slot == kinds.NONE for k in KINDS if k.family == MEASUREMENT)


def test_the_configuration_takes_cooldown_kinds_and_defaults_from_the_registry():
    cfg = DetectorConfig()
    assert cfg.cooldowns == {k.name: k.cooldown_ms for k in KINDS if k.cooldown_ms}
    DetectorConfig.from_mapping({"cooldowns": dict.fromkeys(kinds.COOLDOWN_KINDS, "1d")})


def test_the_metrics_start_a_series_for_every_registered_kind():
    assert tuple(TRIGGER_KINDS) == NAMES


def test_the_contract_lists_exactly_the_registered_kinds():
    description = load_schema("trigger-v1.json")["properties"]["kind"]["description"]
    listed = description.split(": ", 1)[1].split(" (", 1)[0]
    assert [k.strip() for k in listed.split(",")] == list(NAMES)


def test_the_kinds_table_of_the_docs_is_the_registry():
    doc = (ROOT / "docs" / "triggers.md").read_text()
    assert kinds_table() in doc, "docs/triggers.md: run `make docs-kinds`"
    assert with_kinds_table(doc) == doc


def test_every_stage_of_every_kind_has_its_words():
    for k in KINDS:
        for stage in k.stages:
            assert k.reason(stage), (k.name, stage)


def test_a_kind_the_registry_does_not_know_is_worded_as_its_evidence():
    ce = {"data": {"kind": "refund_requested", "stage": "now", "evidence": {"amount": 3, "order_id": "o-1"}}}
    assert reason(ce) == "amount=3, order_id=o-1"


def _defined_functions(module: str) -> dict[str, list[str]]:
    return {node.name: [a.arg for a in node.args.args] for node in _tree(module).body
            if isinstance(node, ast.FunctionDef)}


def test_every_signal_module_provides_its_hooks_with_the_contracts_arguments():
    for module, hooks in SIGNALS.items():
        defined = _defined_functions(module)
        assert set(hooks) == set(HOOKS) & set(defined), f"detectors/{module}.py: hooks {sorted(defined)}"
        for hook in hooks:
            assert tuple(defined[hook]) == HOOKS[hook], f"detectors/{module}.py: {hook}{tuple(defined[hook])}"


def test_the_engine_calls_every_hook_of_the_contract_and_no_other():
    referenced = {(node.value.id, node.attr) for node in ast.walk(_tree("engine"))
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in SIGNALS and node.attr in HOOKS}
    assert referenced == {(m, h) for m, hooks in SIGNALS.items() for h in hooks}


def test_the_scenario_suite_makes_every_registered_kind_and_no_other():
    from tests.unit.test_scenarios import NAMES as SCENARIOS
    from tests.unit.test_scenarios import run_scenario

    made = {ce["data"]["kind"] for name in SCENARIOS for ce in run_scenario(name)[1]}
    assert made == set(NAMES)
