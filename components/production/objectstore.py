"""A push destination on an object store (``s3://bucket/prefix``, ``gs://bucket/prefix``): the keys,
the claim, the commit marker, the compare-and-swap and the history, where a local destination has
directories, renames and a lock. ``destination`` reads through here and ``changes`` writes through here when
``sluice.metadata.storage.is_remote(destination)``; local destinations never come here.

Keys under a destination ``s3://bucket/prefix`` (or ``gs://``):

- ``<version>/.sluice-claim``: created FIRST, with an exclusive create (S3's ``PutObject`` with
  ``If-None-Match: *``, GCS's ``ifGenerationMatch=0``), by the one writer that takes that version
  number: who, when, which change. A writer that loses it takes a higher number. A version holding
  a claim but no valid push record is a write in progress or one cut off (a kill, a network error):
  it is never complete, and readers skip it. A version without a claim was put there by hand or by
  another tool (judged as locally).
- ``<version>/...``: the version's files, as on a local disk (the SavedModel at its root, ``model.onnx``),
  each uploaded in one request (or copied inside the store, for a rollback).
- ``<version>/sluice_push.json``: the push record, written LAST: the commit marker.
- ``.sluice-successors/<V>.<g>.json``: the compare-and-swap. Before writing its record, a writer
  that read version ``V`` in production (``none`` for an empty destination) creates this object
  exclusively, naming its version: only one change can replace ``V``. Generation ``g`` goes up only
  when the one before is spent: its version is gone or never got a record within ``GRACE`` seconds
  (its writer died between the two writes), so a hand deletion or a kill never jams the destination.
- ``.sluice-history/<version>-<time>-<uuid>.json``: one history entry per object (no appends).

The content fingerprint of a version on an object store is ``s3etag:`` + sha256 over each file's
relative path, size and ETag (sorted by path), computed from one listing, without reading the bytes;
the push record holds the fingerprint computed from the listing after the upload, so a reader's
always matches. For a file uploaded in one ``PutObject`` the ETag is the MD5 of its bytes (on GCS,
``sluice.metadata.gcs`` gives the object's MD5 as its ETag), so the fingerprint a Model will have
once pushed is computed from its local files too (``expected_fingerprint``: MD5 instead of ETag).
Not so for multipart uploads (made by hand of big files) nor buckets encrypting with KMS, whose ETags
are not MD5s, nor GCS's composite objects, which have no MD5: there a pushed model is still read
correctly, but not recognised as the same content as a local Model.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
import uuid
from typing import Any, Callable

from sluice.metadata import storage

CLAIM = '.sluice-claim'
HISTORY_DIR = '.sluice-history'
SUCCESSORS_DIR = '.sluice-successors'
FINGERPRINT_PREFIX = 's3etag:'
GRACE = 60.0  # seconds a successor whose version has no record yet counts as a commit under way


class Contended(RuntimeError):
    """Other writers kept changing the destination; the message says so."""
    retryable = False


# -- reading ---------------------------------------------------------------------------------------
def stored_files(uri: str) -> dict[str, dict[str, Any]]:
    """The objects under ``uri/`` (relative key -> size, etag, modified)."""
    return storage.list_objects(uri)


def version_numbers(destination: str) -> list[int]:
    """The version "directories" at the destination (claimed, complete or not), oldest first."""
    return sorted(int(name) for name in storage.list_prefixes(destination) if name.isdigit())


def fingerprint(objects: dict[str, dict[str, Any]]) -> str:
    """``s3etag:`` + sha256 over (relative path, size, ETag) of ``objects``, in path order."""
    digest = hashlib.sha256()
    for rel in sorted(objects):
        digest.update(f"{rel}\0{objects[rel]['size']}\0{objects[rel]['etag']}\n".encode())
    return FINGERPRINT_PREFIX + digest.hexdigest()


def expected_fingerprint(files: list[tuple[str, str]]) -> str:
    """The fingerprint the local ``files`` ((relative path, local path)) will have once uploaded
    each in one ``PutObject``: their MD5s stand for the ETags."""
    objects = {}
    for rel, path in files:
        md5 = hashlib.md5(usedforsecurity=False)
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                md5.update(block)
        objects[rel] = {'size': os.path.getsize(path), 'etag': md5.hexdigest()}
    return fingerprint(objects)


def read_json(uri: str) -> Any:
    """The JSON in an object, or None if it is gone."""
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


_entries: dict[tuple[str, str], Any] = {}  # (key, etag) -> entry: a history object never changes


def history_entries(destination: str) -> list[dict]:
    """Every entry of the destination's history, oldest first (by version, then time written)."""
    top = storage.join(destination, HISTORY_DIR)
    found = []
    for rel, info in stored_files(top).items():
        memo = (storage.join(top, rel), info['etag'])
        if memo not in _entries:
            try:
                _entries[memo] = read_json(memo[0])
            except ValueError:  # not JSON: not an entry
                _entries[memo] = None
        entry = _entries[memo]
        if isinstance(entry, dict):
            version, _, rest = rel.partition('-')
            found.append((int(version) if version.isdigit() else 0, rest, entry))
    return [entry for _, _, entry in sorted(found, key=lambda f: (f[0], f[1]))]


