"""Strict DAG-CBOR (DRISL) for atproto: decode untrusted blocks, encode the unsigned commit.

The decoder is a small single-pass parser that rejects every non-canonical form as it reads:
only major types 0-7 in their shortest encoding, definite lengths, text-string map keys in
canonical order (length first, then bytewise; so no duplicates), tag 42 (CID) as the only tag,
no floats, no simple values but false/true/null, integers within int64, one top-level item.
It replaced the "cbor2 + canonical re-encode + compare" approach because that was about twice
as slow on MST nodes and needed every built-in cbor2 tag decoder (bignums, datetimes, regexes,
shared references...) disabled by hand; cbor2 is still used to encode, and the tests
cross-check the decoder against it.
"""

from __future__ import annotations

from typing import Any

import cbor2

from ..errors import CborError, CidError
from .cid import _CODECS, Cid, _make

_INT64 = 1 << 63
_CID_TAG = 42
_CID_HEAD = b"\x2a\x58\x25\x00"  # tag 42, byte string of 37, multibase identity prefix
# Containers nested deeper than this are refused by encode(): values are our own, but a cycle or
# an absurd depth must fail typed, not with RecursionError.
_MAX_ENCODE_DEPTH = 64


def decode(data: bytes, *, max_depth: int = 32) -> Any:
    """Decode exactly one strict DAG-CBOR item; raise :class:`CborError` on any deviation.

    Returns dict/list/str/bytes/int/bool/None and :class:`Cid` for tag 42. ``max_depth`` bounds
    how many containers (maps/arrays) may be nested.
    """
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise CborError("DAG-CBOR input must be bytes")
        data = bytes(data)
    n = len(data)

    def argument(pos: int, info: int) -> tuple[int, int]:
        # Shortest-form rule: each wider encoding must carry a value the narrower one could not.
        if info == 24:
            if pos + 1 > n:
                raise CborError("truncated DAG-CBOR")
            value = data[pos]
            if value < 24:
                raise CborError(f"non-shortest integer or length encoding at offset {pos - 1}")
            return value, pos + 1
        if info == 25:
            if pos + 2 > n:
                raise CborError("truncated DAG-CBOR")
            value = (data[pos] << 8) | data[pos + 1]
            if value < 0x100:
                raise CborError(f"non-shortest integer or length encoding at offset {pos - 1}")
            return value, pos + 2
        if info == 26:
            if pos + 4 > n:
                raise CborError("truncated DAG-CBOR")
            value = int.from_bytes(data[pos : pos + 4], "big")
            if value < 0x10000:
                raise CborError(f"non-shortest integer or length encoding at offset {pos - 1}")
            return value, pos + 4
        if info == 27:
            if pos + 8 > n:
                raise CborError("truncated DAG-CBOR")
            value = int.from_bytes(data[pos : pos + 8], "big")
            if value < 0x100000000:
                raise CborError(f"non-shortest integer or length encoding at offset {pos - 1}")
            return value, pos + 8
        if info == 31:
            raise CborError(f"indefinite-length item at offset {pos - 1} is not allowed")
        raise CborError(f"reserved additional information {info} at offset {pos - 1}")

    def item(pos: int, depth: int) -> tuple[Any, int]:
        if pos >= n:
            raise CborError("truncated DAG-CBOR")
        initial = data[pos]
        if initial == 0xD8 and data[pos + 1 : pos + 5] == _CID_HEAD:
            # Fast path for the common case, a 36-byte blessed CID link (d8 2a 58 25 00 ...).
            codec = _CODECS.get(data[pos + 5 : pos + 9])
            end = pos + 41
            if codec is not None and end <= n:
                return _make(codec, data[pos + 9 : end]), end
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            if initial == 0xF6:
                return None, pos + 1
            if initial == 0xF5:
                return True, pos + 1
            if initial == 0xF4:
                return False, pos + 1
            if 25 <= info <= 27:
                raise CborError(f"float at offset {pos} (atproto data has no floats)")
            if info == 31:
                raise CborError(f"unexpected break at offset {pos}")
            raise CborError(f"simple value or undefined at offset {pos} is not allowed")
        pos += 1
        if info < 24:
            value = info
        elif info == 24 and pos < n and data[pos] >= 24:
            value = data[pos]
            pos += 1
        else:
            value, pos = argument(pos, info)
        if major == 0:
            if value >= _INT64:
                raise CborError("integer outside the int64 range")
            return value, pos
        if major == 1:
            if value >= _INT64:
                raise CborError("integer outside the int64 range")
            return -1 - value, pos
        if major == 2:
            end = pos + value
            if end > n:
                raise CborError("truncated DAG-CBOR byte string")
            return data[pos:end], end
        if major == 3:
            end = pos + value
            if end > n:
                raise CborError("truncated DAG-CBOR text string")
            try:
                return data[pos:end].decode("utf-8"), end
            except UnicodeDecodeError:
                raise CborError(f"invalid UTF-8 in text string at offset {pos}") from None
        if major == 6:
            return tag(pos, value)
        if depth >= max_depth:
            raise CborError(f"DAG-CBOR nested deeper than {max_depth}")
        # Every element takes at least one byte: a count beyond what is left is a lie.
        if value > n - pos:
            raise CborError("truncated DAG-CBOR container")
        depth += 1
        if major == 4:
            out: list[Any] = []
            append = out.append
            for _ in range(value):
                element, pos = item(pos, depth)
                append(element)
            return out, pos
        mapping: dict[str, Any] = {}
        previous = None
        for _ in range(value):
            if pos >= n:
                raise CborError("truncated DAG-CBOR map")
            key_initial = data[pos]
            if key_initial >> 5 != 3:
                raise CborError(f"map key at offset {pos} is not a text string")
            key_info = key_initial & 0x1F
            if key_info < 24:
                key_len, key_pos = key_info, pos + 1
            else:
                key_len, key_pos = argument(pos + 1, key_info)
            key_end = key_pos + key_len
            if key_end > n:
                raise CborError("truncated DAG-CBOR map key")
            raw_key = data[key_pos:key_end]
            # Canonical order: shorter keys first, then bytewise; equal means duplicate.
            if previous is not None and (
                key_len < len(previous) or (key_len == len(previous) and raw_key <= previous)
            ):
                if raw_key == previous:
                    raise CborError(f"duplicate map key {raw_key[:40]!r}")
                raise CborError(f"map keys not in canonical order at {raw_key[:40]!r}")
            previous = raw_key
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise CborError(f"invalid UTF-8 in map key at offset {key_pos}") from None
            mapping[key], pos = item(key_end, depth)
        return mapping, pos

    def tag(pos: int, number: int) -> tuple[Cid, int]:
        if number != _CID_TAG:
            raise CborError(f"CBOR tag {number} is not allowed (only 42, CID)")
        if pos >= n:
            raise CborError("truncated DAG-CBOR CID")
        initial = data[pos]
        if initial >> 5 != 2:
            raise CborError("CID (tag 42) content must be a byte string")
        info = initial & 0x1F
        if info < 24:
            length, start = info, pos + 1
        else:
            length, start = argument(pos + 1, info)
        end = start + length
        if end > n:
            raise CborError("truncated DAG-CBOR CID")
        if length == 0 or data[start] != 0:
            raise CborError("CID (tag 42) content must start with the 0x00 multibase prefix")
        codec = _CODECS.get(data[start + 1 : start + 5])
        if codec is not None and length == 37:
            return _make(codec, data[start + 5 : end]), end
        try:
            return Cid.decode(data[start + 1 : end]), end
        except CidError as exc:
            raise CborError(f"invalid CID link: {exc.reason}") from None

    try:
        value, end = item(0, 0)
    except RecursionError:
        raise CborError("DAG-CBOR nested too deeply") from None
    if end != n:
        raise CborError(f"{n - end} trailing bytes after the DAG-CBOR item")
    return value


