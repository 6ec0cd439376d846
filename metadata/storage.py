"""Where Sluice keeps files: a local path, or an object store URL (``s3://bucket/key``,
``gs://bucket/key``), behind one set of functions keyed on the URL's scheme.

Local paths keep the operating system's calls (locks, renames, mtimes). Object stores go through
fsspec file systems: s3fs for S3, Sluice's own for GCS (``sluice.metadata.gcs``, on the
google-cloud-storage client; no gcsfs release installs beside this stack). Both read the endpoint and
credentials the way every AWS and Google tool does: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``; ``GOOGLE_APPLICATION_CREDENTIALS``,
``STORAGE_EMULATOR_HOST``. Sluice never reads a key itself, so none can reach a message, a log or the
metadata store. Errors from the store come back as ``StorageError`` naming the URL, what failed and
which variable to set.

    >>> join('s3://models/penguin', 'Trainer', 'model', '7')
    's3://models/penguin/Trainer/model/7'
"""
from __future__ import annotations

import functools
import glob as _glob
import os
import posixpath
import shutil
import uuid
from typing import Any, Iterator

PACKAGES = {'s3': 's3fs', 'gs': 'google-cloud-storage', 'gcs': 'google-cloud-storage'}
EMPTY_MARK = '.sluice-empty'  # the one object of an artifact that holds no files


class StorageError(RuntimeError):
    """An object store refused or could not be reached; the message names the URL and the fix.
    A retry cannot help until the setting is fixed."""
    retryable = False


def scheme(uri: str | os.PathLike) -> str:
    head, sep, _ = os.fspath(uri).partition('://')
    return head.lower() if sep else ''


def is_remote(uri: str) -> bool:
    """True for an object store URL Sluice knows (s3://, gs://)."""
    return scheme(uri) in PACKAGES


def normalize(uri: str) -> str:
    """An absolute local path, or the URL unchanged (without a trailing slash)."""
    if is_remote(uri):
        return uri.rstrip('/')
    if scheme(uri) not in ('', 'file'):
        raise StorageError(f'{uri}: the {scheme(uri)}:// scheme is not supported; use a local path, s3:// '
                           'or gs://.')
    return os.path.abspath(os.path.expanduser(uri.removeprefix('file://')))


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def name(uri: str) -> str:
    """The last part of a path or URL."""
    return posixpath.basename(uri.rstrip('/')) if is_remote(uri) else os.path.basename(uri.rstrip(os.sep))


# The environment variables that change which store a URL reaches, or as whom: a file system object
# is made again when one changes (a test, or a notebook that sets them after a first call).
SETTINGS = ('AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_ACCESS_KEY_ID', 'AWS_PROFILE', 'AWS_DEFAULT_REGION',
            'GOOGLE_APPLICATION_CREDENTIALS', 'STORAGE_EMULATOR_HOST', 'GOOGLE_CLOUD_PROJECT')


@functools.lru_cache(maxsize=8)
def _filesystem(kind: str, settings: tuple) -> Any:
    try:
        if kind == 'gs':
            from sluice.metadata.gcs import GcsFileSystem, client_module
            client_module()  # the client library, or ImportError now
            return GcsFileSystem(settings, skip_instance_cache=True)
        import fsspec
        return fsspec.filesystem(kind, skip_instance_cache=True)
    except ImportError as e:
        raise StorageError(f'{kind}:// URLs need the {PACKAGES[kind]} package ({e}); install it with '
                           f'`pip install {PACKAGES[kind]}`.') from None


def _settings() -> tuple:
    return tuple(os.environ.get(k) for k in SETTINGS)


def filesystem(uri: str) -> Any:
    """The fsspec file system for an object store URL."""
    return _filesystem('gs' if scheme(uri) == 'gcs' else scheme(uri), _settings())


def _path(uri: str) -> str:
    return uri.split('://', 1)[1]


def _remote(uri: str) -> str:
    return f'{scheme(uri)}://' if is_remote(uri) else ''


