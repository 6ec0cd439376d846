"""``tfx.orchestration.metadata``: ML-Metadata connection configs (the real ``ConnectionConfig``
messages of ``ml_metadata.proto``, as TFX returns) and ``Metadata``, TFX's handle on a store.

    config = tfx.orchestration.metadata.sqlite_metadata_connection_config('metadata.db')
    tfx.dsl.Pipeline(..., metadata_connection_config=config)   # the store is sqlite:////abs/metadata.db
    with tfx.orchestration.metadata.Metadata(config) as m:      # m.store: ML-Metadata's MetadataStore
        m.store.get_artifacts_by_type('Examples')
"""
from __future__ import annotations

import os
import urllib.parse
from typing import Any

from sluice.tfx.v1._common import module_getattr

CONFIG_MESSAGE = 'ml_metadata.ConnectionConfig'


def _config() -> Any:
    from ml_metadata.proto import metadata_store_pb2

    return metadata_store_pb2.ConnectionConfig()


def sqlite_metadata_connection_config(metadata_db_uri: str) -> Any:
    """A SQLite store at ``metadata_db_uri``, created if missing (its directory too, as TFX does)."""
    from ml_metadata.proto import metadata_store_pb2

    path = os.path.abspath(os.path.expanduser(metadata_db_uri))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    config = _config()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def mysql_metadata_connection_config(host: str, port: int, database: str, username: str, password: str) -> Any:
    """A MySQL store (the password stays in the message, as in TFX; Sluice never shows it)."""
    config = _config()
    config.mysql.host, config.mysql.port, config.mysql.database = host, int(port), database
    config.mysql.user, config.mysql.password = username, password
    return config


def is_connection_config(value: Any) -> bool:
    """Is ``value`` ML-Metadata's ConnectionConfig message (checked without importing ml_metadata)?"""
    descriptor = getattr(value, 'DESCRIPTOR', None)
    return getattr(descriptor, 'full_name', None) == CONFIG_MESSAGE


def store_url(config: Any) -> str:
    """The Sluice store URL a ConnectionConfig stands for: ``sqlite:////abs/path``, ``mysql://...``,
    ``postgresql://...`` or ``:memory:``. A password is percent-quoted into the URL, which Sluice masks
    wherever it shows one."""
    kind = config.WhichOneof('config')
    quote = urllib.parse.quote
    if kind == 'sqlite':
        return f'sqlite:///{os.path.abspath(config.sqlite.filename_uri)}'
    if kind == 'fake_database':
        return ':memory:'
    if kind in ('mysql', 'postgresql'):
        cfg = getattr(config, kind)
        database = cfg.database if kind == 'mysql' else cfg.dbname
        secret = f':{quote(cfg.password, safe="")}' if cfg.password else ''
        user = f'{quote(cfg.user, safe="")}{secret}@' if cfg.user else ''
        port = f':{int(cfg.port)}' if cfg.port else ''
        return f'{kind}://{user}{cfg.host}{port}/{database}'
    raise ValueError(f'metadata_connection_config: a ConnectionConfig with {kind or "nothing"} set is not a store '
                     'Sluice opens; give sqlite_metadata_connection_config(path) or a store URL.')


class Metadata:
    """TFX's handle on a store: ``with Metadata(config) as m:``, ``m.store`` is ML-Metadata's own
    ``MetadataStore`` over that database (what TFX's inspection code reads)."""

    def __init__(self, connection_config: Any) -> None:
        if not is_connection_config(connection_config):
            raise TypeError('Metadata(...) takes what tfx.orchestration.metadata.sqlite_metadata_connection_config(path) '
                            f'returns; got {type(connection_config).__name__}.')
        self._config = connection_config
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ml_metadata.metadata_store import metadata_store

            self._store = metadata_store.MetadataStore(self._config)
        return self._store

    def __enter__(self) -> Metadata:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._store = None


def __getattr__(name: str) -> Any:
    if name == 'ConnectionConfigType':  # TFX's alias of the message class (read on first use: no import before)
        from ml_metadata.proto import metadata_store_pb2

        return metadata_store_pb2.ConnectionConfig
    return _missing(name)


_OFFERED = ['sqlite_metadata_connection_config', 'mysql_metadata_connection_config', 'ConnectionConfigType',
            'Metadata']
_missing = module_getattr('tfx.orchestration.metadata', lambda: _OFFERED, {})
__all__ = _OFFERED
