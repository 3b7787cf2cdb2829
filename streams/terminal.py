"""Text bound for a terminal, with nothing in it that could drive the terminal.

Event fields reach the screen in `explain` and in replay's summary (ids,
categories, rejected lines as they were read). A control character there (an
ANSI escape sequence, a carriage return, a C1 CSI) would let a log line
rewrite the screen, hide lines or fake output; bidirectional overrides would
reorder what is shown. Everything `str.isprintable()` refuses is escaped
instead: as in a Python literal for plain text, as a JSON escape for JSON.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    n = ord(ch)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _json_escape(ch: str) -> str:
    n = ord(ch)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # a UTF-16 surrogate pair, the only way JSON escapes it
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def printable(text: str) -> str:
    """`text` with every character str.isprintable() refuses written as an escape (\\x1b, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def printable_json(text: str) -> str:
    """JSON text (line breaks between values kept) with every other unprintable character as a JSON escape.

    Only strings can hold such characters (orjson writes C0 escaped already, not DEL,
    C1 or format characters), so the result is the same JSON value.
    """
    if text.replace("\n", "").isprintable():
        return text
    return "".join(ch if ch == "\n" or ch.isprintable() else _json_escape(ch) for ch in text)
