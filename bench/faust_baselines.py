"""The two baselines of the live benchmark, as Faust workers on the same broker and topics.

    python bench/faust_baselines.py floor|straightforward --bootstrap H:P --prefix P --app-id A --port N

- floor: one agent over the four input topics that only counts events. Faust's
  own per-event cost on this machine: nothing can consume faster through Faust.
- straightforward: what one would write first: a Table of plain dicts (json
  changelog), stdlib json decoding with required-field checks, the rules inline
  in the agent (negative rating, failed delivery, silence noticed at the next
  order, duplicate event ids), a trigger sent per rule that fires.

Both use the worker's Faust settings (memory store, standby replica, changelog,
group timeouts, producer linger and batch size, records per poll) and serve the
number of events consumed on GET /count, so the benchmark measures all three
the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import faust

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.live.app import MAX_POLL_RECORDS, PRODUCER_LINGER_S, PRODUCER_MAX_BATCH_SIZE  # noqa: E402  (the worker's)

DAY_MS = 86_400_000
WINDOW_MS = {"grocery": 7 * DAY_MS, "fashion": 30 * DAY_MS, "home": 60 * DAY_MS}
REQUIRED = {"order": ("order_id", "category", "amount"), "delivery": ("order_id", "status"),
            "courier_rating": ("order_id", "rating"), "consent": ()}


def make_app(kind: str, bootstrap: str, prefix: str, app_id: str, port: int, partitions: int) -> faust.App:
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", store="memory://", topic_partitions=partitions,
        topic_replication_factor=1, table_standby_replicas=1, web_port=port, web_host="127.0.0.1",
        web_bind="127.0.0.1", autodiscover=False, broker_rebalance_timeout=6.0, broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0, consumer_auto_offset_reset="earliest", producer_acks=-1,
        producer_linger=PRODUCER_LINGER_S, producer_max_batch_size=PRODUCER_MAX_BATCH_SIZE,
        broker_max_poll_records=MAX_POLL_RECORDS,
        datadir=str(Path(tempfile.gettempdir()) / f"churn-bench-{app_id}"),
    )
    inputs = [f"{prefix}{t}" for t in ("orders", "deliveries", "courier-ratings", "customer-consent")]
    source = app.topic(*inputs, key_serializer="raw", value_serializer="raw")
    count = {"n": 0}

    if kind == "floor":
        @app.agent(source, name="count")
        async def count_only(stream: Any) -> None:
            async for _event in stream.events():
                count["n"] += 1
    else:
        table = app.Table("state", default=dict, partitions=partitions)
        triggers = app.topic(f"{prefix}naive-triggers", key_serializer="raw", value_serializer="json")

        @app.agent(source, name="naive")
        async def naive(stream: Any) -> None:
            async for event in stream.events():
                count["n"] += 1
                try:
                    doc = json.loads(event.value)
                    kind_ = doc["type"]
                    cid = doc["customer_id"]
                    ts = int(datetime.fromisoformat(doc["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000)
                    if any(f not in doc for f in REQUIRED[kind_]):
                        continue
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                st = table[cid]
                seen = st.get("seen", [])
                if doc["event_id"] in seen:
                    continue
                st["seen"] = [*seen, doc["event_id"]][-8:]
                fired = None
                if kind_ == "order":
                    last = st.get("last_order", 0)
                    if last and ts - last > WINDOW_MS.get(doc["category"], 30 * DAY_MS):
                        fired = "silence"
                    st["orders"] = st.get("orders", 0) + 1
                    st["amount"] = st.get("amount", 0.0) + float(doc["amount"])
                    st["last_order"] = max(last, ts)
                elif kind_ == "courier_rating" and int(doc["rating"]) <= 2:
                    fired = "negative_rating"
                elif kind_ == "delivery" and doc["status"] in ("failed", "returned"):
                    fired = "delivery_failed"
                table[cid] = st
                if fired:
                    await triggers.send(key=cid.encode(), value={"customer_id": cid, "kind": fired, "at": ts})

    @app.page("/count")
    async def count_page(web: Any, request: Any) -> Any:
        return web.json({"count": count["n"]})

    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("floor", "straightforward"))
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--partitions", type=int, default=4)
    a = p.parse_args(argv)
    app = make_app(a.kind, a.bootstrap, a.prefix, a.app_id, a.port, a.partitions)
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    main()
