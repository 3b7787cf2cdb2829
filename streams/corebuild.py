"""Which build of the deterministic core runs: compiled with mypyc, or pure Python.

`make core` (scripts/build_core.py) compiles detectors/ and schemas/ into C
extensions next to their sources; Python imports those first. A compiled module
older than its source would silently run old code, so every command checks
first and stops with a one-line fix instead.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

from schemas.errors import ChurnSignalsError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("detectors", "schemas")


class StaleCore(ChurnSignalsError):
    """The compiled core is older than its Python source."""


def _compiled(pkg: Path) -> list[Path]:
    return [p for suffix in importlib.machinery.EXTENSION_SUFFIXES for p in pkg.glob(f"*{suffix}")]


def kind() -> str:
    """'compiled (mypyc)' when the detector core runs as C extensions, else 'pure Python'."""
    import detectors.engine

    loader = getattr(detectors.engine, "__loader__", None)
    return "compiled (mypyc)" if isinstance(loader, importlib.machinery.ExtensionFileLoader) else "pure Python"


def in_checkout() -> bool:
    """True when the core runs from a source checkout (editable install), where `make core` builds it.

    An installed wheel (the production image) was compiled from the very sources
    it ships, in one build; its file times are only the order pip unpacked it in.
    """
    return (ROOT / "pyproject.toml").is_file() and (ROOT / "scripts" / "build_core.py").is_file()


def check_fresh() -> None:
    """Raise StaleCore when any core source changed after the compiled modules were built."""
    if not in_checkout():
        return
    for name in PACKAGES:
        pkg = ROOT / name
        built = _compiled(pkg)
        if not built:
            continue
        oldest = min(p.stat().st_mtime for p in built)
        newer = sorted(p.name for p in pkg.glob("*.py") if p.stat().st_mtime > oldest)
        if newer:
            raise StaleCore(
                f"the compiled core is older than {name}/{newer[0]}"
                f"{f' (and {len(newer) - 1} more)' if len(newer) > 1 else ''}: run `make core` to rebuild it, "
                "or `make pure` to run the Python source"
            )