# -- errors ------------------------------------------------------------------------------------
def explain(error: BaseException, uri: str, doing: str) -> StorageError:
    """A StorageError naming the URL, what was being done and the setting to check."""
    kind = scheme(uri)
    names = [type(e).__name__ for e in _chain(error)]
    text = str(error).split('\n')[0][:300]
    if kind == 's3':
        endpoint = os.environ.get('AWS_ENDPOINT_URL_S3') or os.environ.get('AWS_ENDPOINT_URL') or 'AWS'
        if 'NoCredentialsError' in names or 'PartialCredentialsError' in names:
            fix = ('no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) '
                   'in the environment')
        elif any(n in names for n in ('EndpointConnectionError', 'ConnectTimeoutError', 'ClientConnectorError',
                                      'ConnectionRefusedError', 'ServerDisconnectedError')):
            fix = (f'the endpoint {endpoint} cannot be reached: check AWS_ENDPOINT_URL (an S3-compatible '
                   'server) or unset it for AWS itself')
        elif isinstance(error, PermissionError) or 'AccessDenied' in text or 'InvalidAccessKeyId' in text \
                or 'SignatureDoesNotMatch' in text:
            fix = (f'{endpoint} refused the credentials ({text}): check AWS_ACCESS_KEY_ID, '
                   'AWS_SECRET_ACCESS_KEY and the bucket policy')
        elif 'NoSuchBucket' in text or 'NoSuchBucket' in names or isinstance(error, FileNotFoundError):
            fix = f'it does not exist at {endpoint} ({text}): create the bucket, or fix the URL or AWS_ENDPOINT_URL'
        else:
            fix = f'{type(error).__name__}: {text}'
    elif kind in ('gs', 'gcs'):
        fix = _explain_gcs(error, names, text)
    else:
        fix = f'{type(error).__name__}: {text}'
    return StorageError(f'Cannot {doing} {uri}: {fix}.')


def _explain_gcs(error: BaseException, names: list[str], text: str) -> str:
    emulator = os.environ.get('STORAGE_EMULATOR_HOST')
    endpoint = f'the emulator at {emulator}' if emulator else 'Google Cloud Storage'
    if 'DefaultCredentialsError' in names:
        return ('no Google credentials were found: set GOOGLE_APPLICATION_CREDENTIALS to a service account key '
                'file, or run `gcloud auth application-default login` (STORAGE_EMULATOR_HOST for an emulator)')
    if any(n in names for n in ('ConnectionError', 'ConnectionRefusedError', 'NewConnectionError',
                                'MaxRetryError', 'ConnectTimeout', 'RetryError')):
        check = 'STORAGE_EMULATOR_HOST (an emulator) or unset it for Google Cloud Storage itself' if emulator \
            else 'the network, or STORAGE_EMULATOR_HOST for an emulator'
        return f'{endpoint} cannot be reached: check {check}'
    if any(n in names for n in ('Forbidden', 'Unauthorized', 'RefreshError')) or isinstance(error, PermissionError):
        return (f'{endpoint} refused the credentials ({text}): check GOOGLE_APPLICATION_CREDENTIALS and the '
                "bucket's permissions")
    if 'NoSuchBucket' in text or 'NotFound' in names or isinstance(error, FileNotFoundError):
        return f'it does not exist at {endpoint} ({text}): create the bucket, or fix the URL or STORAGE_EMULATOR_HOST'
    return f'{type(error).__name__}: {text}'


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while error is not None and seen < 10:
        yield error
        error, seen = error.__cause__ or error.__context__, seen + 1