def write_history(destination: str, entries: list[dict]) -> None:
    """One object per entry: ``.sluice-history/<version>-<time>-<uuid>.json``."""
    for entry in entries:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')
        key = f"{entry.get('version')}-{stamp}-{uuid.uuid4().hex[:12]}.json"
        storage.put_object(storage.join(destination, HISTORY_DIR, key),
                           json.dumps(entry, sort_keys=True).encode())


# -- writing a version -----------------------------------------------------------------------------
def claim(destination: str, number: int, facts: dict) -> bool:
    """Take version ``number`` (exclusive create of its claim object): True if this writer has it."""
    return storage.create_exclusive(storage.join(destination, str(number), CLAIM),
                                    json.dumps(facts, sort_keys=True).encode())


def upload(target: str, files: list[tuple[str, str]]) -> None:
    """Put ``files`` ((relative path, source)) under ``target``: a local source in one PutObject, an
    object store source copied inside the store."""
    for rel, source in files:
        if storage.is_remote(source):
            storage.copy_object(storage.join(target, rel), source)
        else:
            storage.put_object(storage.join(target, rel), source)


def version_sources(uri: str, leave_out: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(relative path, object URL) of the files of a stored version, without those ``leave_out`` names."""
    return [(rel, storage.join(uri, rel)) for rel in sorted(stored_files(uri)) if not leave_out(rel)]


def download(uri: str, target: str, leave_out: Callable[[str], bool]) -> None:
    """Copy the objects under ``uri`` (without those ``leave_out`` names) into the local ``target``."""
    for rel, source in version_sources(uri, leave_out):
        path = os.path.join(target, *rel.split('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(storage.read_bytes(source))


# -- the compare-and-swap: one successor per version in production -----------------------------------
def _successors(destination: str, base: int | None) -> dict[int, dict[str, Any]]:
    prefix = f"{base if base is not None else 'none'}."
    found = {}
    for rel, info in stored_files(storage.join(destination, SUCCESSORS_DIR)).items():
        if rel.startswith(prefix) and rel.endswith('.json') and rel[len(prefix):-5].isdigit():
            found[int(rel[len(prefix):-5])] = info
    return found


def _successor_uri(destination: str, base: int | None, generation: int) -> str:
    return storage.join(destination, SUCCESSORS_DIR, f"{base if base is not None else 'none'}.{generation}.json")


def take_successor(destination: str, base: int | None, facts: dict,
                   complete: Callable[[int], bool]) -> tuple[bool, dict | None]:
    """Become THE change replacing version ``base`` (None: an empty destination): (True, None), or
    (False, the successor that got there first: its facts, with ``spent`` False while it may still
    commit). ``complete(number)`` says whether a version is complete now."""
    found = _successors(destination, base)
    generation = 0
    if found:
        last = max(found)
        other = read_json(_successor_uri(destination, base, last)) or {}
        number = other.get('version')
        if isinstance(number, int) and complete(number):
            return False, {**other, 'spent': False}
        if time.time() - found[last]['modified'] < GRACE:
            return False, {**other, 'spent': False}
        generation = last + 1  # spent: its version is gone, or its writer died before committing
    if storage.create_exclusive(_successor_uri(destination, base, generation),
                                json.dumps(facts, sort_keys=True).encode()):
        return True, None
    return False, {**(read_json(_successor_uri(destination, base, generation)) or {}), 'spent': False}


def wait_for(other: dict, complete: Callable[[int], bool], timeout: float = GRACE) -> None:
    """Wait until the version another writer is committing is complete (or ``timeout`` passes)."""
    number = other.get('version')
    deadline = time.time() + timeout
    while isinstance(number, int) and time.time() < deadline and not complete(number):
        time.sleep(0.2)