def encode(value: Any) -> bytes:
    """Encode canonical DAG-CBOR; refuse anything atproto's data model cannot hold."""
    _check_encodable(value, 0)
    try:
        return cbor2.dumps(value, canonical=True, default=_encode_cid)
    except (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError) as exc:
        raise CborError(f"cannot encode as DAG-CBOR: {exc}") from exc


def _encode_cid(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if type(value) is not Cid:
        raise CborError(f"cannot encode {type(value).__name__} as DAG-CBOR")
    encoder.encode(cbor2.CBORTag(_CID_TAG, b"\x00" + value.encode()))


def _check_encodable(value: Any, depth: int) -> None:
    """Walk the value first: cbor2 would happily encode floats, sets, datetimes, tags..."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is bytes or kind is Cid:
        return
    if kind is int:
        if not -_INT64 <= value < _INT64:
            raise CborError("integer outside the int64 range")
        return
    if kind is float:
        raise CborError("floats are not allowed in atproto DAG-CBOR")
    if depth >= _MAX_ENCODE_DEPTH:
        raise CborError("value nested too deeply to encode")
    if kind is list or kind is tuple:
        for element in value:
            _check_encodable(element, depth + 1)
        return
    if kind is dict:
        for key, element in value.items():
            if type(key) is not str:
                raise CborError("DAG-CBOR map keys must be strings")
            _check_encodable(element, depth + 1)
        return
    raise CborError(f"cannot encode {kind.__name__} as DAG-CBOR")
