"""Build hook for a wheel that ships the compiled core (the production image uses it).

    CHURN_COMPILE_CORE=1 pip wheel --no-deps --no-build-isolation -w dist .

compiles detectors/ and schemas/ with mypyc into the wheel, next to their
Python source, exactly as `make core` does in a checkout (scripts/build_core.py
holds the list of modules and the shared library's name). Without the variable
this file adds nothing: `pip install .` builds the pure-Python wheel and every
setting stays in pyproject.toml. `--no-build-isolation` because mypyc must be
the mypy of the build environment (it is in the dev extra and in the image's
build stage).
"""

import os
import sys
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("CHURN_COMPILE_CORE") == "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
    from build_core import GROUP, sources
    from mypyc.build import mypycify

    ext_modules = mypycify(sources(), opt_level="3", group_name=GROUP)

setup(ext_modules=ext_modules)
