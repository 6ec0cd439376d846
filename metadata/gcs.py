"""Google Cloud Storage (``gs://bucket/key``) for ``sluice.metadata.storage``, on the
google-cloud-storage client that Beam's ``[gcp]`` extra already installs.

Why not gcsfs: no gcsfs release installs beside this stack. Those from 2026 need
google-cloud-storage 3, which Beam 2.61's ``[gcp]`` extra refuses (``<3``); the older ones pin an
fsspec of 2025 or before, which s3fs 2026.9 refuses. So ``gs://`` gets an fsspec file system of its own
(``GcsFileSystem``: the calls the storage layer makes, each one or two requests), plus the single-object
calls a push destination needs (``create_exclusive`` and friends, as the S3 ones in storage.py).

The endpoint and credentials are the client's own: ``STORAGE_EMULATOR_HOST`` (an emulator, reached
without credentials), else Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud
auth application-default login``, or the metadata server of a Google Cloud machine). Sluice reads no key.

An object's ``ETag`` here is the hex MD5 of its bytes (GCS's ``md5Hash``), as S3 gives for a single-part
upload, so the content fingerprints of push destinations mean the same on both. A composite object has no
MD5: its CRC32C and generation stand in (a changed object still changes it).
"""
from __future__ import annotations

import base64
import functools
import io
import os
import posixpath
import warnings
from typing import Any

from fsspec.spec import AbstractFileSystem

TIMEOUT = (10, 120)  # seconds to connect, to read


def client_module():
    """``google.cloud.storage`` (ImportError where it is not installed)."""
    with warnings.catch_warnings():  # google-auth and api-core warn about grpcio and Python versions on import
        warnings.simplefilter('ignore', FutureWarning)
        from google.cloud import storage
    return storage


@functools.lru_cache(maxsize=4)
def client(settings: tuple) -> Any:
    """One client per setting of the environment (``settings``: the storage layer's SETTINGS values).
    No project is looked up: Sluice only reads and writes objects in existing buckets, which needs none
    (``GOOGLE_CLOUD_PROJECT`` is passed on when set)."""
    return client_module().Client(project=os.environ.get('GOOGLE_CLOUD_PROJECT') or None)


def _retry():
    """Retries of transient errors for about 15 s (the client's default keeps trying for 120 s, so a
    wrong endpoint would take two minutes to be reported)."""
    from google.cloud.storage.retry import DEFAULT_RETRY
    return DEFAULT_RETRY.with_timeout(15.0)


def _not_found() -> type:
    from google.api_core.exceptions import NotFound
    return NotFound


def split(path: str) -> tuple[str, str]:
    """``bucket/key`` (a URL without its scheme) -> (bucket, key)."""
    bucket, _, key = path.strip('/').partition('/')
    return bucket, key


def md5_hex(blob: Any) -> str:
    if blob.md5_hash:
        return base64.b64decode(blob.md5_hash).hex()
    return f'crc32c:{blob.crc32c}:{blob.generation}'


def _file_info(bucket: str, blob: Any) -> dict[str, Any]:
    return {'name': f'{bucket}/{blob.name}', 'size': int(blob.size or 0), 'type': 'file', 'ETag': md5_hex(blob),
            'generation': blob.generation}


