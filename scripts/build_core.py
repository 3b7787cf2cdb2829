"""Compile the deterministic core (detectors/, schemas/) with mypyc, in place.

    python scripts/build_core.py            # build (skipped with a warning when there is no C compiler)
    python scripts/build_core.py --require  # build, and fail when it cannot (CI)
    python scripts/build_core.py --clean    # remove the compiled modules: back to pure Python

The core is strictly typed (mypy --strict), which is what mypyc needs: it
compiles the same source into C extensions that sit next to the .py files
(detectors/state.cpython-311-x86_64-linux-gnu.so next to detectors/state.py)
and that Python imports in preference to them. The behaviour is the same;
only the speed differs (docs/performance.md). Without a C compiler the pure
Python modules are used, unchanged.

A compiled module older than its source would run stale code: streams.corebuild
checks for that at start-up and says to run `make core` again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("detectors", "schemas")
#: The shared library mypyc puts the compiled modules' common code in; a module of the
#: schemas package (which imports nothing of ours) so the editable install's import finder (which maps only our
#: packages) finds it from any working directory.
GROUP = "schemas._core"


def compiled_files() -> list[Path]:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).glob(f"*{suffix}"))


def clean() -> None:
    for p in compiled_files():
        p.unlink()
    shutil.rmtree(ROOT / "build" / "core", ignore_errors=True)


def sources() -> list[str]:
    # Package __init__ modules stay Python: compiled, they would import the shared library
    # (schemas._core) while their own package is still initialising.
    return sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")
                  if p.name != "__init__.py")


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import Distribution

    os.chdir(ROOT)  # mypyc names modules by their path relative to the working directory
    clean()
    exts = mypycify(sources(), opt_level="3", group_name=GROUP, target_dir="build/core")
    dist = Distribution({"name": "churn-signals-core", "ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.inplace = True
    cmd.build_temp = "build/core/temp"
    cmd.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clean", action="store_true", help="remove the compiled modules (pure Python core)")
    p.add_argument("--require", action="store_true", help="fail instead of falling back to pure Python")
    a = p.parse_args(argv)
    if a.clean:
        clean()
        print("core: pure Python (compiled modules removed)")
        return 0
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        msg = f"no C compiler ({cc}) found: the core runs as pure Python, about 1.5x slower (docs/performance.md)"
        if a.require:
            print(f"error: {msg}", file=sys.stderr)
            return 1
        print(f"warning: {msg}", file=sys.stderr)
        clean()
        return 0
    build()
    print(f"core: compiled with mypyc ({len(compiled_files())} modules)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
