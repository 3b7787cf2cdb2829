"""Write the kinds table of docs/triggers.md again from the registry of kinds (detectors/kinds.py).

    python scripts/kinds_table.py     # or: make docs-kinds

tests/unit/test_kinds.py fails while the table and the registry differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.wording import with_kinds_table  # noqa: E402 - after the path set-up above

DOC = ROOT / "docs" / "triggers.md"


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    new = with_kinds_table(text)
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"{DOC.relative_to(ROOT)}: kinds table written")
    else:
        print(f"{DOC.relative_to(ROOT)}: kinds table up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
