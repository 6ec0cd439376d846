"""Reaching an ML-Metadata database: a store URL turned into ML-Metadata's connection config (the
password from the URL, else from the environment: ``sluice.metadata.credentials``), the connection
opened with errors that say how to fix it (a mistyped path, a server that is down, a refused login, a
store of another schema version), and every call retried while another process holds the database.
A password is never part of what a Connection shows: ``url`` has it masked.
"""
from __future__ import annotations

import contextlib
import glob
import os
import random
import re
import socket
import threading
import time
from typing import Callable, TypeVar
from urllib.parse import unquote, urlparse

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store as mlmd
from ml_metadata.proto import metadata_store_pb2 as pb

from sluice.metadata.credentials import MASK, find_password, os_user, redact_url, scrub
from sluice.metadata.records import MetadataStoreError

T = TypeVar('T')


def _connection_config(url: str | None, create: bool = True) -> tuple[pb.ConnectionConfig, str]:
    config = pb.ConnectionConfig()
    if not url or url in (':memory:', 'memory://', 'memory:'):
        config.fake_database.SetInParent()
        return config, 'memory://'
    if url.startswith('sqlite://'):
        path = url[len('sqlite://'):]
        if path.startswith('/'):
            path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        if not path:
            raise MetadataStoreError(f'Metadata URL {redact_url(url)!r} names no file; use '
                                     'sqlite:///path/to/metadata.db.', retryable=False)
    elif '://' not in url:
        path = url
    else:
        return _server_config(config, url), url
    return _sqlite_config(config, url, path, create)


def _server_config(config: pb.ConnectionConfig, url: str) -> pb.ConnectionConfig:
    """The config of a PostgreSQL or MySQL store, its password from the URL or the environment."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split('+')[0]
    try:
        port = parsed.port
    except ValueError:  # also what a password with an unescaped / ? or # makes of the URL
        raise MetadataStoreError(
            f'Metadata URL {scheme}://...: what follows the host is not a port number. Percent-encode '
            'the characters / ? # @ : in the user name and password (%2F %3F %23 %40 %3A), or leave the '
            f'password out of the URL and set {_PASSWORD_HINT}.', retryable=False) from None
    if scheme in ('postgresql', 'postgres'):
        cfg = config.postgresql
        cfg.host = parsed.hostname or 'localhost'
        cfg.port = str(port or 5432)
        cfg.dbname = parsed.path.lstrip('/') or 'mlmd'
    elif scheme == 'mysql':
        cfg = config.mysql
        cfg.host = parsed.hostname or 'localhost'
        cfg.port = port or 3306
        cfg.database = parsed.path.lstrip('/') or 'mlmd'
    else:
        raise MetadataStoreError(
            f'Unsupported metadata URL {redact_url(url)!r}: use sqlite:///path/metadata.db, '
            'postgresql://user@host:port/db, mysql://user@host:port/db or :memory: (the password in '
            f'the URL, or better in {_PASSWORD_HINT}).', retryable=False)
    if parsed.username:
        cfg.user = unquote(parsed.username)
    cfg.password = _password(config, url)[0]
    return config


_PASSWORD_HINT = 'SLUICE_METADATA_PASSWORD (PostgreSQL: or PGPASSWORD, or ~/.pgpass)'


def _password(config: pb.ConnectionConfig, url: str) -> tuple[str, str]:
    """The password of a server store's connection, and where it came from (in words)."""
    parsed = urlparse(url)
    if parsed.password and unquote(parsed.password) != MASK:
        return unquote(parsed.password), 'the one in the URL'
    kind = config.WhichOneof('config')
    cfg = getattr(config, kind)
    database = cfg.dbname if kind == 'postgresql' else cfg.database
    return find_password(kind, cfg.host, str(cfg.port), database, cfg.user)


def _sqlite_config(config: pb.ConnectionConfig, url: str, path: str,
                   create: bool) -> tuple[pb.ConnectionConfig, str]:
    """The config of a SQLite store at ``path``; without ``create``, the file must exist."""
    path = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(path)
    if not create:
        if not os.path.isfile(path):
            found = sorted(glob.glob(os.path.join('runs', '*', 'metadata.db')))
            hint = f' Stores under this directory: {", ".join(found)}.' if found else ''
            raise MetadataStoreError(
                f'No metadata store at {path} (from {url!r}). Check the path: sqlite:///relative/to/here.db or '
                f'sqlite:////absolute/path.db.{hint}')
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE
        return config, f'sqlite:///{path}'
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise MetadataStoreError(
            f'Cannot create the directory {parent!r} for the SQLite metadata store {url!r}: {e.strerror}. '
            'Choose a writable location (pipeline_root or --metadata).') from None
    if not os.path.exists(path):
        _new_sqlite_file(path)
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config, f'sqlite:///{path}'


