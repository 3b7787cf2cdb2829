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
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every query of every dashboard panel."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target['refId']}", target["expr"]))
    return out


# How every alert's runbook_url is built: the external label `runbook_base_url`, or the
# repository-relative page when Prometheus has no such label, then the alert's anchor.
RUNBOOK_URL = "{{ with $externalLabels.runbook_base_url }}{{ . }}{{ else }}docs/operations.md{{ end }}#"

# The matchers every dashboard query puts on every raw series it selects.
DASHBOARD_MATCHERS = 'job="$job", instance=~"$instance"'


def grafana_to_promql(expr: str, rate_interval: str, range_: str, job: str = "churn-signals",
                      instance: str = ".*") -> str:
    """Substitute the Grafana variables the dashboard uses, as Grafana would.

    `instance` is a regex: the dashboard's "All" value is `.*`.
    """
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
            .replace("$job", job).replace("$instance", instance))


def series_selected(expr: str) -> str:
    """The expression whose series an alert needs: `absent(x)` needs `x` to exist, others themselves."""
    m = re.fullmatch(r"\s*absent\((.*)\)\s*", expr, re.DOTALL)
    return m.group(1) if m else with_bool(expr)


def raw_selectors(expr: str) -> list[str]:
    """Every raw metric selector of an expression with its braces: `churn_x{a="b"}` (or `churn_x` bare)."""
    return re.findall(r"\b(?:(?:churn|faust)_[a-z0-9_]+|up)\b(?:\{[^{}]*\})?(?=\s*[\[)\s]|$)", expr)


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
