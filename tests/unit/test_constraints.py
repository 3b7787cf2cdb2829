"""constraints.txt pins every runtime dependency, and the installed ones are those pins.

The worker patches faust-streaming and aiokafka internals; the image and CI must
run the versions the patches were checked against, not whatever PyPI offers on
the day of the build.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {raw!r} is not name==version"
            pins[_key(name)] = version
    return pins


def _runtime_closure() -> set[str]:
    """The runtime dependencies of the installed churn-signals, transitively (no extras)."""
    seen: set[str] = set()
    todo = list(md.requires("churn-signals") or [])
    while todo:
        req = Requirement(todo.pop())
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        if _key(req.name) in seen:
            continue
        seen.add(_key(req.name))
        try:
            todo.extend(md.requires(req.name) or [])
        except md.PackageNotFoundError:  # a dependency for another platform or Python
            seen.discard(_key(req.name))
    return seen


def test_every_runtime_dependency_is_pinned():
    missing = sorted(_runtime_closure() - set(_pins()))
    assert not missing, f"add these to constraints.txt (name==version): {missing}"


def test_the_patched_libraries_are_pinned_within_pyproject_ranges():
    pins = _pins()
    declared = {_key(Requirement(r).name): Requirement(r) for r in md.requires("churn-signals") or []}
    for name in ("faust-streaming", "aiokafka"):
        assert declared[name].specifier.contains(pins[name]), (name, pins[name], str(declared[name].specifier))


def test_installed_runtime_dependencies_are_the_pinned_versions():
    pins = _pins()
    wrong = {}
    for name in _runtime_closure():
        installed = md.version(name)
        if installed != pins.get(name, installed):
            wrong[name] = f"{installed} installed, {pins[name]} pinned"
    assert not wrong, f"run `make clean install`: {wrong}"