def _new_sqlite_file(path: str) -> None:
    """Create the SQLite file of a new store in write-ahead-log mode, which the file keeps: a commit
    is one append and one sync instead of a journal written, synced and deleted (0.4 ms a write
    against 1.1 ms here), and readers no longer wait for a writer. WAL needs every process of the
    store on one machine (a shared-memory index beside the file), which SQLite on a network
    filesystem never was safe for anyway (README: a store shared by machines is PostgreSQL or
    MySQL). A store created before stays in the mode it has.

    Python's own SQLite never opens the store's path: it makes the file under another name, linked
    into place only if no store is there yet. (A second SQLite library on a file that ML-Metadata's
    has open in the same process would release ML-Metadata's locks when it closes: POSIX locks
    belong to the process: the likely cause of the "disk I/O error" and "database disk image is
    malformed" that an earlier attempt, setting the mode through Python's SQLite on open stores, met.)"""
    import sqlite3

    if any(os.path.exists(path + side) for side in ('-wal', '-shm', '-journal')):
        return  # what a store deleted by hand left: SQLite drops it when it creates the file itself
    made = f'{path}.{os.getpid()}.{threading.get_ident()}.new'
    try:
        with contextlib.closing(sqlite3.connect(made)) as db:
            db.execute('PRAGMA journal_mode=WAL')
        os.link(made, path)
    except (sqlite3.Error, OSError):  # another process made it first, or links are refused: the default
        pass
    finally:
        for leftover in (made, f'{made}-wal', f'{made}-shm'):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


class Connection:
    """An open ML-Metadata store, chosen by URL, and ``retry`` for every call made on it.

    Calls that ML-Metadata aborts because another process holds the database (SQLite's
    "database is locked") are retried with backoff.
    """

    RETRIES = 12

    def __init__(self, url: str | None = None, create: bool = True) -> None:
        """``create=False`` refuses to create a SQLite store that does not exist (for commands that
        read one: a mistyped path is an error, not a new empty store). ``url`` is the store's URL
        as it may be shown (password masked)."""
        config, self._connect_url = _connection_config(url, create)
        self.url: str = redact_url(self._connect_url)  # type: ignore[assignment]
        self._lock = threading.RLock()
        try:
            self._store = self.retry(lambda: mlmd.MetadataStore(config), creating=True)
        except (mlmd_errors.StatusError, RuntimeError) as e:
            raise _open_error(config, self._connect_url, e) from None

    @property
    def connect_url(self) -> str:
        """The URL that opens this store again, in this process or in one started from it (which
        inherits its environment): with the URL's own password, if it had one. Never show it; show
        ``url``."""
        return self._connect_url

    @property
    def mlmd(self) -> mlmd.MetadataStore:
        """The underlying ml_metadata MetadataStore, for queries this class does not offer."""
        return self._store

    def retry(self, call: Callable[[], T], creating: bool = False) -> T:
        """Call ML-Metadata (``call`` uses ``self.mlmd``), retrying with backoff while another process
        holds the database. With ``creating`` (connecting, which creates ML-Metadata's tables in a new
        database, or registering a type), also while another process creates the same thing: processes
        opening a new PostgreSQL or MySQL database at once race, the losers get a unique-key violation
        or, when their CREATE TABLE comes second, 'relation "type" already exists', or for a type just
        made by another, 'Conflict of external_id' (only those, never ML-Metadata's AlreadyExistsError for
        a record), and the next try finds what the winner created; a
        process that connects while another is half way through creating the tables is told that the
        database has "a subset of tables" and to retry the connection.
        A new SQLite file opened while another process is still creating its tables says 'no such table'
        (retried a few times only: a file that is no store says so for good)."""
        delay = 0.05
        for attempt in range(self.RETRIES + 1):
            try:
                with self._lock:
                    return call()
            except (mlmd_errors.StatusError, RuntimeError) as e:
                busy = isinstance(e, mlmd_errors.AbortedError) or 'Concurrent writes aborted' in str(e) or (
                    isinstance(e, (mlmd_errors.InternalError, mlmd_errors.UnavailableError))
                    and ('locked' in str(e) or 'busy' in str(e)))
                race = creating and (any(m in str(e) for m in ('duplicate key value', 'Duplicate entry',
                                                               'subset of tables',  # "Please retry the connection"
                                                               'Conflict of external_id'))  # a type, just made
                                     or re.search(r'(relation|table) "?`?\w+`?"? already exists', str(e)) is not None
                                     or ('no such table' in str(e) and attempt < 4))  # SQLite, tables half made
                if not (busy or race) or attempt == self.RETRIES:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError('unreachable')


