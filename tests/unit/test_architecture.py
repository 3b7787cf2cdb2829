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


#: streams/ by tenant: which part of the shell may import which. The shared modules at the top of
#: streams/ (settings, connection, topics, broker, ...) import no tenant; a tenant imports the shared
#: modules and, for the developer tools, the offline readers (`produce` reads files as replay does).
#: streams/cli.py is the one module that knows all three.
TENANT_MAY_IMPORT = {
    "shared": {"shared"},
    "live": {"shared", "live"},
    "offline": {"shared", "offline"},
    "dev": {"shared", "offline", "dev"},
    "cli": {"shared", "live", "offline", "dev"},
}


def _tenant(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["streams", "cli"]:
        return "cli"
    return parts[1] if len(parts) > 2 and parts[1] in {"live", "offline", "dev"} else "shared"


def _streams_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streams."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "streams":
                found.update(f"streams.{a.name}" for a in node.names)
            elif node.module.startswith("streams."):
                found.add(node.module)
    return found


def test_streams_tenants_import_only_what_they_may():
    files = sorted((ROOT / "streams").rglob("*.py"))
    assert {p.parent.name for p in files} == {"streams", "live", "offline", "dev"}
    wrong = []
    for p in files:
        module = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        allowed = TENANT_MAY_IMPORT[_tenant(module)]
        wrong += [f"{module} -> {dep}" for dep in sorted(_streams_imports(p)) if _tenant(dep) not in allowed]
    assert wrong == []


def test_the_tenant_rule_sees_a_forbidden_import():
    assert _tenant("streams.live.app") == "live"
    assert _tenant("streams.settings") == "shared"
    assert "offline" not in TENANT_MAY_IMPORT["live"]
    assert _tenant("streams.cli") == "cli"
