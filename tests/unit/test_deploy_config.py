"""deploy/ and docker-compose.yml are valid, consistent with each other and documented.

promtool (Debian's `prometheus` package, installed by scripts/system-deps.sh)
checks the scrape config and rule syntax and runs the alert unit tests;
docker-compose (Debian's `docker-compose` package) validates the compose file
without a Docker engine. Whether the queries return data from a real worker
is tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from streams.live.metrics import Metrics
from tests.deploy_queries import (
    DASHBOARD,
    DASHBOARD_MATCHERS,
    DEPLOY,
    PROM_CONFIG,
    ROOT,
    RULE_TESTS,
    RULES,
    RUNBOOK_URL,
    alerts,
    dashboard,
    grafana_to_promql,
    metric_names,
    panel_queries,
    raw_selectors,
    recordings,
    tool,
)

OPERATIONS = ROOT / "docs" / "operations.md"
COMPOSE = ROOT / "docker-compose.yml"


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_promtool_accepts_the_scrape_config_and_its_rule_files():
    out = _run(tool("promtool"), "check", "config", str(PROM_CONFIG))
    assert "1 rule files found" in out


def test_promtool_accepts_the_rules():
    out = _run(tool("promtool"), "check", "rules", str(RULES))
    assert f"{len(alerts()) + len(recordings())} rules found" in out


def test_alert_rules_pass_their_promtool_unit_tests():
    out = _run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_that_expects_it_to_fire():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    quiet = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if not case["exp_alerts"]}
    names = {a["alert"] for a in alerts()}
    assert names - fired == set()
    assert names - quiet == set()  # and one where it must stay quiet


REQUIRED_ALERT_TOPICS = {
    "ChurnWorkerDown", "ChurnConsumerLagGrowing", "ChurnDLQRatioHigh", "ChurnDeadlinesOverdue",
    "ChurnWatermarkStalled", "ChurnTriggerRateAnomalous", "ChurnNoTriggersWhileEventsFlow",
}


def test_alerts_cover_the_required_failure_modes_with_summary_description_and_runbook():
    by_name = {a["alert"]: a for a in alerts()}
    assert set(by_name) >= REQUIRED_ALERT_TOPICS
    docs = OPERATIONS.read_text()
    for name, a in by_name.items():
        ann = a["annotations"]
        assert {"summary", "description", "runbook", "runbook_url"} <= set(ann), name
        assert len(ann["runbook"].split()) >= 20, f"{name}: the runbook is a paragraph, not a word"
        assert a["labels"]["severity"] in {"warning", "critical"}
        assert ann["runbook_url"].startswith(RUNBOOK_URL), f"{name}: runbook_url is not built from the one base"
        anchor = ann["runbook_url"].removeprefix(RUNBOOK_URL)
        heading = re.search(rf"^#+ `?{name}`?\s*$", docs, re.MULTILINE)
        assert heading, f"docs/operations.md has no heading for {name}"
        assert anchor == name.lower()


def test_dashboard_panels_use_the_datasource_variable_and_have_queries():
    # No hard-coded datasource uid: the dashboard imports into any Grafana and uses the
    # Prometheus chosen in its `datasource` variable (the provisioned one by default).
    d = dashboard()
    assert d["uid"] == "churn-signals"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in d["panels"] if p["type"] != "row"]
    assert panels
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t["datasource"] == p["datasource"], p["title"]
    for name in ("job", "instance"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["isDefault"] is True  # what the variable picks in the compose stack


def test_every_dashboard_query_selects_the_chosen_job_and_instances():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert "job=\"$job\"" in variables["instance"]["query"]["query"]
    assert variables["instance"]["multi"]
    assert variables["instance"]["includeAll"]
    assert variables["instance"]["allValue"] == ".*"
    unscoped = [(where, sel) for where, expr in panel_queries() for sel in raw_selectors(expr)
                if DASHBOARD_MATCHERS not in sel]
    assert not unscoped, unscoped
    assert all(raw_selectors(expr) for _, expr in panel_queries())


def test_grafana_substitution_of_the_job_and_instance_variables():
    expr = 'sum(up{job="$job", instance=~"$instance"}[$__range])'
    assert grafana_to_promql(expr, "1m", "10m") == 'sum(up{job="churn-signals", instance=~".*"}[10m])'
    assert grafana_to_promql(expr, "1m", "1h", job="prod", instance="w1:6066|w2:6066") == \
        'sum(up{job="prod", instance=~"w1:6066|w2:6066"}[1h])'


def test_dashboard_shows_what_the_issue_asks_for():
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for word in ("throughput", "consumer lag", "triggers by kind and decision", "dlq", "deadlines",
                 "event-time lag", "treatment vs holdout"):
        assert word in titles, word


def test_dashboard_provisioning_points_at_the_folder_compose_mounts():
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "churn-signals.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith(f"./{DASHBOARD.parent.relative_to(ROOT)}:{path}") for m in mounts), mounts


def test_every_metric_in_deploy_files_is_defined_by_the_worker_or_faust():
    defined = {m.name for m in Metrics().registry.collect()}
    defined |= {f"{n}_bucket" for n in defined} | {f"{n}_sum" for n in defined} | {f"{n}_count" for n in defined}
    defined |= {f"{n}_total" for n in defined}
    used = set().union(*(metric_names(e) for _, e in panel_queries()),
                       *(metric_names(r["expr"]) for r in alerts() + recordings()))
    ours = {n for n in used if n.startswith("churn_")}
    assert ours - defined == set()
    assert {n for n in used if n.startswith("faust_")}, "the dashboard shows some of Faust's own metrics"


def test_operations_doc_lists_every_worker_metric():
    docs = OPERATIONS.read_text()
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in docs, f"{name} missing from the metrics reference in docs/operations.md"


def test_docker_compose_file_is_valid():
    out = _run(tool("docker-compose"), "-f", str(COMPOSE), "config", "--services")
    services = set(out.split())
    assert {"kafka", "kafka-init", "worker-1", "worker-2", "prometheus", "grafana", "traffic"} <= services


def test_compose_mounts_exist_and_prometheus_scrapes_the_compose_workers():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            src = mount.split(":", 1)[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
    targets = {t for sc in yaml.safe_load(PROM_CONFIG.read_text())["scrape_configs"]
               if sc["job_name"] == "churn-signals" for c in sc["static_configs"] for t in c["targets"]}
    workers = {n for n in services if n.startswith("worker-")}
    assert {t.split(":")[0] for t in targets} == workers
    for w in workers:
        env = services[w]["environment"]
        assert env["CHURN_WEB_HOST"] == "0.0.0.0"  # reachable from the Prometheus container
        assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
    assert services["traffic"]["profiles"] == ["traffic"]


@pytest.mark.parametrize("service", ["worker-1", "worker-2"])
def test_compose_workers_share_one_consumer_group(service):
    env = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    assert env["CHURN_APP_ID"] == "churn-signals"
