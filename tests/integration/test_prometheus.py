"""A real Prometheus scraping a real worker: every dashboard query and alert returns series.

Debian's `prometheus` server (installed by scripts/system-deps.sh) runs on a
free loopback port with a temporary data folder and the rule file from
deploy/. A worker on the test broker gets traffic that produces every metric
the dashboard and the alerts use: valid events, duplicates, a late event,
malformed messages for the DLQ, and silence deadlines that fire on short
windows. Then every panel query, recording rule and alert expression is
evaluated; an empty result means a misspelt or never-produced metric.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from detectors.envelope import iso_ms
from streams.broker import free_port
from tests.conftest import produce, produce_events, wait_for
from tests.deploy_queries import (
    RULES,
    alerts,
    dashboard,
    grafana_to_promql,
    metric_names,
    panel_queries,
    recordings,
    series_selected,
    tool,
)

RUNBOOK_BASE = "https://runbooks.test/churn-signals/operations"

SHORT_WINDOWS = {
    "CHURN_DETECTOR_SILENCE_WINDOWS": "grocery=3s/6s,fashion=3s/6s,home=3s/6s,other=3s/6s",
    "CHURN_DETECTOR_SILENCE_LOST": "9s",
    "CHURN_DETECTOR_ALLOWED_LATENESS": "1s",  # the default 15m would hold these second-long windows back
}


class Prometheus:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        try:
            data = self.api("query", query=expr)
        except urllib.error.HTTPError as exc:  # 400: the expression does not parse
            raise AssertionError(f"{expr!r}: {exc.read().decode()}") from None
        return data["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """Factory: a Prometheus server scraping the given worker ports every second."""
    binary = tool("prometheus")
    started: list[Prometheus] = []

    def start(worker_ports: list[int]) -> Prometheus:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "external_labels": {"runbook_base_url": RUNBOOK_BASE}},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "churn-signals",
                                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in worker_ports]}]}],
        }
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        log = tmp_path / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        prom = Prometheus(port, proc, log)
        started.append(prom)

        def up() -> bool:
            assert proc.poll() is None, f"prometheus exited:\n{log.read_text()[-3000:]}"
            try:
                return bool(prom.query('up{job="churn-signals"} == 1'))
            except OSError:
                return False

        wait_for(up, timeout=30, what="prometheus to scrape the worker")
        return prom

    yield start
    for prom in started:
        prom.proc.terminate()
        try:
            prom.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.proc.kill()
            prom.proc.wait(timeout=5)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _order(cid: str, eid: str, ts: int, category: str = "grocery") -> dict[str, Any]:
    return {"event_id": eid, "type": "order", "customer_id": cid, "occurred_at": iso_ms(ts),
            "order_id": f"o-{eid}", "category": category, "amount": 25.0}


def _drive_traffic(broker: Any, topics: Any, worker: Any) -> None:
    """Produce input that makes the worker export every metric family the deploy files use."""
    now = _now_ms()
    rating = {"event_id": "r1", "type": "courier_rating", "customer_id": "c-rate", "occurred_at": iso_ms(now),
              "order_id": "o-r", "rating": 1}
    grant = {"event_id": "g1", "type": "consent", "customer_id": "c-quiet", "occurred_at": iso_ms(now - 1000),
             "channel": "all", "granted": True}  # its win-back may go out: the order after it is a return
    produce_events(broker.bootstrap, topics, [
        grant,
        _order("c-quiet", "q1", now),                                   # silence fires on the clock alone
        rating, rating,                                                 # a duplicate
        {"event_id": "d1", "type": "delivery", "customer_id": "c-del", "occurred_at": iso_ms(now),
         "order_id": "o-d", "status": "failed"},
    ])
    produce(broker.bootstrap, [
        (topics.orders, b"c-bad", b"{not json"),
        (topics.orders, b"c-bad", orjson.dumps({**_order("c-bad", "b2", now), "amount": -1})),
    ])
    wait_for(lambda: worker.metric("churn_triggers_total", kind="silence") >= 3, timeout=60,
             what="three silence stages fired by the clock")
    # The quiet customer orders again: a return, counted under the customer's holdout group.
    produce_events(broker.bootstrap, topics, [_order("c-quiet", "q2", _now_ms())])
    wait_for(lambda: worker.metric("churn_returns_total") == 1, what="the return counted")
    # Now the partition clock is ahead of this event's time: it counts as late.
    produce_events(broker.bootstrap, topics, [_order("c-late", "l1", now - 60_000)])
    wait_for(lambda: worker.metric("churn_events_total", outcome="late") >= 1, what="a late event counted")


def test_every_dashboard_query_and_alert_returns_series_from_a_real_worker(broker, topics, start_worker,
                                                                           prometheus):
    worker = start_worker(SHORT_WINDOWS)
    prom = prometheus([worker.web_port])
    _drive_traffic(broker, topics, worker)
    assert worker.metric("churn_dlq_messages_total") == 2
    assert worker.metric("churn_events_total", outcome="duplicate") == 1

    # Prometheus has scraped the final state (and evaluated rules on it) before we query.
    wait_for(lambda: (prom.value('sum(churn_triggers_total{kind="silence"})') or 0) >= 3
             and (prom.value('sum(churn_events_total{outcome="late"})') or 0) >= 1
             and (prom.value("sum(churn_returns_total)") or 0) >= 1, timeout=30,
             what="prometheus to scrape the triggers")
    wait_for(lambda: all(prom.query(r["record"]) for r in recordings()), timeout=30,
             what="every recording rule to produce a series")

    empty = []
    for where, expr in panel_queries():
        promql = grafana_to_promql(expr, rate_interval="1m", range_="10m")
        if not prom.query(promql):
            empty.append(f"panel {where}: {promql}")
    for rule in alerts():
        if not prom.query(series_selected(rule["expr"])):
            empty.append(f"alert {rule['alert']}: {series_selected(rule['expr'])}")
    assert not empty, "queries with no series:\n" + "\n".join(empty)

    # The dashboard's job and instance variables list this worker (Grafana's label_values(m, l)
    # is the `l` label of the series `m` selects).
    variables = {v["name"]: v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"}
    assert variables["job"] == "label_values(churn_worker_ready, job)"
    assert {r["metric"]["job"] for r in prom.query("churn_worker_ready")} == {"churn-signals"}
    instance_series = variables["instance"].removeprefix("label_values(").removesuffix(", instance)")
    assert {r["metric"]["instance"] for r in prom.query(grafana_to_promql(instance_series, "1m", "10m"))} == \
        {f"127.0.0.1:{worker.web_port}"}
    # One worker chosen by name shows the same as "All" when it is the only one.
    up_panel = panel_queries()[0][1]
    assert prom.value(grafana_to_promql(up_panel, "1m", "10m")) == 1
    assert prom.value(grafana_to_promql(up_panel, "1m", "10m", instance=f"127.0.0.1:{worker.web_port}")) == 1
    assert prom.value(grafana_to_promql(up_panel, "1m", "10m", instance="elsewhere:6066")) is None

    # Every raw metric any deploy file names exists as a series, on its own.
    names = set().union(*(metric_names(e) for _, e in panel_queries()),
                        *(metric_names(r["expr"]) for r in alerts() + recordings()))
    missing = sorted(n for n in names if not prom.query(f"count({n})"))
    assert not missing, f"metrics named in deploy/ that the worker does not export: {missing}"

    groups = prom.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert {r.get("alert") or r["record"] for r in alerts() + recordings()} <= set(loaded)
    unhealthy = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    reactivation = [expr for where, expr in panel_queries() if where.startswith("Re-activation")]
    returned = sum(prom.value(grafana_to_promql(e, "1m", "10m")) or 0 for e in reactivation)
    assert returned > 0  # one return over one silence episode's triggers, in whichever group

    # The alerts see real data: 2 of 9 input messages were dead-lettered, far above the
    # 5% ratio, so exactly that alert is pending (its `for:` is longer than this test).
    def active() -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in prom.api("alerts")["alerts"]}

    wait_for(lambda: "ChurnDLQRatioHigh" in active(), timeout=30, what="the DLQ ratio alert to be pending")
    now_active = active()
    assert now_active["ChurnDLQRatioHigh"] == "pending"
    # Its runbook link is built from the one configured base.
    links = {a["labels"]["alertname"]: a["annotations"]["runbook_url"] for a in prom.api("alerts")["alerts"]}
    assert links["ChurnDLQRatioHigh"] == f"{RUNBOOK_BASE}#churndlqratiohigh"
    # Nothing else is wrong with this worker. The trigger-rate baseline is only seconds
    # old here, so that alert may legitimately be pending; it cannot fire within 30m.
    assert set(now_active) <= {"ChurnDLQRatioHigh", "ChurnTriggerRateAnomalous"}, now_active
    assert "firing" not in now_active.values()
