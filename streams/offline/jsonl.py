"""Reading event logs: JSON Lines files, plain or gzip-compressed, or stdin (`-`).

One place opens logs and turns failures into one-line CommandErrors, for
`replay`, `produce`, `fit` and the replay sources alike, and skips a UTF-8
byte-order mark at the start of a file (the fused replay loop, detectors/fold.py,
does the same).
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from schemas.decode import UTF8_BOM
from schemas.errors import CommandError


def open_log(path: str | Path) -> tuple[IO[bytes], IO[bytes]]:
    """(raw handle, line handle): the raw one tells progress, the other decompresses `.gz`."""
    if str(path) == "-":
        return sys.stdin.buffer, sys.stdin.buffer
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by iter_lines
    except FileNotFoundError:
        raise CommandError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise CommandError(f"{path} is a directory, expected a JSON Lines file") from None
    except OSError as exc:
        raise CommandError(f"cannot open {path}: {exc.strerror}") from None
    # typeshed does not count GzipFile as an IO[bytes]; it is one for every use here
    fh = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if str(path).endswith(".gz") else raw
    return raw, fh


def iter_lines(path: str | Path, raw: IO[bytes], fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, stripped line) for non-blank lines, then close the handles.

    A UTF-8 byte-order mark at the start of the file is not part of its first line.
    """
    try:
        for n, line in enumerate(fh, 1):
            stripped = line.strip()
            if n == 1 and stripped[:3] == UTF8_BOM:
                stripped = stripped[3:].strip()
            if stripped:
                yield n, stripped
    except (OSError, EOFError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    finally:
        close_log(raw, fh)


def close_log(raw: IO[bytes], fh: IO[bytes]) -> None:
    """Close what open_log opened (stdin stays open)."""
    if raw is not sys.stdin.buffer:
        fh.close()
        raw.close()


def read_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw line) for non-blank lines; `-` reads stdin."""
    raw, fh = open_log(path)
    return iter_lines(path, raw, fh)
