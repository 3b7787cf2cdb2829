"""Compact, lossless binary packing of a customer state's value list (CustomerState.to_list()).

The state is a flat list of numbers, short strings, byte strings and short lists, and most of
its numbers are epoch-millisecond times close to each other. As JSON each time
costs 14 bytes; here a time is the zig-zag difference to the previous large
integer (usually 4-5 bytes), small counters are one byte, money amounts with at
most two decimals are cents, and event-id hashes are 7 bytes. Generic over the
list layout, so adding a field to the state needs no change here. Budget: DESIGN.md section 4, a few hundred bytes per
customer.

    tag byte   meaning (n = low nibble)
    0x00-0x0f  the integer n (0..15)
    0x1n       integer: n bytes of its zig-zag form follow (big-endian)
    0x2n       large integer as the n-byte zig-zag delta to the previous large one
    0x30       float, 8 bytes IEEE 754 (big-endian)
    0x4n       float with at most two decimals: n-byte zig-zag of value * 100
    0x5n       string of n UTF-8 bytes (n < 15); 0x5f: varint length follows
    0x6n       list of n items (n < 15); 0x6f: varint length follows
    0x70/71/72 None / True / False
    0x8n       bytes, n of them (n < 15); 0x8f: varint length follows

A packed state never starts with `[`, so JSON-encoded states stay readable.

Must never: read the clock, import from `streams/`.
"""

from __future__ import annotations

import struct
from typing import Any, Final

_LARGE: Final = 1 << 32           # integers at least this big (times, hashes) take part in delta coding
_F64: Final = struct.Struct(">d")


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def pack(value: list[Any]) -> bytes:
    out = bytearray()
    _pack_list(out, value, [0])
    return bytes(out)


def _int(out: bytearray, tag: int, z: int) -> None:
    """Tag | byte count, then the non-negative zig-zag value `z` big-endian (no Python-level loop)."""
    n = (z.bit_length() + 7) >> 3
    out.append(tag | n)
    out += z.to_bytes(n, "big")


def _pack_list(out: bytearray, items: list[Any] | tuple[Any, ...], base: list[int]) -> None:
    n = len(items)
    if n < 15:
        out.append(0x60 | n)
    else:
        out.append(0x6F)
        _varint(out, n)
    append = out.append
    for v in items:
        t = type(v)
        if t is int:
            if 0 <= v < 16:
                append(v)
                continue
            if v >= _LARGE or v <= -_LARGE:
                delta = v - base[0]
                base[0] = v
                if abs(delta) < abs(v):
                    _int(out, 0x20, delta << 1 if delta >= 0 else ((-delta) << 1) - 1)
                    continue
            if v >= 1 << 59 or v < -(1 << 59):
                raise ValueError(f"integer {v} too large for a customer state")
            _int(out, 0x10, v << 1 if v >= 0 else ((-v) << 1) - 1)
        elif t is list or t is tuple:  # a tuple reads back as a list, as through JSON
            _pack_list(out, v, base)
        else:
            _pack_other(out, v)


def _pack_other(out: bytearray, v: Any) -> None:
    t = type(v)
    if t is float:
        cents = round(v * 100) if abs(v) < 1e13 else None
        if cents is not None and cents / 100 == v and not (v == 0 and str(v).startswith("-")):
            _int(out, 0x40, _zigzag(cents))
        else:
            out.append(0x30)
            out += _F64.pack(v)
    elif t is str:
        _pack_sized(out, 0x50, v.encode())
    elif t is bytes:
        _pack_sized(out, 0x80, v)
    elif v is None:
        out.append(0x70)
    elif v is True:
        out.append(0x71)
    elif v is False:
        out.append(0x72)
    else:
        raise TypeError(f"cannot pack {t.__name__} in a customer state")


def _pack_sized(out: bytearray, tag: int, b: bytes) -> None:
    """`tag` with the length in its low nibble (0xf and a varint from 15 on), then the bytes."""
    n = len(b)
    if n < 15:
        out.append(tag | n)
    else:
        out.append(tag | 0x0F)
        _varint(out, n)
    out += b


def unpack(raw: bytes) -> list[Any]:
    value, pos = _unpack(raw, 0, [0])
    if pos != len(raw) or not isinstance(value, list):
        raise ValueError("malformed packed customer state")
    return value


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = raw[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def _sized(raw: bytes, pos: int, tag: int) -> tuple[int, int]:
    """Where the bytes of a string or byte string start and end (its length: _pack_sized)."""
    n = tag & 0x0F
    if n == 0x0F:
        n, pos = _read_varint(raw, pos)
    if pos + n > len(raw):
        raise ValueError("malformed packed customer state: a string past the end")
    return pos, pos + n


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


def _unpack(raw: bytes, pos: int, base: list[int]) -> tuple[Any, int]:
    tag = raw[pos]
    pos += 1
    hi = tag & 0xF0
    if hi == 0x60:
        n = tag & 0x0F
        if n == 0x0F:
            n, pos = _read_varint(raw, pos)
        items: list[Any] = []
        append = items.append
        for _ in range(n):
            t = raw[pos]
            if t < 0x10:  # small integer: the common case, no call
                append(t)
                pos += 1
            else:
                item, pos = _unpack(raw, pos, base)
                append(item)
        return items, pos
    if hi == 0x00:
        return tag, pos
    if hi == 0x10:
        end = pos + (tag & 0x0F)
        v = _unzigzag(int.from_bytes(raw[pos:end], "big"))
        if v >= _LARGE or v <= -_LARGE:
            base[0] = v
        return v, end
    if hi == 0x20:
        end = pos + (tag & 0x0F)
        v = base[0] + _unzigzag(int.from_bytes(raw[pos:end], "big"))
        base[0] = v
        return v, end
    if hi == 0x30:
        return _F64.unpack_from(raw, pos)[0], pos + 8
    if hi == 0x40:
        end = pos + (tag & 0x0F)
        return _unzigzag(int.from_bytes(raw[pos:end], "big")) / 100, end
    if hi == 0x50:
        pos, end = _sized(raw, pos, tag)
        return raw[pos:end].decode(), end
    if tag in (0x70, 0x71, 0x72):
        return (None, True, False)[tag - 0x70], pos
    if hi == 0x80:
        pos, end = _sized(raw, pos, tag)
        return raw[pos:end], end
    raise ValueError(f"malformed packed customer state: tag {tag:#x} at {pos - 1}")