def _guarded(doing: str):
    """Turn an object store's errors into StorageError (local errors pass through unchanged)."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(uri: str, *args: Any, **kwargs: Any) -> Any:
            if not is_remote(uri):
                return fn(uri, *args, **kwargs)
            try:
                return fn(uri, *args, **kwargs)
            except StorageError:
                raise
            except (OSError, RuntimeError, ValueError) as e:
                if isinstance(e, FileNotFoundError) and doing in ('read', 'open', 'stat'):
                    raise
                raise explain(e, uri, doing) from None
            except Exception as e:  # botocore / aiohttp errors that are not OSErrors
                if type(e).__module__.split('.')[0] in ('botocore', 'aiobotocore', 'aiohttp', 'google', 'requests',
                                                        'urllib3'):
                    raise explain(e, uri, doing) from None
                raise
        return call
    return wrap


# -- reading and writing -----------------------------------------------------------------------
@_guarded('read')
def exists(uri: str) -> bool:
    return filesystem(uri).exists(_path(uri)) if is_remote(uri) else os.path.exists(uri)


@_guarded('read')
def isdir(uri: str) -> bool:
    return filesystem(uri).isdir(_path(uri)) if is_remote(uri) else os.path.isdir(uri)


@_guarded('read')
def isfile(uri: str) -> bool:
    return filesystem(uri).isfile(_path(uri)) if is_remote(uri) else os.path.isfile(uri)


@_guarded('list')
def listdir(uri: str) -> list[str]:
    """Names directly under ``uri`` (empty when it does not exist; StorageError when its bucket
    does not)."""
    if not is_remote(uri):
        return sorted(os.listdir(uri)) if os.path.isdir(uri) else []
    fs = filesystem(uri)
    try:
        entries = fs.ls(_path(uri), detail=False, refresh=True)
    except FileNotFoundError:
        bucket = _path(uri).split('/')[0]
        if not fs.exists(bucket):
            raise FileNotFoundError(f'NoSuchBucket: there is no bucket {bucket}') from None
        return []
    return sorted(posixpath.basename(e.rstrip('/')) for e in entries)


@_guarded('list')
def glob_files(pattern: str) -> list[str]:
    """The files matching a glob, as full paths or URLs, sorted (one listing on an object store)."""
    if not is_remote(pattern):
        return sorted(p for p in _glob.glob(pattern) if os.path.isfile(p))
    fs = filesystem(pattern)
    fs.invalidate_cache()
    found = fs.glob(_path(pattern), detail=True)
    return sorted(_remote(pattern) + p for p, info in found.items() if info.get('type') == 'file')


@_guarded('read')
def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        return filesystem(uri).cat_file(_path(uri))
    with open(uri, 'rb') as f:
        return f.read()


@_guarded('write')
def write_bytes(uri: str, data: bytes) -> None:
    if is_remote(uri):
        filesystem(uri).pipe_file(_path(uri), data)
        return
    os.makedirs(os.path.dirname(uri) or '.', exist_ok=True)
    with open(uri, 'wb') as f:
        f.write(data)


@_guarded('open')
def open_file(uri: str, mode: str = 'rb') -> Any:
    """A file object for reading (or writing, for a whole new object)."""
    return filesystem(uri).open(_path(uri), mode) if is_remote(uri) else open(uri, mode)


@_guarded('stat')
def stat(uri: str) -> dict[str, Any]:
    """``size`` and a ``version`` that changes whenever the content may have: an object's ETag on
    an object store, mtime and inode on a local disk."""
    if is_remote(uri):
        info = filesystem(uri).info(_path(uri), refresh=True)
        tag = info.get('ETag') or info.get('etag') or info.get('md5Hash') or info.get('generation') or ''
        return {'size': int(info.get('size') or 0), 'version': str(tag).strip('"')}
    st = os.stat(uri)
    return {'size': st.st_size, 'version': f'{st.st_mtime_ns}:{st.st_ino}'}


@_guarded('measure')
def size(uri: str) -> int:
    """Bytes under a prefix (an object store URL)."""
    return int(filesystem(uri).du(_path(uri), total=True))


@_guarded('delete')
def remove_tree(uri: str) -> None:
    """Delete a directory (every object under a prefix, and this machine's local copy of it) or a
    file; nothing if absent."""
    if not is_remote(uri):
        if os.path.isdir(uri):
            shutil.rmtree(uri, ignore_errors=True)
        elif os.path.lexists(uri):
            os.remove(uri)
        return
    fs = filesystem(uri)
    try:
        fs.rm(_path(uri), recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache()
    shutil.rmtree(local_mirror(uri), ignore_errors=True)


def make_dirs(uri: str) -> None:
    """A local directory; nothing on an object store, where prefixes need no creating."""
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


@_guarded('list')
def tree_state(uri: str) -> dict[str, tuple[int, str]]:
    """URL -> (size, ETag) of every object under a prefix, hidden names left out, in one listing."""
    fs = filesystem(uri)
    fs.invalidate_cache()
    try:
        found = fs.find(_path(uri), detail=True)
    except FileNotFoundError:
        return {}
    return {_remote(uri) + key: (int(info.get('size') or 0), str(info.get('ETag') or info.get('md5Hash') or '').strip('"'))
            for key, info in found.items() if not posixpath.basename(key).startswith('.')}


# -- whole trees between a local disk and a store ----------------------------------------------
@_guarded('upload to')
def upload_tree(uri: str, local_dir: str) -> int:
    """Copy every file under ``local_dir`` to the same relative keys under ``uri``; the number of
    files copied."""
    fs, count = filesystem(uri), 0
    if not any(files for _, _, files in os.walk(local_dir)):  # an artifact with no files still exists
        fs.pipe_file(posixpath.join(_path(uri), EMPTY_MARK), b'')
    for dirpath, _, filenames in os.walk(local_dir):
        for file_name in filenames:
            source = os.path.join(dirpath, file_name)
            relative = os.path.relpath(source, local_dir).replace(os.sep, '/')
            fs.put_file(source, posixpath.join(_path(uri), relative))
            count += 1
    fs.invalidate_cache()
    return count


@_guarded('download')
def download_tree(uri: str, local_dir: str) -> int:
    """Copy every object under the prefix ``uri`` (or the one object) into ``local_dir``."""
    fs, top, count = filesystem(uri), _path(uri).rstrip('/'), 0
    fs.invalidate_cache()
    os.makedirs(local_dir, exist_ok=True)
    if fs.isfile(top):
        fs.get_file(top, os.path.join(local_dir, posixpath.basename(top)))
        return 1
    for key in fs.find(top):
        relative = key[len(top):].lstrip('/')
        target = os.path.join(local_dir, *relative.split('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(key, target)
        count += 1
    return count


def local_cache_root() -> str:
    """Where local copies of remote artifacts and the scratch space of remote pipeline roots live:
    ``SLUICE_CACHE_DIR``, else ``~/.cache/sluice``."""
    return os.path.abspath(os.path.expanduser(os.environ.get('SLUICE_CACHE_DIR') or '~/.cache/sluice'))


def local_mirror(uri: str) -> str:
    """The local directory that stands for a remote URL: ``<cache>/<scheme>/<bucket>/<key>``."""
    return os.path.join(local_cache_root(), scheme(uri), *_path(uri).strip('/').split('/'))


def local_dir(root: str) -> str:
    """Where a pipeline root's local files go (logs, traces, scratch space): the root itself, or its
    local mirror when it is an object store."""
    return local_mirror(root) if is_remote(root) else root


def local_copy(uri: str) -> str:
    """A local directory holding the files under ``uri``: the path itself when local, else a copy
    kept under ``local_cache_root()`` and reused (artifacts never change once published). A copy is
    downloaded beside its place and renamed into it, so a directory there is always complete: a
    download cut off leaves only its ``.partial-*`` directory, and of two processes copying the same
    artifact at once (two nodes on one machine) the first rename wins and the other's copy goes."""
    if not is_remote(uri):
        return uri
    target = local_mirror(uri)
    if os.path.isdir(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f'{target}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}'
    try:
        download_tree(uri, partial)
        os.rename(partial, target)
    except OSError:
        if not os.path.isdir(target):  # not another process's copy arriving first: a real failure
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


# -- objects one at a time: exclusive creates, listings with ETags (push destinations) ----------------
def _s3_client() -> Any:
    """A boto3 S3 client configured from the environment only (endpoint, region, credentials)."""
    return _s3_client_for(_settings())


@functools.lru_cache(maxsize=4)
def _s3_client_for(settings: tuple) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get('AWS_ENDPOINT_URL_S3') or os.environ.get('AWS_ENDPOINT_URL') or None
    config = Config(retries={'max_attempts': 3, 'mode': 'standard'}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client('s3', endpoint_url=endpoint, config=config)


def _bucket_key(uri: str) -> tuple[str, str]:
    if scheme(uri) not in PACKAGES:
        raise StorageError(f'{uri}: only s3:// and gs:// URLs are supported here (a push destination on an '
                           'object store).')
    bucket, _, key = _path(uri).partition('/')
    return bucket, key


def _gcs(uri: str) -> Any:
    """The GCS module for a gs:// URL, None for s3://."""
    if scheme(uri) in ('gs', 'gcs'):
        from sluice.metadata import gcs
        return gcs
    return None


def _error_code(error: BaseException) -> str:
    return str(getattr(error, 'response', {}).get('Error', {}).get('Code', ''))


@_guarded('create')
def create_exclusive(uri: str, data: bytes) -> bool:
    """Create the object ``uri`` holding ``data`` only if no object is there (S3's conditional
    ``PutObject`` with ``If-None-Match: *``, GCS's ``ifGenerationMatch=0``): True if this call created
    it, False if one existed (or another writer's conditional create of it was under way)."""
    bucket, key = _bucket_key(uri)
    if gcs := _gcs(uri):
        return gcs.create_exclusive(_settings(), bucket, key, data)
    try:
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch='*')
    except Exception as e:  # noqa: BLE001 - botocore's ClientError; anything else goes to _guarded
        if _error_code(e) in ('PreconditionFailed', 'ConditionalRequestConflict', '412', '409'):
            return False
        raise
    return True


@_guarded('write')
def put_object(uri: str, source: str | bytes) -> str:
    """Write one object in a single request (so its ETag is the MD5 of its bytes, unless an S3 bucket
    encrypts with KMS): ``source`` is the bytes or a local file's path. Returns the ETag."""
    bucket, key = _bucket_key(uri)
    if gcs := _gcs(uri):
        return gcs.put_object(_settings(), bucket, key, source)
    if isinstance(source, bytes):
        answer = _s3_client().put_object(Bucket=bucket, Key=key, Body=source)
    else:
        with open(source, 'rb') as f:
            answer = _s3_client().put_object(Bucket=bucket, Key=key, Body=f)
    return str(answer.get('ETag', '')).strip('"')


@_guarded('copy')
def copy_object(uri: str, source_uri: str) -> None:
    """Copy the object ``source_uri`` to ``uri`` inside the store (no download)."""
    bucket, key = _bucket_key(uri)
    source_bucket, source_key = _bucket_key(source_uri)
    if scheme(uri) != scheme(source_uri):
        put_object(uri, read_bytes(source_uri))
    elif gcs := _gcs(uri):
        gcs.copy_object(_settings(), bucket, key, source_bucket, source_key)
    else:
        _s3_client().copy_object(Bucket=bucket, Key=key, CopySource={'Bucket': source_bucket, 'Key': source_key})


@_guarded('list')
def list_objects(uri: str) -> dict[str, dict[str, Any]]:
    """Every object under the prefix ``uri/``: its key relative to the prefix -> ``size``, ``etag``
    (the MD5 of a single-request upload, without quotes) and ``modified`` (seconds since the epoch).
    Empty when there is none."""
    bucket, key = _bucket_key(uri)
    prefix = key.rstrip('/') + '/' if key else ''
    if gcs := _gcs(uri):
        return gcs.list_objects(_settings(), bucket, prefix)
    found = {}
    for page in _s3_client().get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get('Contents', []):
            found[item['Key'][len(prefix):]] = {'size': int(item['Size']), 'etag': str(item['ETag']).strip('"'),
                                                'modified': item['LastModified'].timestamp()}
    return found


@_guarded('list')
def list_prefixes(uri: str) -> list[str]:
    """The names of the "directories" directly under ``uri`` (common prefixes), sorted."""
    bucket, key = _bucket_key(uri)
    prefix = key.rstrip('/') + '/' if key else ''
    if gcs := _gcs(uri):
        return gcs.list_prefixes(_settings(), bucket, prefix)
    names = []
    for page in _s3_client().get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix, Delimiter='/'):
        names += [p['Prefix'][len(prefix):].rstrip('/') for p in page.get('CommonPrefixes', [])]
    return sorted(names)
