"""``tfx.orchestration.metadata``: connection configs, as the Sluice store URLs they stand for."""
from __future__ import annotations

import os
import urllib.parse

from sluice.tfx.v1._common import module_getattr


def sqlite_metadata_connection_config(metadata_db_uri: str) -> str:
    """A SQLite store at ``metadata_db_uri`` (its directory is created, as TFX does): returns the Sluice
    URL ``sqlite:////absolute/path``, which ``tfx.dsl.Pipeline(metadata_connection_config=...)`` takes."""
    path = os.path.abspath(os.path.expanduser(metadata_db_uri))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f'sqlite:///{path}'


def mysql_metadata_connection_config(host: str, port: int, database: str, username: str, password: str) -> str:
    """A MySQL store: returns the Sluice URL ``mysql://user:password@host:port/database``."""
    quote = urllib.parse.quote
    return f'mysql://{quote(username, safe="")}:{quote(password, safe="")}@{host}:{int(port)}/{database}'


ConnectionConfigType = str  # Sluice takes a store URL
_OFFERED = ['sqlite_metadata_connection_config', 'mysql_metadata_connection_config', 'ConnectionConfigType']
__getattr__ = module_getattr('tfx.orchestration.metadata', lambda: _OFFERED, {})
__all__ = _OFFERED
