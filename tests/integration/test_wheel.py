"""The wheel the production image installs: the compiled core, from a fresh virtualenv.

Builds the wheel as the Dockerfile's build stage does (CHURN_COMPILE_CORE=1, see
setup.py) from a copy of the sources, installs it with constraints.txt into a
fresh venv, and replays a sample log with it from a directory outside the
checkout: the compiled core must be the one running, and the triggers must be
byte for byte those of the development install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import orjson
import pytest

from detectors.envelope import iso_ms
from schemas.decode import to_epoch_ms
from streams.dev.samples import SampleGenerator

ROOT = Path(__file__).resolve().parents[2]
END = iso_ms(to_epoch_ms("2026-06-01T00:00:00Z"))
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "detectors", "schemas", "streams", "scripts")


def _run(args: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_") and k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI builds the compiled wheel, but there is no C compiler ({cc})")
        pytest.skip(f"no C compiler ({cc}): the compiled wheel cannot be built here")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], env={**os.environ, "CHURN_COMPILE_CORE": "1"},
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_ships_the_compiled_core_and_the_license(wheel):
    abi = sysconfig.get_config_var("EXT_SUFFIX")
    names = zipfile.ZipFile(wheel).namelist()
    assert "-cp311-cp311-" in wheel.name  # a platform wheel: it holds C extensions
    assert f"detectors/engine{abi}" in names
    assert f"schemas/_core__mypyc{abi}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "scripts/", "bench/")) for n in names)


def test_a_fresh_venv_with_the_wheel_replays_with_the_compiled_core_and_gives_the_same_triggers(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    r = _run([py, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    work = tmp_path / "work"  # outside the checkout: nothing can import the repository's sources
    work.mkdir()
    r = _run([py, "-c", "import streams.corebuild, detectors.engine; print(streams.corebuild.kind()); "
              "print(detectors.engine.__file__)"], cwd=work)
    assert r.returncode == 0, r.stderr
    kind, engine = r.stdout.splitlines()
    assert kind == "compiled (mypyc)"
    assert Path(engine).is_relative_to(env_dir)

    log = work / "events.jsonl"
    events = SampleGenerator(seed=7, customers=200).history(to_epoch_ms(END))
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    args = ["replay", log, "--until", END, "--now", END, "--progress", "never"]
    installed = _run([env_dir / "bin" / "churn-signals", *args, "--out", work / "installed.jsonl"], cwd=work)
    assert installed.returncode == 0, installed.stderr
    dev = _run([sys.executable, "-m", "streams.cli", *args, "--out", work / "dev.jsonl"], cwd=ROOT)
    assert dev.returncode == 0, dev.stderr
    triggers = (work / "installed.jsonl").read_bytes()
    assert triggers.count(b"\n") > 500
    assert triggers == (work / "dev.jsonl").read_bytes()
