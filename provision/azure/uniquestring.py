"""ARM's `uniqueString()`, so names the templates derive can be known before any deployment.

ARM joins the arguments with '-', hashes the UTF-8 bytes with its 64-bit MurmurHash variant
(two 32-bit lanes) and writes the 64 bits as 13 lowercase base32 characters.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF
_C1 = 0xAB0E9789  # ARM's constants for the two lanes
_C2 = 0x239B961B
_F1 = 0x85EBCA6B  # MurmurHash3's finaliser
_F2 = 0xC2B2AE35
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def _word(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _mix_first(word: int) -> int:
    return (_rotl((word * _C2) & _MASK, 15) * _C1) & _MASK


def _mix_second(word: int) -> int:
    return (_rotl((word * _C1) & _MASK, 17) * _C2) & _MASK


def _finalise(value: int) -> int:
    value = ((value ^ (value >> 16)) * _F1) & _MASK
    value = ((value ^ (value >> 13)) * _F2) & _MASK
    return value ^ (value >> 16)


def _hash64(data: bytes) -> int:
    h1 = h2 = 0
    full = len(data) - len(data) % 8
    for start in range(0, full, 8):
        h1 = _rotl(h1 ^ _mix_first(_word(data[start : start + 4])), 19)
        h1 = (((h1 + h2) & _MASK) * 5 + 0x561CCD1B) & _MASK
        h2 = _rotl(h2 ^ _mix_second(_word(data[start + 4 : start + 8])), 13)
        h2 = (((h2 + h1) & _MASK) * 5 + 0x0BCAA747) & _MASK
    tail = data[full:]
    if tail:
        h1 ^= _mix_first(_word(tail[:4]))
        if len(tail) > 4:
            h2 ^= _mix_second(_word(tail[4:]))
    length = len(data)
    second = (h2 ^ length) & _MASK
    first = ((h1 ^ length) + second) & _MASK
    second = (second + first) & _MASK
    first, second = _finalise(first), _finalise(second)
    first = (first + second) & _MASK
    second = (second + first) & _MASK
    return (second << 32) | first


def unique_string(*values: str) -> str:
    hashed = _hash64("-".join(values).encode("utf-8"))
    # Five bits at a time from the top; the 13th character takes the last 4 bits and a zero.
    return "".join(
        _ALPHABET[((hashed << (5 * index)) & 0xFFFFFFFFFFFFFFFF) >> 59] for index in range(13)
    )
