"""What is in production at a push destination, read from the destination's own files: its versions,
what each holds, the model in production, and the history.

**The destination is the truth.** A destination holds one directory per version,
``<destination>/<version>/`` (increasing integers, the numbering TF Serving's version policies use).
A version holds the SavedModel at its root (``saved_model.pb``, ``variables/``, ``assets/``: the
directory TF Serving and ``tf.saved_model.load`` take), the ONNX model beside it (``model.onnx``)
and its push record ``sluice_push.json``. Versions pushed before this layout hold the SavedModel
under ``Format-Serving/`` and the ONNX model under ``Format-ONNX/``; they are read as they are.
The model in production there is the highest-numbered COMPLETE version: its push record is present,
names this version of this destination, and its files match the content fingerprint in the record;
or it has no record of its own but holds a SavedModel (pushed by hand or by another tool, or a
version directory copied by hand to a new number, whose record names the version it was copied
from), whose fingerprint is then computed from its files. A higher version that is incomplete or
corrupt is skipped, and said so, with a warning: a server serving the highest version (TF Serving's
default policy) would still try to load it. The content fingerprint is a sha256 over the relative
paths and bytes of the version's files (without the record), so a model is recognised across
metadata stores; a Model artifact's fingerprint is that of the version a push makes of it.

Every push, rollback and promotion is appended to ``<destination>/.sluice-history.jsonl``
(``sluice.components.production.changes`` writes it); ``history`` adds the present versions the log
misses. Nothing here writes to the destination.

A destination may be an object store URL (``s3://bucket/prefix``, ``gs://...``): the same rules are read from its
objects (``sluice.components.production.objectstore`` says how: a version claimed by a push but
without its record is incomplete; the fingerprint comes from the listing's ETags; the history is one
object per entry).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.metadata import storage
from sluice.components.production import objectstore

PUSH_RECORD = 'sluice_push.json'
HISTORY_FILE = '.sluice-history.jsonl'
SERVING_DIR = 'Format-Serving'
ONNX_DIR = 'Format-ONNX'
ONNX_FILE = 'model.onnx'
SAMPLES_FILE = 'serving_samples.json'  # beside model.onnx: a request and the answers the export got
ONNX_FILES = (ONNX_FILE, SAMPLES_FILE)  # what an OnnxModel adds to a pushed version, beside the SavedModel
PUSHED_PARTS = (SERVING_DIR, ONNX_DIR)  # a Model artifact's directories; a push puts their files at the version's root
RECORD_FORMAT = 1


# -- content fingerprints ----------------------------------------------------------------------------
def _files_under(top: str, root: str) -> list[tuple[str, str]]:
    """(path relative to ``top``, absolute path) of the files under ``top``, leaving out a push record
    and hidden entries at ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not (dirpath == root and d.startswith('.'))]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if dirpath == root and (name == PUSH_RECORD or name.startswith('.')):
                continue
            found.append((os.path.relpath(path, top).replace(os.sep, '/'), path))
    return found


def content_fingerprint(root: str, parts: tuple[str, ...] | None = None) -> str:
    """sha256 over the relative paths and bytes of the files under ``root`` (only under ``parts``
    when given), leaving out a push record at the root: the identity of a model's content."""
    tops = [os.path.join(root, p) for p in parts] if parts is not None else [root]
    return _fingerprint([(os.path.relpath(path, root).replace(os.sep, '/'), path)
                         for top in tops for _, path in _files_under(top, root)])


def _fingerprint(files: list[tuple[str, str]]) -> str:
    """sha256 over (relative path, bytes) of ``files``, in path order."""
    # The Evaluator's and the Pusher's drivers both read the version in production in one run: hash its
    # bytes once per process, again whenever a file's stat changes (files changed within the clocks'
    # resolution are not memoised, as in sluice.components.fingerprint).
    stats = tuple((rel, path, os.stat(path)) for rel, path in sorted(files))
    memo_key = tuple((rel, os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino) for rel, path, st in stats)
    if memo_key in _digests:
        return _digests[memo_key]
    digest = hashlib.sha256()
    for rel, path, st in stats:
        digest.update(f'{rel}\0{st.st_size}\0'.encode())
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    result = 'sha256:' + digest.hexdigest()
    if all(time.time_ns() - st.st_mtime_ns > _RACY_NS for _, _, st in stats):
        _digests[memo_key] = result
    return result


