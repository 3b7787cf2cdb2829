"""The quick-start demo: embedded broker, worker process, sample traffic, triggers printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_shows_history_tally_and_live_triggers():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_"))}
    r = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "45", "--rate", "3"],
                       check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "embedded broker listening on 127.0.0.1:" in out
    assert re.search(r"published \d+ history events for 60 customers", out)
    assert re.search(r"-- history: \d+ triggers", out)
    live = [line for line in out.splitlines() if re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}  cust-", line)]
    assert live, out  # at least one trigger caused by live traffic or the live clock
    finished = re.search(r"demo finished: (\d+) triggers shown", out)
    assert finished, out
    shown = int(finished.group(1))
    assert shown >= len(live)
