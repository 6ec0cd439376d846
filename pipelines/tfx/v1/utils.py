"""``tfx.utils``: what module files use of it (``parse_pbtxt_file``)."""
from __future__ import annotations

from typing import Any

from sluice.tfx.v1._common import module_getattr


def parse_pbtxt_file(file_name: str, message: Any) -> Any:
    """Parse a text-format protobuf file into ``message`` and return it, as TFX's helper does
    (e.g. ``tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())``)."""
    from google.protobuf import text_format

    with open(file_name, encoding='utf-8') as f:
        return text_format.Parse(f.read(), message)


_OFFERED = ['parse_pbtxt_file']
_MISSING = {
    'write_pbtxt_file': 'write with google.protobuf.text_format.MessageToString and open()',
    'JsonableType': 'not needed in Sluice',
}
__getattr__ = module_getattr('tfx.utils', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
