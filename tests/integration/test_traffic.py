"""The compose stack's traffic generator publishes valid events (and a few bad ones) to a real broker."""

from __future__ import annotations

import subprocess
import sys

import orjson

from schemas import EventDecoder
from tests.conftest import ROOT, consume


def test_traffic_generator_publishes_schema_valid_events_keyed_by_customer(broker, topics):
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
           **{f"CHURN_TOPIC_{f.upper()}": getattr(topics, f) for f in topics.__dataclass_fields__}}
    proc = subprocess.run(
        [sys.executable, "-m", "streams.dev.traffic", "--customers", "5", "--rate", "40", "--duration", "1",
         "--no-history", "--invalid-share", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped after" in proc.stdout
    orders = consume(broker.bootstrap, topics.orders, until=lambda m: len(m) >= 10, timeout=20)
    assert len(orders) >= 10
    decoder = EventDecoder()
    for m in orders:
        ev = decoder.decode(m.value)
        assert m.key == ev.customer_id.encode()
        assert orjson.loads(m.value)["type"] == "order"
