"""A tf.train.Example written in protobuf's wire format without TensorFlow: the bytes that
``Example.SerializeToString(deterministic=True)`` writes for the same features (map keys in its
order, packed numbers), so CsvExampleGen's Beam workers (and a run whose first node it is) never
import TensorFlow for it. ``tests/components/test_example_gen.py`` checks the bytes against
TensorFlow's own proto on random rows.

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }            one entry: key = 1, value = 2
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  (packed)
    Int64List { repeated int64 value = 1; }  (packed)
"""
from __future__ import annotations

import math
import struct

_FLOAT = struct.Struct('<f')


def varint(n: int) -> bytes:
    """An unsigned varint; a negative int64 as its 64-bit two's complement (ten bytes)."""
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte (field number << 3 | 2), the length, the payload."""
    return bytes((tag,)) + varint(len(payload)) + payload


def float32(value: float) -> bytes:
    """``value`` as protobuf stores a float field: rounded to the nearest float32, infinite beyond it."""
    try:
        return _FLOAT.pack(value)
    except OverflowError:
        return _FLOAT.pack(math.copysign(math.inf, value))


def feature(kind: str, value: str) -> bytes:
    """One Feature holding one value: ``kind`` 'int', 'float', or anything else for bytes."""
    if kind == 'int':
        return _field(0x1A, _field(0x0A, varint(int(value))))
    if kind == 'float':
        return _field(0x12, _field(0x0A, float32(float(value))))
    return _field(0x0A, _field(0x0A, value.encode('utf-8')))


def _map_order(key: bytes) -> list[int]:
    """The order protobuf's deterministic serialization (upb, Python's protobuf) writes map keys in:
    by their bytes, and a key that another begins with after it (``x10`` before ``x1``)."""
    return [*key, 256]


def example(features: dict[str, bytes]) -> bytes:
    """An Example of ``features`` (name -> ``feature`` bytes), its map entries in the order
    deterministic serialization writes them; no features: the empty message."""
    if not features:
        return b''
    keys = sorted(((name.encode('utf-8'), name) for name in features), key=lambda k: _map_order(k[0]))
    entries = b''.join(_field(0x0A, _field(0x0A, key) + _field(0x12, features[name])) for key, name in keys)
    return _field(0x0A, entries)
