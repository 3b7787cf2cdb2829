"""The compiled core (make core) behaves exactly like the Python source it is compiled from.

Every other test runs whichever build is installed; CI builds the compiled one
(`make core` with --require), so this test runs the same replay once more on a
copy of the pure Python source and compares the outputs byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from streams.corebuild import StaleCore, check_fresh, kind
from streams.dev.samples import SampleGenerator

ROOT = Path(__file__).resolve().parents[2]
END = to_epoch_ms("2026-06-01T00:00:00Z")


def _replay(cwd: Path, log: Path, out: Path) -> str:
    """Replay `log` with the code under `cwd`; return the core kind that ran it."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    for k in [k for k in env if k.startswith("CHURN_")]:
        del env[k]
    args = ["replay", str(log), "--until", iso_ms(END), "--out", str(out / "triggers.jsonl"),
            "--snapshot-out", str(out / "snapshot.jsonl"), "--progress", "never"]
    code = (f"import sys, streams.corebuild, streams.cli; print(streams.corebuild.kind()); "
            f"sys.exit(streams.cli.main({args!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=240, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[0]


def test_compiled_core_gives_the_same_triggers_and_states_as_the_python_source(tmp_path):
    if kind() == "pure Python":
        if os.environ.get("CI"):
            pytest.fail("CI compiles the core (make core, --require), yet the Python source runs")
        pytest.skip("the core is not compiled here: `make core` builds it")
    pure = tmp_path / "pure"
    for pkg in ("detectors", "schemas", "streams"):
        shutil.copytree(ROOT / pkg, pure / pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    log = tmp_path / "history.jsonl"
    events = SampleGenerator(seed=11, customers=300).history(END, days=240)
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()

    assert _replay(ROOT, log, tmp_path / "c") == "compiled (mypyc)"
    assert _replay(pure, log, tmp_path / "p") == "pure Python"

    triggers = (tmp_path / "c" / "triggers.jsonl").read_bytes()
    assert triggers.count(b"\n") > 100  # enough triggers of several kinds to mean something
    kinds = {orjson.loads(line)["data"]["kind"] for line in triggers.splitlines()}
    assert len(kinds) >= 4, kinds
    assert triggers == (tmp_path / "p" / "triggers.jsonl").read_bytes()
    assert (tmp_path / "c" / "snapshot.jsonl").read_bytes() == (tmp_path / "p" / "snapshot.jsonl").read_bytes()


def test_a_core_source_newer_than_its_compiled_module_stops_every_command(tmp_path):
    if kind() == "pure Python":
        pytest.skip("the core is not compiled here: `make core` builds it")
    src = ROOT / "detectors" / "basket.py"
    st = src.stat()
    try:
        os.utime(src, (st.st_atime, time.time() + 3600))  # newer than any build, however recent
        with pytest.raises(StaleCore, match=r"older than detectors/basket\.py: run `make core`"):
            check_fresh()
    finally:
        os.utime(src, (st.st_atime, st.st_mtime))
    check_fresh()
