"""The key assembly: which parts of a node's key are hashed (``KEY_FIELDS``), the canonical JSON of
parameters and parts, and the sha256 the key and every other digest of this package are made with."""
from __future__ import annotations

import hashlib
import json
from typing import Any

# The parts of a cache key that are hashed; other entries of a parts dict are for explanations only.
KEY_FIELDS = ('pipeline', 'node', 'component', 'implementation', 'parameters', 'inputs', 'code', 'external')


def sha256(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, 'big'))
        h.update(data)
    return h.hexdigest()


def canonical(value: Any) -> Any:
    """A JSON-ready form of a parameter value that is equal for equal values."""
    if hasattr(value, 'DESCRIPTOR') and hasattr(value, 'SerializeToString'):
        from google.protobuf import json_format
        return {'@proto': value.DESCRIPTOR.full_name,
                'value': json_format.MessageToDict(value, preserving_proto_field_name=True)}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'{type(value).__name__} {value!r} cannot be a parameter: use JSON-like values '
                    '(numbers, strings, lists, dicts) or protocol buffers.')


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(',', ':'))


def key_of(parts: dict[str, Any]) -> str:
    """The cache key of a parts dict (see the package docstring); only ``KEY_FIELDS`` are hashed."""
    return sha256(canonical_json({k: parts.get(k) for k in KEY_FIELDS}))
