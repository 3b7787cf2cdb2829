"""The PromQL the deploy/ files contain, read from the files themselves.

Used by the promtool/config tests and by the real-Prometheus test, so both
look at exactly what an operator deploys: the dashboard JSON and the rule file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "churn-signals.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "churn-signals.test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "churn-signals.json"

_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")
_BRACES = re.compile(r"\{[^{}]*\}")


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recordings() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every query of every dashboard panel."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target['refId']}", target["expr"]))
    return out


def grafana_to_promql(expr: str, rate_interval: str, range_: str) -> str:
    """Substitute the Grafana variables the dashboard uses, as Grafana would."""
    return expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)


def with_bool(expr: str) -> str:
    """`a > 3` -> `a > bool 3`: a comparison that keeps every series instead of filtering.

    Label matchers (`{outcome!="invalid"}`) are left alone.
    """
    kept: list[str] = []

    def hide(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\x00{len(kept) - 1}\x00"

    masked = _BRACES.sub(hide, expr)
    masked = _COMPARISON.sub(lambda m: f"{m.group(1)} bool", masked)
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], masked)


def metric_names(expr: str) -> set[str]:
    """Raw metric names (churn_*, faust_*, up) an expression selects."""
    return set(re.findall(r"\b((?:churn|faust)_[a-z0-9_]+|up)\b(?=\s*[\[{)\s]|$)", _BRACES.sub("{}", expr)))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make system-deps` (installs Debian's prometheus package)")
    return path
