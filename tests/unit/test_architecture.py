"""Import direction: the contract and the core never depend on the shell."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "schemas": {"streams", "detectors", "faust", "mode", "aiokafka", "asyncio", "prometheus_client", "time"},
    "detectors": {"streams", "faust", "mode", "aiokafka", "asyncio", "prometheus_client", "time"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_shell_or_the_clock(package):
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN[package])
        for p in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_never_reads_the_wall_clock():
    calls = ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time(", "time.monotonic(", "time_ns(")
    hits = [
        (str(p.relative_to(ROOT)), c)
        for pkg in FORBIDDEN
        for p in (ROOT / pkg).rglob("*.py")
        for c in calls
        if c in p.read_text()
    ]
    assert hits == []