_digests: dict[tuple, str] = {}
_RACY_NS = 2_000_000_000


def pushed_files(model_uri: str, onnx_uri: str | None = None) -> list[tuple[str, str]]:
    """What a push makes of a Model artifact: (path in the version, path in the model) for each file,
    its ``Format-Serving/`` SavedModel at the version's root and, beside it, the files of its ONNX copy:
    those of the OnnxModel at ``onnx_uri`` (the OnnxExporter's), or of a ``Format-ONNX/`` inside the
    Model (Models trained before the export was a node of its own)."""
    parts = (SERVING_DIR,) if onnx_uri else PUSHED_PARTS  # the OnnxModel is the ONNX copy when there is one
    tops = [(os.path.join(model_uri, part), model_uri, part) for part in parts]
    if onnx_uri:
        tops.append((onnx_uri, onnx_uri, 'the OnnxModel'))
    files, seen = [], {}
    for top, root, part in tops:
        for rel, path in _files_under(top, root):
            if rel in seen:
                raise ValueError(f'{model_uri}: {part}/{rel} and {seen[rel]}/{rel} would both be {rel} in a pushed '
                                 'version; rename one of them.')
            seen[rel] = part
            files.append((rel, path))
    return files


def model_fingerprint(model_uri: str, onnx_uri: str | None = None) -> str:
    """The content fingerprint a Model's files (and its OnnxModel's) will have once pushed (see
    ``pushed_files``); a Model in an object store is read from its local copy."""
    return _fingerprint(pushed_files(storage.local_copy(model_uri), onnx_uri and storage.local_copy(onnx_uri)))


def has_saved_model(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, 'saved_model.pb'))
            or os.path.isfile(os.path.join(path, SERVING_DIR, 'saved_model.pb')))


def serving_path(path: str) -> str:
    """The SavedModel of a Model artifact or a pushed version: ``Format-Serving/`` if there is one (a
    Model artifact, or a version pushed in the earlier layout), else the directory itself."""
    serving = os.path.join(path, SERVING_DIR)
    return serving if os.path.isdir(serving) else path


def onnx_path(path: str) -> str | None:
    """The ONNX model of a Model artifact or a pushed version (``model.onnx`` beside the SavedModel,
    or under ``Format-ONNX/``), or None if it has none."""
    for candidate in (os.path.join(path, ONNX_FILE), os.path.join(path, ONNX_DIR, ONNX_FILE)):
        if os.path.isfile(candidate):
            return candidate
    return None


def pushed_directory(pushed: Any) -> str:
    """The version directory a PushedModel artifact was pushed to ('' if it was not pushed): its
    ``pushed_destination`` (as in TFX), or, for one recorded before that held the destination itself,
    that destination joined with ``pushed_version``."""
    if not pushed.get('pushed'):
        return ''
    if pushed.get('push_destination'):
        return pushed.get('pushed_destination') or ''
    return os.path.join(pushed.get('pushed_destination') or '', str(pushed.get('pushed_version') or ''))


def push_destination(pushed: Any) -> str:
    """The destination (the directory holding the versions) a PushedModel artifact was pushed to."""
    return pushed.get('push_destination') or pushed.get('pushed_destination') or ''


def short(fingerprint: str | None) -> str:
    return fingerprint[:19] if fingerprint else '-'  # 'sha256:' (or 's3etag:') + 12 hex digits


def location(destination: str) -> str:
    """How a destination is named everywhere: its absolute path, or its URL without a trailing slash."""
    return storage.normalize(destination)


