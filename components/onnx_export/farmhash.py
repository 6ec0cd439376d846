"""farmhash Fingerprint64 (farmhashna::Hash64, which TensorFlow's Fingerprint64 is), in Python: the
hash of tf.strings.to_hash_bucket_fast, which the exact StringToHashBucketFast custom op of an ONNX
export computes (see ``runtime.make_session``).
"""
from __future__ import annotations

_M64 = (1 << 64) - 1
_K0, _K1, _K2 = 0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f


def fingerprint64(s: bytes) -> int:
    """farmhash Fingerprint64 of ``s`` (= tf.fingerprint / the hash of tf.strings.to_hash_bucket_fast)."""
    n = len(s)
    if n <= 16:
        return _hash_len_0_to_16(s, n)
    if n <= 32:
        return _hash_len_17_to_32(s, n)
    if n <= 64:
        return _hash_len_33_to_64(s, n)
    # > 64 bytes: 64-byte blocks, then the last 64 bytes.
    x = 81
    y = (81 * _K1 + 113) & _M64
    z = (_shift_mix((y * _K2 + 113) & _M64) * _K2) & _M64
    v0 = v1 = w0 = w1 = 0
    x = (x * _K2 + _fetch64(s, 0)) & _M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_rotate((x + y + v0 + _fetch64(s, i + 8)) & _M64, 37) * _K1) & _M64
        y = (_rotate((y + v1 + _fetch64(s, i + 48)) & _M64, 42) * _K1) & _M64
        x ^= w1
        y = (y + v0 + _fetch64(s, i + 40)) & _M64
        z = (_rotate((z + w0) & _M64, 33) * _K1) & _M64
        v0, v1 = _weak_hash_len_32_with_seeds(s, i, (v1 * _K1) & _M64, (x + w0) & _M64)
        w0, w1 = _weak_hash_len_32_with_seeds(s, i + 32, (z + w1) & _M64, (y + _fetch64(s, i + 16)) & _M64)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = _K1 + ((z & 0xff) << 1)
    i = last64
    w0 = (w0 + ((n - 1) & 63)) & _M64
    v0 = (v0 + w0) & _M64
    w0 = (w0 + v0) & _M64
    x = (_rotate((x + y + v0 + _fetch64(s, i + 8)) & _M64, 37) * mul) & _M64
    y = (_rotate((y + v1 + _fetch64(s, i + 48)) & _M64, 42) * mul) & _M64
    x ^= (w1 * 9) & _M64
    y = (y + v0 * 9 + _fetch64(s, i + 40)) & _M64
    z = (_rotate((z + w0) & _M64, 33) * mul) & _M64
    v0, v1 = _weak_hash_len_32_with_seeds(s, i, (v1 * mul) & _M64, (x + w0) & _M64)
    w0, w1 = _weak_hash_len_32_with_seeds(s, i + 32, (z + w1) & _M64, (y + _fetch64(s, i + 16)) & _M64)
    z, x = x, z
    return _hash_len_16((_hash_len_16(v0, w0, mul) + _shift_mix(y) * _K0 + z) & _M64,
                        (_hash_len_16(v1, w1, mul) + x) & _M64, mul)


def _fetch64(s, i):
    return int.from_bytes(s[i:i + 8], 'little')


def _fetch32(s, i):
    return int.from_bytes(s[i:i + 4], 'little')


def _rotate(v, shift):
    return ((v >> shift) | (v << (64 - shift))) & _M64 if shift else v


def _shift_mix(v):
    return v ^ (v >> 47)


def _hash_len_16(u, v, mul):
    a = ((u ^ v) * mul) & _M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _hash_len_0_to_16(s, n):
    if n >= 8:
        mul = _K2 + n * 2
        a = (_fetch64(s, 0) + _K2) & _M64
        b = _fetch64(s, n - 8)
        c = (_rotate(b, 37) * mul + a) & _M64
        d = ((_rotate(a, 25) + b) * mul) & _M64
        return _hash_len_16(c, d, mul)
    if n >= 4:
        mul = _K2 + n * 2
        return _hash_len_16(n + (_fetch32(s, 0) << 3), _fetch32(s, n - 4), mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * _K2) ^ (z * _K0)) & _M64) * _K2) & _M64
    return _K2


def _hash_len_17_to_32(s, n):
    mul = _K2 + n * 2
    a = (_fetch64(s, 0) * _K1) & _M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & _M64
    d = (_fetch64(s, n - 16) * _K2) & _M64
    return _hash_len_16((_rotate((a + b) & _M64, 43) + _rotate(c, 30) + d) & _M64,
                        (a + _rotate((b + _K2) & _M64, 18) + c) & _M64, mul)


def _hash_len_33_to_64(s, n):
    mul = _K2 + n * 2
    a = (_fetch64(s, 0) * _K2) & _M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & _M64
    d = (_fetch64(s, n - 16) * _K2) & _M64
    y = (_rotate((a + b) & _M64, 43) + _rotate(c, 30) + d) & _M64
    z = _hash_len_16(y, (a + _rotate((b + _K2) & _M64, 18) + c) & _M64, mul)
    e = (_fetch64(s, 16) * mul) & _M64
    f = _fetch64(s, 24)
    g = ((y + _fetch64(s, n - 32)) * mul) & _M64
    h = ((z + _fetch64(s, n - 24)) * mul) & _M64
    return _hash_len_16((_rotate((e + f) & _M64, 43) + _rotate(g, 30) + h) & _M64,
                        (e + _rotate((f + a) & _M64, 18) + g) & _M64, mul)


def _weak_hash_len_32_with_seeds(s, i, a, b):
    w, x, y, z = _fetch64(s, i), _fetch64(s, i + 8), _fetch64(s, i + 16), _fetch64(s, i + 24)
    a = (a + w) & _M64
    b = _rotate((b + a + z) & _M64, 21)
    c = a
    a = (a + x + y) & _M64
    b = (b + _rotate(a, 44)) & _M64
    return (a + z) & _M64, (b + c) & _M64