class GcsFileSystem(AbstractFileSystem):
    """The fsspec calls Sluice's storage layer makes, for ``gs://``. Paths are ``bucket/key``."""

    protocol = ('gs', 'gcs')
    root_marker = ''

    def __init__(self, settings: tuple = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings

    @property
    def client(self) -> Any:
        return client(self.settings)

    def _bucket(self, name: str) -> Any:
        return self.client.bucket(name)

    def _blobs(self, path: str, delimiter: str | None = None) -> tuple[list, list[str]]:
        """(objects, common prefixes) under ``path/`` (the whole bucket for a bare bucket name)."""
        bucket, key = split(path)
        prefix = key.rstrip('/') + '/' if key else ''
        found = self.client.list_blobs(bucket, prefix=prefix, delimiter=delimiter, retry=_retry(), timeout=TIMEOUT)
        blobs = list(found)
        return blobs, sorted(found.prefixes)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        path = self._strip_protocol(path).rstrip('/')
        bucket, key = split(path)
        blobs, prefixes = self._blobs(path, delimiter='/')
        entries = [_file_info(bucket, b) for b in blobs if b.name != key.rstrip('/') + '/']
        entries += [{'name': f'{bucket}/{p.rstrip("/")}', 'size': 0, 'type': 'directory'} for p in prefixes]
        if not entries and key:  # (an empty bucket lists nothing; a missing one raised NotFound)
            entries = [self.info(path)]  # an object: itself; nothing: FileNotFoundError
        return entries if detail else [e['name'] for e in entries]

    def exists(self, path: str, **kwargs: Any) -> bool:
        """False only for what is not there: any other error (refused, unreachable) is raised."""
        try:
            self.info(path)
        except FileNotFoundError:
            return False
        return True

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path).rstrip('/')
        bucket, key = split(path)
        if not key:  # by listing it: reading a bucket's own metadata takes a permission object roles lack
            try:
                next(iter(self.client.list_blobs(bucket, max_results=1, retry=_retry(), timeout=TIMEOUT)), None)
            except _not_found():
                raise FileNotFoundError(f'NoSuchBucket: there is no bucket {bucket}') from None
            return {'name': bucket, 'size': 0, 'type': 'directory'}
        blob = self._bucket(bucket).get_blob(key, retry=_retry(), timeout=TIMEOUT)
        if blob is not None:
            return _file_info(bucket, blob)
        under = self.client.list_blobs(bucket, prefix=key + '/', max_results=1, retry=_retry(), timeout=TIMEOUT)
        if any(True for _ in under):
            return {'name': path, 'size': 0, 'type': 'directory'}
        raise FileNotFoundError(path)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Every object under ``path`` in one listing (the directories it implies with ``withdirs``)."""
        path = self._strip_protocol(path).rstrip('/')
        bucket, key = split(path)
        try:
            blob = self._bucket(bucket).get_blob(key, retry=_retry(), timeout=TIMEOUT) if key else None
        except _not_found():
            blob = None
        found: dict[str, dict] = {f'{bucket}/{blob.name}': _file_info(bucket, blob)} if blob is not None else {}
        base_depth = path.count('/')
        for b in self._blobs(path)[0]:
            info = _file_info(bucket, b)
            name = info['name']
            depth = name.count('/') - base_depth
            if maxdepth is not None and depth > maxdepth:
                continue
            found[name] = info
            if withdirs:
                parent = posixpath.dirname(name)
                while len(parent) > len(path) and parent not in found:
                    found[parent] = {'name': parent, 'size': 0, 'type': 'directory'}
                    parent = posixpath.dirname(parent)
        found = dict(sorted(found.items()))
        return found if detail else list(found)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        bucket, key = split(self._strip_protocol(path))
        try:
            data = self._bucket(bucket).blob(key).download_as_bytes(retry=_retry(), timeout=TIMEOUT)
        except _not_found():
            raise FileNotFoundError(path) from None
        return data[start:end] if start is not None or end is not None else data

    def pipe_file(self, path: str, value: bytes, mode: str = 'overwrite', **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(path))
        self._bucket(bucket).blob(key).upload_from_string(value, content_type='application/octet-stream',
                                                          retry=_retry(), timeout=TIMEOUT)

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = 'overwrite', **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(rpath))
        self._bucket(bucket).blob(key).upload_from_filename(lpath, content_type='application/octet-stream',
                                                            retry=_retry(), timeout=TIMEOUT)

    def get_file(self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None, **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(rpath))
        try:
            self._bucket(bucket).blob(key).download_to_filename(lpath, retry=_retry(), timeout=TIMEOUT)
        except _not_found():
            if os.path.exists(lpath):  # the client leaves an empty file behind
                os.remove(lpath)
            raise FileNotFoundError(rpath) from None

    def rm(self, path: str, recursive: bool = False, maxdepth: int | None = None) -> None:
        path = self._strip_protocol(path).rstrip('/')
        bucket, key = split(path)
        names = [key] if key else []
        if recursive:
            names += [b.name for b in self._blobs(path)[0]]
        gone = 0
        for name in names:
            try:
                self._bucket(bucket).delete_blob(name, retry=_retry(), timeout=TIMEOUT)
                gone += 1
            except _not_found():
                pass
        if not gone:
            raise FileNotFoundError(path)

    def _open(self, path: str, mode: str = 'rb', **kwargs: Any) -> Any:
        """Reading: the object in ranged reads of 1 MiB (a CSV's header line reads one); writing: a
        buffer uploaded whole when it is closed."""
        if 'r' not in mode:
            return _Upload(self, path)
        bucket, key = split(self._strip_protocol(path))
        try:
            return self._bucket(bucket).blob(key).open('rb', chunk_size=1 << 20, retry=_retry(), timeout=TIMEOUT)
        except _not_found():
            raise FileNotFoundError(path) from None


class _Upload(io.BytesIO):
    def __init__(self, fs: GcsFileSystem, path: str) -> None:
        super().__init__()
        self.fs, self.path = fs, path

    def close(self) -> None:
        if not self.closed:
            self.fs.pipe_file(self.path, self.getvalue())
        super().close()


# -- single objects, for push destinations (see sluice.components.production.objectstore) ---------------
def create_exclusive(settings: tuple, bucket: str, key: str, data: bytes) -> bool:
    """Create the object only if none is there (``ifGenerationMatch=0``): True if this call did."""
    from google.api_core.exceptions import PreconditionFailed
    try:
        client(settings).bucket(bucket).blob(key).upload_from_string(
            data, if_generation_match=0, content_type='application/octet-stream', retry=_retry(), timeout=TIMEOUT)
    except PreconditionFailed:
        return False
    return True


def put_object(settings: tuple, bucket: str, key: str, source: str | bytes) -> str:
    """One object from bytes or a local file's path; its MD5 (hex)."""
    blob = client(settings).bucket(bucket).blob(key)
    if isinstance(source, bytes):
        blob.upload_from_string(source, content_type='application/octet-stream', retry=_retry(), timeout=TIMEOUT)
    else:
        blob.upload_from_filename(source, content_type='application/octet-stream', retry=_retry(), timeout=TIMEOUT)
    return md5_hex(blob)


def copy_object(settings: tuple, bucket: str, key: str, source_bucket: str, source_key: str) -> None:
    gcs = client(settings)
    source = gcs.bucket(source_bucket)
    source.copy_blob(source.blob(source_key), gcs.bucket(bucket), key, retry=_retry(), timeout=TIMEOUT)


def list_objects(settings: tuple, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    found = {}
    for blob in client(settings).list_blobs(bucket, prefix=prefix, retry=_retry(), timeout=TIMEOUT):
        found[blob.name[len(prefix):]] = {'size': int(blob.size or 0), 'etag': md5_hex(blob),
                                          'modified': blob.updated.timestamp()}
    return found


def list_prefixes(settings: tuple, bucket: str, prefix: str) -> list[str]:
    listing = client(settings).list_blobs(bucket, prefix=prefix, delimiter='/', retry=_retry(), timeout=TIMEOUT)
    for _ in listing:  # the prefixes come with the pages
        pass
    return sorted(p[len(prefix):].rstrip('/') for p in listing.prefixes)