def counted(rel: str) -> bool:
    """Whether a file of a version counts in its content (not its push record, nor hidden entries at
    its root such as a claim)."""
    if '/' in rel:
        return not rel.startswith('.')  # not under a hidden directory at the root
    return not (rel == PUSH_RECORD or rel.startswith('.'))


def stored_fingerprint(uri: str) -> str:
    """The content fingerprint of a version's files as they are now, local or on an object store."""
    if storage.is_remote(uri):
        return objectstore.fingerprint({rel: o for rel, o in objectstore.stored_files(uri).items() if counted(rel)})
    return content_fingerprint(uri)


# -- what a destination holds ----------------------------------------------------------------------
@dataclass
class Version:
    """One ``<destination>/<number>/`` directory and what it holds."""
    destination: str
    number: int
    record: dict | None  # its push record, None if it has none of its own (pushed by hand, another tool, a copy)
    fingerprint: str | None  # the content fingerprint of its files
    problem: str = ''  # why it is incomplete ('' when complete)
    foreign: dict | None = None  # a push record found in it that names another version: it was copied here
    stored: dict | None = None  # on an object store: its objects (relative key -> size, etag, modified)

    @property
    def path(self) -> str:
        return storage.join(self.destination, str(self.number))

    @property
    def complete(self) -> bool:
        return not self.problem

    @property
    def copy_of(self) -> dict | None:
        """The version this one is an exact copy of (its files match the copied record), or None."""
        if self.foreign and self.fingerprint and self.fingerprint == self.foreign.get('fingerprint'):
            return {'version': self.foreign.get('version'), 'fingerprint': self.fingerprint,
                    'destination': self.foreign.get('destination') or self.destination}
        return None

    @property
    def kind(self) -> str:
        if self.record is not None:
            return self.record.get('kind') or 'hand-pushed'
        return 'copied' if self.copy_of else 'hand-pushed'

    @property
    def origin(self) -> dict:
        """Which model this is (store, artifact, pipeline, run): from its record, or from the record of
        the version it is an exact copy of; empty when unknown."""
        if self.record is not None:
            return self.record.get('model') or {}
        return ((self.foreign or {}).get('model') or {}) if self.copy_of else {}

    def copied_from(self) -> str:
        """'a copy of version X[ at DEST]' for a copy, a warning for a foreign record whose files differ, or ''."""
        if not self.foreign:
            return ''
        where = self.foreign.get('destination')
        at = f' at {where}' if where and location(str(where)) != self.destination else ''
        if self.copy_of:
            return f"a copy of version {self.foreign.get('version')}{at}"
        return (f"holds the push record of version {self.foreign.get('version')}{at}, but not its files: "
                'not taken as its record')

    def facts(self) -> dict:
        """What is known of this version, in the shape of a push record (its own record if it has one)."""
        if self.record is not None:
            return self.record
        facts: dict[str, Any] = {'kind': self.kind, 'version': self.number, 'fingerprint': self.fingerprint,
                                 'model': self.origin or None}
        if self.copy_of:
            facts['copy_of'] = self.copy_of
        return facts

    def ref(self) -> dict:
        return {'version': self.number, 'fingerprint': self.fingerprint}

    def describe(self) -> str:
        return describe_ref(self.ref())


def describe_ref(ref: dict | None) -> str:
    if not ref or ref.get('version') in (None, ''):
        return 'no model'
    return f"version {ref['version']} ({short(ref.get('fingerprint'))})"


def versions(destination: str) -> list[int]:
    """Version directories in the destination, oldest first (complete or not)."""
    if storage.is_remote(destination):
        return objectstore.version_numbers(destination)
    if not os.path.isdir(destination):
        return []
    return sorted(int(d) for d in os.listdir(destination)
                  if d.isdigit() and os.path.isdir(os.path.join(destination, d)))


