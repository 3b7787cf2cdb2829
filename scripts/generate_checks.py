"""Write schemas/checks_generated.py: the accept path of the event schemas as a module the core compiles.

    python scripts/generate_checks.py   # or `make checks`, after changing an event schema file

scripts/checkgen.py turns each event schema file into a flat check function;
this writes them as one typed module so mypyc compiles them with the rest of
the core (make core). tests/unit/test_fastpath.py fails while the file differs
from what this would write, and every command stops with the fix while it is
out of date (schemas.decode.StaleChecks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.decode import EVENT_TYPES  # noqa: E402 - after the path set-up above
from scripts.checkgen import generate_module  # noqa: E402

TARGET = ROOT / "schemas" / "checks_generated.py"


def main() -> int:
    schemas = {t: (f, json.loads((ROOT / "schemas" / f).read_text(encoding="utf-8"))) for t, f in EVENT_TYPES.items()}
    text = generate_module(schemas)
    rel = TARGET.relative_to(ROOT)
    if TARGET.exists() and TARGET.read_text(encoding="utf-8") == text:
        print(f"{rel}: up to date")
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"{rel}: written; run `make core` to compile it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
