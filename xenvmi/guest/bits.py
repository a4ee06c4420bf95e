"""Small helpers shared by the register decoders: named bits, bit fields, tolerant lookups.

Register values come from a possibly hostile guest: nothing here raises on bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, overload

MASK64 = (1 << 64) - 1


def named_bits(
    value: int | None, names: Mapping[int, str], *, unknown: bool = False, ignore: int = 0
) -> list[str]:
    """The names of the bits set in ``value``, lowest bit first.

    ``unknown=True`` adds ``bitN`` for set bits the table does not name (``ignore`` masks
    bits that are architecturally fixed, like RFLAGS bit 1). None gives [].
    """
    if value is None:
        return []
    out = []
    rest = value & ~ignore
    while rest:
        low = rest & -rest
        bit = low.bit_length() - 1
        name = names.get(bit)
        if name is not None:
            out.append(name)
        elif unknown:
            out.append(f"bit{bit}")
        rest ^= low
    return out


@overload
def bits(value: int, low: int, width: int) -> int: ...
@overload
def bits(value: int | None, low: int, width: int) -> int | None: ...
def bits(value: int | None, low: int, width: int) -> int | None:
    """Field ``value[low + width - 1 : low]``, or None for a missing value."""
    return None if value is None else (value >> low) & ((1 << width) - 1)


def to_int(raw: Any, mask: int = MASK64) -> int | None:
    """A register value as an unsigned int masked to ``mask``; None if it is not a number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw & mask
    if isinstance(raw, (str, bytes)):
        try:
            return int(raw, 0) & mask
        except (ValueError, TypeError):
            return None
    return None


def lookup(regs: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    """The first of ``names`` present in ``regs`` (keys compared case-insensitively)."""
    for name in names:
        if name in regs:
            return to_int(regs[name])
    return None


def lowered(regs: Any) -> dict[str, Any]:
    """``regs`` with lower-case keys; {} if it is not a mapping at all."""
    try:
        return {str(k).lower(): v for k, v in dict(regs).items()}
    except (TypeError, ValueError, AttributeError):  # hostile or malformed input
        return {}