def _names_this_version(record: dict, destination: str, number: int) -> bool:
    """Whether a push record is the record of ``<destination>/<number>/`` (not one copied there from
    another version or another destination)."""
    if str(record.get('version', '')) != str(number):
        return False
    where = record.get('destination')
    if storage.is_remote(destination) or (where and storage.is_remote(str(where))):
        return not where or location(str(where)) == location(destination)
    return not where or os.path.realpath(str(where)) == os.path.realpath(destination)


def inspect_version(destination: str, number: int | str) -> Version | None:
    """What ``<destination>/<number>/`` holds, or None if there is no such directory."""
    if storage.is_remote(destination):
        return _inspect_stored(location(destination), int(number))
    destination = os.path.abspath(destination)
    path = os.path.join(destination, str(int(number)))
    if not os.path.isdir(path):
        return None
    version = Version(destination, int(number), None, None)
    record_path = os.path.join(path, PUSH_RECORD)
    if os.path.isfile(record_path):
        try:
            with open(record_path) as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            version.problem = f'its push record {PUSH_RECORD} is unreadable: {e}'
            return version
        return _judge(version, record, lambda: content_fingerprint(path), lambda: has_saved_model(path))
    if not has_saved_model(path):
        version.problem = f'no push record ({PUSH_RECORD}) and no SavedModel (saved_model.pb)'
        return version
    version.fingerprint = content_fingerprint(path)  # pushed by hand or by another tool
    return version


def _inspect_stored(destination: str, number: int) -> Version | None:
    """``inspect_version`` on an object store: one listing (the fingerprint comes from its ETags), and
    the push record read if there is one. A version claimed by a push but without its record is a push
    in progress or one cut off: incomplete, whatever files it holds."""
    version = Version(destination, number, None, None)
    stored = objectstore.stored_files(version.path)
    if not stored:
        return None
    version.stored = stored
    files = {rel: o for rel, o in stored.items() if counted(rel)}
    saved_model = 'saved_model.pb' in files or f'{SERVING_DIR}/saved_model.pb' in files
    if PUSH_RECORD in stored:
        try:
            record = objectstore.read_json(storage.join(version.path, PUSH_RECORD))
        except ValueError as e:
            version.problem = f'its push record {PUSH_RECORD} is unreadable: {e}'
            return version
        if record is not None:
            return _judge(version, record, lambda: objectstore.fingerprint(files), lambda: saved_model)
    if objectstore.CLAIM in stored:
        claimed = iso_time(stored[objectstore.CLAIM]['modified'])
        version.problem = (f'no push record ({PUSH_RECORD}): claimed by a push at {claimed} that has not '
                           'finished (still uploading, or cut off)')
        return version
    if not saved_model:
        version.problem = f'no push record ({PUSH_RECORD}) and no SavedModel (saved_model.pb)'
        return version
    version.fingerprint = objectstore.fingerprint(files)  # uploaded by hand or by another tool
    return version


def _judge(version: Version, record: Any, fingerprint: Any, saved_model: Any) -> Version:
    """A version with a push record: complete if the record is its own and its files match it."""
    destination, number = version.destination, version.number
    if not isinstance(record, dict) or not record.get('fingerprint'):
        version.problem = f'its push record {PUSH_RECORD} is unreadable: it names no fingerprint'
        return version
    version.fingerprint = fingerprint()
    if not _names_this_version(record, destination, int(number)):
        # Copied here by hand (cp -r DEST/5 DEST/7) or from another destination: the record is the
        # other version's, so this directory is judged like one made by hand.
        version.foreign = record
        if not saved_model():
            version.problem = (f"no SavedModel (saved_model.pb), and its push record is version "
                               f"{record.get('version')}'s, not its own")
        return version
    version.record = record
    if version.fingerprint != record['fingerprint']:
        version.problem = (f'its files do not match the fingerprint in its push record (changed, added or '
                           f'removed since it was pushed: {short(version.fingerprint)} instead of '
                           f"{short(record['fingerprint'])})")
    return version