def _open_error(config: pb.ConnectionConfig, url: str, e: Exception) -> MetadataStoreError:
    """Why the store at ``url`` could not be opened, and what to do about it (no password in it)."""
    kind = config.WhichOneof('config')
    secret = getattr(config, kind).password if kind in ('postgresql', 'mysql') else ''
    shown = redact_url(url)
    if isinstance(e, mlmd_errors.FailedPreconditionError):
        return MetadataStoreError(
            f'The metadata store at {shown} has a schema version this ML-Metadata '
            f'({_mlmd_version()}) does not use: {scrub(str(e), secret)}. Sluice never migrates a store '
            'silently: use a store made by this version, or back it up and migrate it with ML-Metadata\'s '
            'enable_upgrade_migration.', retryable=False)
    version = re.search(r'database version (\d+) is (older|greater) than library version (\d+)', str(e))
    if version:
        found, relation, library = version.groups()
        return MetadataStoreError(
            f'The metadata store at {shown} has ML-Metadata schema version {found}, '
            f'{"older" if relation == "older" else "newer"} than the version {library} that '
            f'{_mlmd_version()} uses. Sluice never migrates a store silently: '
            + ('back it up, then migrate it with ML-Metadata (MetadataStore(config, '
               'enable_upgrade_migration=True)), or use the older Sluice/ml-metadata that wrote it.'
               if relation == 'older' else
               'use the newer ml-metadata (and Sluice) that wrote it.'), retryable=False)
    if kind == 'sqlite':
        return MetadataStoreError(
            f'Cannot open {config.sqlite.filename_uri} as an ML-Metadata SQLite store: '
            f'{_sqlite_reason(str(e).strip().rstrip("."))}. '
            'Point --metadata at a Sluice metadata store (the metadata.db under a pipeline root).')
    unreachable = _probe(config) if kind in ('postgresql', 'mysql') else None
    reason = scrub(unreachable or str(e).strip().rstrip('.'), secret)
    if kind in ('postgresql', 'mysql') and unreachable is None and any(m in reason for m in _LOGIN_FAILED):
        return MetadataStoreError(f'Cannot connect to the metadata store at {shown}: {_refused(config, url, reason)}')
    return MetadataStoreError(
        f'Cannot connect to the metadata store at {shown}: {reason}. Check that the database server is '
        'running and reachable and the credentials are right, or use a local store with --metadata '
        'sqlite:///path/metadata.db.')


# How ML-Metadata reports a server that answered but did not let it in (its own log has the server's words).
_LOGIN_FAILED = ('connection pointer is NULL', 'mysql_real_connect failed', 'Access denied')


def _refused(config: pb.ConnectionConfig, url: str, reason: str) -> str:
    """What to check when a server that answers refuses the connection: who, where, which password."""
    kind = config.WhichOneof('config')
    cfg = getattr(config, kind)
    database = cfg.dbname if kind == 'postgresql' else cfg.database
    return (f'the server at {cfg.host}:{cfg.port} answers but refused user {cfg.user or os_user()!r} on '
            f'database {database!r} ({reason}). Check the user, the database and the password (the '
            f'password used: {_password(config, url)[1]}). A password is taken from the URL, else from '
            '$SLUICE_METADATA_PASSWORD' + (', else $PGPASSWORD, else ~/.pgpass ($PGPASSFILE).'
                                          if kind == 'postgresql' else '.'))


def _probe(config: pb.ConnectionConfig) -> str | None:
    """Why a server store's host and port cannot be reached over TCP, or None when they can be."""
    cfg = getattr(config, config.WhichOneof('config'))
    try:
        socket.create_connection((cfg.host, int(cfg.port)), timeout=5).close()
    except OSError as e:
        return f'{cfg.host}:{cfg.port}: {e.strerror or e}'
    return None


def _sqlite_reason(text: str) -> str:
    """SQLite's own words from an ML-Metadata error ('file is not a database'), without the query."""
    found = re.search(r'executing query: (.*?) query:', text)
    return found.group(1) if found else text[:200]


def _mlmd_version() -> str:
    try:
        from importlib.metadata import version
        return 'ml-metadata ' + version('ml-metadata')
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return 'ml-metadata'
