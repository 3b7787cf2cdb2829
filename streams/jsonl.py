"""Reading event logs: JSON Lines files, plain or gzip-compressed."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from schemas.errors import CommandError


def read_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for non-blank lines; `-` reads stdin."""
    import sys

    p = Path(path)
    try:
        if str(path) == "-":
            fh = sys.stdin.buffer
        elif p.suffix == ".gz":
            fh = gzip.open(p, "rb")  # noqa: SIM115 - closed in the finally below
        else:
            fh = open(p, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise CommandError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise CommandError(f"{path} is a directory, expected a JSON Lines file") from None
    except OSError as exc:
        raise CommandError(f"cannot open {path}: {exc.strerror}") from None
    try:
        for n, raw in enumerate(fh, 1):
            line = raw.strip()
            if line:
                yield n, line
    except (OSError, EOFError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