def complete_below(destination: str, number: int) -> Version | None:
    """The highest complete version below ``number``: the one in production before ``number`` appeared
    (for a version without a record of its own, the only way to tell)."""
    for lower in reversed(versions(destination)):
        if lower < number:
            version = inspect_version(destination, lower)
            if version is not None and version.complete:
                return version
    return None


@dataclass
class Production:
    """What is in production at a destination: the highest complete version, and the incomplete
    versions above it that were skipped."""
    destination: str
    current: Version | None
    skipped: list[Version] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per skipped version. The highest one also warns that a server serving the highest
        version (TF Serving's default policy) would not skip it as Sluice does."""
        now = (f'Sluice measures against {self.current.describe()}' if self.current else
               'Sluice sees nothing in production (no complete version)')
        notes = []
        for i, v in enumerate(self.skipped):
            if i == 0:
                notes.append(f'version {v.number} at {self.destination} is incomplete ({v.problem}): {now}; note '
                             'that a server serving the highest version (TF Serving\'s default policy) would try to '
                             f'load version {v.number}: fix or remove it')
            else:
                notes.append(f'version {v.number} at {self.destination} is incomplete too ({v.problem})')
        return notes

    def describe(self) -> str:
        return self.current.describe() if self.current else 'empty (no complete version)'


def production(destination: str) -> Production:
    """The model in production at ``destination``: the highest-numbered complete version."""
    destination = location(destination)
    numbers = versions(destination)
    found = Production(destination, None, numbers=numbers)
    for number in reversed(numbers):
        version = inspect_version(destination, number)
        if version is None:  # removed meanwhile
            continue
        if version.complete:
            found.current = version
            return found
        found.skipped.append(version)
    return found


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of an appended log, one per line, oldest first (a line cut off by a crash, or
    not an object, is left out)."""
    entries = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut off by a crash
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
    return entries


def read_history(destination: str) -> list[dict]:
    """Every push, rollback and promotion appended to the destination's history, oldest first (on an
    object store, one object per entry)."""
    if storage.is_remote(destination):
        return objectstore.history_entries(destination)
    return read_jsonl(os.path.join(destination, HISTORY_FILE))


def unlogged_entry(version: Version) -> dict:
    """The history entry of a present version that the log misses: its own record (a push killed just
    after its rename), or, for a version made or copied by hand, what its files say (kind
    ``hand-pushed`` or ``copied``, fingerprint, the version it is a copy of, and the version in
    production below it, which it replaced)."""
    if version.record is not None:
        return dict(version.record)
    before = complete_below(version.destination, version.number) if version.complete else None
    entry = {**version.facts(), 'format': RECORD_FORMAT, 'destination': version.destination,
             'previous': before.ref() if before is not None else None,
             'time': iso_time(version_time(version))}
    return {k: v for k, v in entry.items() if v is not None or k == 'previous'}


def history(destination: str) -> list[dict]:
    """The destination's history (the log, plus the present versions the log misses, e.g. a push
    killed just after its rename or a version made or copied by hand), oldest first; each entry says
    whether its version is still present."""
    destination = location(destination)
    entries = {}
    for entry in read_history(destination):
        if str(entry.get('version', '')).isdigit():
            entries[int(entry['version'])] = dict(entry)
    for number in versions(destination):
        version = inspect_version(destination, number)
        if version is None:
            continue
        entry = entries.get(number)
        if entry is None:
            entry = entries[number] = unlogged_entry(version)
        entry['version'] = number
        entry['present'] = True
        entry['problem'] = version.problem
    return [entries[n] for n in sorted(entries)]


def version_time(version: Version) -> float:
    """When a version was last written: its directory's mtime, or its newest object's."""
    if version.stored is not None:
        return max((o['modified'] for o in version.stored.values()), default=time.time())
    return os.path.getmtime(version.path)


def iso_time(ts: float) -> str:
    """A timestamp as push records and history entries write it (UTC, to the second)."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
