"""Pusher: puts a blessed model into production, atomically, and only over the baseline it beat.

    >>> pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
    ...                 push_destination='serving/penguin')

**The destination is the truth.** A destination holds one directory per version,
``<destination>/<version>/`` (increasing integers, the numbering TF Serving's version policies use).
The model in production there is the highest-numbered COMPLETE version: its push record
``sluice_push.json`` is present, names this version of this destination, and its files match the
content fingerprint in the record; or it has no record of its own but holds a SavedModel
(``saved_model.pb`` at its root or under ``Format-Serving/``: pushed by hand or by another tool, or a
version directory copied by hand to a new number, whose record names the version it was copied from),
whose fingerprint is then computed from its files. A higher version that is incomplete or corrupt is
skipped, and said so, with a warning: a server serving the highest version (TF Serving's default
policy) would still try to load it. The content fingerprint is a sha256 over the relative paths and
bytes of the version's files (without the record), so a model is recognised across metadata stores.

A push copies the model (``Format-Serving`` SavedModel and ``Format-ONNX``) into a staging directory
beside the destination, writes its record, then renames it to ``<destination>/<version>/``, so nothing
half-written is ever visible. Under a lock on the destination it happens only if the model in
production is still the version (and fingerprint) the blessing was measured against (compare-and-swap);
if the model in production is the candidate itself, the push is already done. Otherwise, or when the
blessing is NOT_BLESSED, nothing is pushed and the PushedModel records ``pushed=0`` and why. Every
push, rollback and promotion is also appended to ``<destination>/.sluice-history.jsonl``, so history
survives deleted versions; so is every complete version a writer finds there that the log misses
(made by hand, copied, or a push killed just after its rename). ``rollback`` and ``promote`` (behind
``sluice rollback`` and ``sluice promote``) change production the same way.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import getpass
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.metadata.artifact import Artifact, Model, ModelBlessing, PushedModel
from sluice.components.production.record import store_identity

PUSH_RECORD = 'sluice_push.json'
HISTORY_FILE = '.sluice-history.jsonl'
LOCK_FILE = '.sluice-push.lock'
SERVING_DIR = 'Format-Serving'
PUSHED_PARTS = (SERVING_DIR, 'Format-ONNX')
RECORD_FORMAT = 1


class PushError(RuntimeError):
    """The destination cannot be written; the message says where and how to fix it."""
    retryable = False


class ProductionError(RuntimeError):
    """A rollback or promotion was refused; the message says why and what to do."""
    retryable = False


# -- content fingerprints ----------------------------------------------------------------------------
def content_fingerprint(root: str, parts: tuple[str, ...] | None = None) -> str:
    """sha256 over the relative paths and bytes of the files under ``root`` (only under ``parts``
    when given), leaving out a push record at the root: the identity of a model's content."""
    files = []
    tops = [os.path.join(root, p) for p in parts] if parts is not None else [root]
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not (dirpath == root and d.startswith('.'))]
            for name in filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, '/')
                if rel != PUSH_RECORD and not (dirpath == root and name.startswith('.')):
                    files.append(rel)
    # The Evaluator's and the Pusher's drivers both read the version in production in one run: hash its
    # bytes once per process, again whenever a file's stat changes (files changed within the clocks'
    # resolution are not memoised, as in sluice.components.fingerprint).
    stats = tuple((rel, os.stat(os.path.join(root, rel))) for rel in sorted(files))
    memo_key = (os.path.abspath(root), tuple((rel, st.st_size, st.st_mtime_ns, st.st_ino) for rel, st in stats))
    if memo_key in _digests:
        return _digests[memo_key]
    digest = hashlib.sha256()
    for rel, st in stats:
        digest.update(f'{rel}\0{st.st_size}\0'.encode())
        with open(os.path.join(root, rel), 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    result = 'sha256:' + digest.hexdigest()
    if all(time.time_ns() - st.st_mtime_ns > _RACY_NS for _, st in stats):
        _digests[memo_key] = result
    return result


_digests: dict[tuple, str] = {}
_RACY_NS = 2_000_000_000


def model_fingerprint(model_uri: str) -> str:
    """The content fingerprint a Model's files will have once pushed (its Format-Serving and Format-ONNX)."""
    return content_fingerprint(model_uri, PUSHED_PARTS)


def has_saved_model(path: str) -> bool:
    return (os.path.isfile(os.path.join(path, 'saved_model.pb'))
            or os.path.isfile(os.path.join(path, SERVING_DIR, 'saved_model.pb')))


def serving_path(path: str) -> str:
    """The SavedModel of a Model artifact or a pushed version: ``Format-Serving/`` if there is one, else
    the directory itself (a SavedModel pushed by hand or by another tool)."""
    serving = os.path.join(path, SERVING_DIR)
    return serving if os.path.isdir(serving) else path


def short(fingerprint: str | None) -> str:
    return fingerprint[:19] if fingerprint else '-'  # 'sha256:' + 12 hex digits


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

    @property
    def path(self) -> str:
        return os.path.join(self.destination, str(self.number))

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
        at = f' at {where}' if where and os.path.abspath(where) != self.destination else ''
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
    return not where or os.path.realpath(str(where)) == os.path.realpath(destination)


def inspect_version(destination: str, number: int | str) -> Version | None:
    """What ``<destination>/<number>/`` holds, or None if there is no such directory."""
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
            if not isinstance(record, dict) or not record.get('fingerprint'):
                raise ValueError('it names no fingerprint')
        except (OSError, ValueError) as e:
            version.problem = f'its push record {PUSH_RECORD} is unreadable: {e}'
            return version
        version.fingerprint = content_fingerprint(path)
        if not _names_this_version(record, destination, int(number)):
            # Copied here by hand (cp -r DEST/5 DEST/7) or from another destination: the record is the
            # other version's, so this directory is judged like one made by hand.
            version.foreign = record
            if not has_saved_model(path):
                version.problem = (f"no SavedModel (saved_model.pb), and its push record is version "
                                   f"{record.get('version')}'s, not its own")
            return version
        version.record = record
        if version.fingerprint != record['fingerprint']:
            version.problem = (f'its files do not match the fingerprint in its push record (changed, added or '
                               f'removed since it was pushed: {short(version.fingerprint)} instead of '
                               f"{short(record['fingerprint'])})")
        return version
    if not has_saved_model(path):
        version.problem = f'no push record ({PUSH_RECORD}) and no SavedModel (saved_model.pb)'
        return version
    version.fingerprint = content_fingerprint(path)  # pushed by hand or by another tool
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
    destination = os.path.abspath(destination)
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


def read_history(destination: str) -> list[dict]:
    """Every push, rollback and promotion appended to the destination's history, oldest first."""
    path = os.path.join(destination, HISTORY_FILE)
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
             'time': _iso(os.path.getmtime(version.path))}
    return {k: v for k, v in entry.items() if v is not None or k == 'previous'}


def history(destination: str) -> list[dict]:
    """The destination's history (the log, plus the present versions the log misses, e.g. a push
    killed just after its rename or a version made or copied by hand), oldest first; each entry says
    whether its version is still present."""
    destination = os.path.abspath(destination)
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


# -- changing a destination (under its lock) --------------------------------------------------------
@contextmanager
def destination_lock(destination: str) -> Iterator[str]:
    """Hold the destination's lock (one writer at a time); yields its absolute path. Staging
    directories left behind by a killed writer are removed first."""
    destination = os.path.abspath(destination)
    try:
        os.makedirs(destination, exist_ok=True)
        lock = open(os.path.join(destination, LOCK_FILE), 'a')
    except OSError as e:
        raise PushError(f'Cannot write to the push destination {destination}: {e.strerror}. Choose a '
                        'writable push_destination or fix its permissions.') from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in os.listdir(destination):  # left by a writer that was killed; we hold the lock
            if name.startswith('.staging-'):
                shutil.rmtree(os.path.join(destination, name), ignore_errors=True)
        yield destination


def next_version(destination: str) -> int:
    """A version number above every version the destination holds or ever held."""
    seen = versions(destination) + [int(e['version']) for e in read_history(destination)
                                           if str(e.get('version', '')).isdigit()]
    return max([int(time.time())] + [v + 1 for v in seen])


def _append_history(destination: str, entries: list[dict]) -> None:
    try:
        with open(os.path.join(destination, HISTORY_FILE), 'a') as f:
            for entry in entries:
                f.write(json.dumps(entry, sort_keys=True) + '\n')
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # the versions are in place; the log is a convenience
        print(f'warning: could not append to {os.path.join(destination, HISTORY_FILE)}: {e.strerror}', flush=True)


def log_unlogged_versions(destination: str) -> list[dict]:
    """Append to the history the complete versions present at the destination that it misses (made or
    copied by hand, or a push killed just after its rename), so they are remembered once deleted.
    The caller holds ``destination_lock``. Returns the entries appended."""
    logged = {int(e['version']) for e in read_history(destination) if str(e.get('version', '')).isdigit()}
    found = []
    for number in versions(destination):
        if number in logged:
            continue
        version = inspect_version(destination, number)
        if version is not None and version.complete:
            found.append({**unlogged_entry(version), 'first_seen': _iso(time.time())})
    if found:
        _append_history(destination, found)
    return found


def write_version(destination: str, fill: Callable[[str], None], record: dict) -> Version:
    """Make a new version: ``fill(staging_dir)`` writes its files, then the record (with the version
    number and the staged files' fingerprint) is added and the directory renamed into place, and the
    record appended to the history (after any present version the history misses). The caller holds
    ``destination_lock``."""
    log_unlogged_versions(destination)
    number = next_version(destination)
    staging = os.path.join(destination, f'.staging-{uuid.uuid4().hex}')
    target = os.path.join(destination, str(number))
    try:
        os.makedirs(staging)
        fill(staging)
        record = {**record, 'version': number, 'fingerprint': content_fingerprint(staging)}
        _write_json(os.path.join(staging, PUSH_RECORD), record)
        os.rename(staging, target)  # atomic on one filesystem
        _fsync_dir(destination)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise PushError(f'Cannot write to the push destination {destination}: {e.strerror}.') from None
        raise
    _append_history(destination, [record])  # the version is in place and carries its record
    return Version(destination, number, record, record['fingerprint'])


def new_record(kind: str, model: dict, previous: Version | None, **extra: Any) -> dict:
    """A push record: which model (identified across stores), what it replaced, who and when."""
    return {'format': RECORD_FORMAT, 'kind': kind, 'model': model,
            'previous': previous.ref() if previous is not None else None,
            'time': _iso(time.time()), 'operator': operator(), **extra}


def operator() -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return {'user': user, 'host': socket.gethostname(), 'pid': os.getpid()}


def copy_model(model_uri: str) -> Callable[[str], None]:
    """What to stage for a Model artifact: its Format-Serving SavedModel and Format-ONNX."""
    def fill(staging: str) -> None:
        for part in PUSHED_PARTS:
            source = os.path.join(model_uri, part)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(staging, part))
    return fill


def copy_version(path: str) -> Callable[[str], None]:
    """What to stage for a copy of a pushed version: its files, without its record."""
    def fill(staging: str) -> None:
        for name in os.listdir(path):
            if name == PUSH_RECORD:
                continue
            source = os.path.join(path, name)
            (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, os.path.join(staging, name))
    return fill


def default_rollback_target(current: Version, destination: str) -> int | None:
    """The version that was in production before the current one took over; for a rollback, the
    version before its target took over (so rollback; rollback goes two steps back). For a version
    without a record of its own (made or copied by hand), the highest complete version below it; if
    that one holds the same model (a copy of the model in production), the version before it."""
    record = current.record
    if record is None:
        below = complete_below(destination, current.number)
        if below is None:
            return None
        if below.fingerprint == current.fingerprint:  # going back to it would change nothing
            return default_rollback_target(below, destination)
        return below.number
    if record.get('kind') == 'rollback':
        before = (record.get('target') or {}).get('previous')
        return int(before['version']) if before else None
    if record.get('previous'):
        return int(record['previous']['version'])
    return None  # the first model pushed there


def _rollback_choices(destination: str, current: Version) -> str:
    """The complete versions a rollback could name instead (other content than the current one)."""
    found = []
    for number in versions(destination):
        if number != current.number:
            version = inspect_version(destination, number)
            if version is not None and version.complete and version.fingerprint != current.fingerprint:
                found.append(number)
    if not found:
        return 'No other complete version with another model is there to roll back to.'
    return f'Complete versions with another model: {_list(found)} (name one with --to VERSION).'


def _no_earlier_version(destination: str, current: Version) -> str:
    lower = [n for n in versions(destination) if n < current.number]
    if current.record is None and lower:  # made or copied by hand, above versions that are all incomplete
        problems = '; '.join(f'version {n}: {v.problem}' for n in reversed(lower)
                             if (v := inspect_version(destination, n)) is not None)
        return (f'{current.describe()} at {destination} has no complete version below it to roll back to (every '
                f'older version is incomplete: {problems}). Fix one, or promote a model (sluice promote).')
    return (f'{current.describe()} at {destination} is the first model in production there: there is no earlier '
            f'version to roll back to. Name one with --to VERSION (see sluice production {destination}).')


def rollback(destination: str, to: int | None = None, reason: str = '') -> tuple[Version, Version, Version | None]:
    """Make an earlier version current again: copy it into a new, higher version (so TF Serving,
    which serves the highest version, follows). Returns (new version, target, version replaced)."""
    destination = os.path.abspath(destination)
    if not os.path.isdir(destination):
        raise ProductionError(f'No push destination at {destination}: nothing to roll back.')
    with destination_lock(destination):
        now = production(destination)
        current = now.current
        if current is None:
            present = versions(destination)
            what = ('it holds no version' if not present else f'version {present[0]} is incomplete'
                    if len(present) == 1 else f'versions {_list(present)} are all incomplete')
            raise ProductionError(f'Nothing is in production at {destination} ({what}); nothing to roll back. Fix or '
                                  'remove the incomplete versions, or promote a model (sluice promote).'
                                  + ''.join(f' Note: {n}.' for n in now.notes()))
        label = f'version {to}'
        if to is None:
            to = default_rollback_target(current, destination)
            if to is None:
                raise ProductionError(_no_earlier_version(destination, current))
            label = f'version {to} (in production before version {current.number} took over)'
        target = inspect_version(destination, to)
        if target is None:
            raise ProductionError(f'{label} is not at {destination} (deleted?); it cannot be made current again. '
                                  + _rollback_choices(destination, current))
        if not target.complete:
            raise ProductionError(f'{label} at {destination} is incomplete ({target.problem}); it cannot be made '
                                  'current again. ' + _rollback_choices(destination, current))
        if target.fingerprint == current.fingerprint:
            same = '' if target.number == current.number else f' (version {current.number} holds the same model)'
            raise ProductionError(f'version {to} is already in production at {destination}{same}; nothing to do.')
        source = target.facts()
        if target.record is not None:
            before = source.get('previous')
        else:  # made or copied by hand: what was in production before it, as a rollback from it would find
            number = default_rollback_target(target, destination)
            found = inspect_version(destination, number) if number is not None else None
            before = found.ref() if found is not None else None
        record = new_record('rollback', source.get('model') or {}, current,
                            target={**target.ref(), 'kind': target.kind, 'previous': before},
                            baseline=source.get('baseline'), blessing=source.get('blessing'),
                            metrics=source.get('metrics'), reason=reason or None, destination=destination)
        new = write_version(destination, copy_version(target.path), record)
    return new, target, current


def promoted_content(model_uri: str) -> tuple[str, Callable[[str], None]]:
    """What a promotion pushes of a model directory, and its content fingerprint: ``Format-Serving``
    (and ``Format-ONNX``) as a push does; or, for a SavedModel at the directory's root (a model made by
    hand, a Model artifact standing for a version made by hand), its files as they are, so the
    Evaluator and a server read the new version where they read the original."""
    if os.path.isfile(os.path.join(model_uri, SERVING_DIR, 'saved_model.pb')):
        return model_fingerprint(model_uri), copy_model(model_uri)
    if os.path.isfile(os.path.join(model_uri, 'saved_model.pb')):
        return content_fingerprint(model_uri), copy_version(model_uri)
    raise ProductionError(f'{model_uri} holds no SavedModel (saved_model.pb at its root or under {SERVING_DIR}/): '
                          'only a Model with a SavedModel can be promoted.')


def promote(destination: str, model_uri: str, model: dict, reason: str) -> tuple[Version, Version | None]:
    """Push a model without a blessing, as a recorded, deliberate decision with a reason.
    Returns (new version, version replaced)."""
    if not (reason or '').strip():
        raise ProductionError('a promotion needs a reason (--reason TEXT): it pushes a model without a blessing, '
                              'and the reason is kept in its push record.')
    destination = os.path.abspath(destination)
    fingerprint, fill = promoted_content(model_uri)
    with destination_lock(destination):
        now = production(destination)
        current = now.current
        if current is not None and current.fingerprint == fingerprint:
            raise ProductionError(f'this model is already in production at {destination} as '
                                  f'{current.describe()}; nothing to do.')
        for note in now.notes():
            print(f'promote: {note}', flush=True)
        record = new_record('promote', {**model, 'uri': model_uri}, current, reason=reason.strip(),
                            baseline=None, blessing=None, metrics=None, destination=destination)
        new = write_version(destination, fill, record)
    return new, current


def _list(numbers: list[int]) -> str:
    return ', '.join(str(n) for n in numbers) or 'none'


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _write_json(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _blessing_summary(blessing: ModelBlessing) -> tuple[dict, dict | None]:
    """The verdict and reasons of a blessing, and the overall metrics of its evaluation (reasons.json)."""
    reasons: dict = {}
    path = os.path.join(blessing.uri, 'reasons.json')
    if os.path.isfile(path):
        with open(path) as f:
            reasons = json.load(f)
    summary = {'artifact_id': blessing.id, 'verdict': 'BLESSED' if blessing.get('blessed') else 'NOT_BLESSED',
               'checks': [{k: c.get(k) for k in ('metric', 'slice', 'passed', 'reason')}
                          for c in reasons.get('checks', [])],
               'policy': reasons.get('policy') or ''}
    return summary, reasons.get('overall_metrics')


# -- the component ---------------------------------------------------------------------------------
class PusherDriver(Driver):
    """Records who pushes (store identity, pipeline, run) on the PushedModel, and re-checks the
    destination before reusing a cached push: a cached ``pushed=1`` whose version is gone or no
    longer holds the pushed files is not reused, so the Pusher runs again and the compare-and-swap
    decides."""

    def output_artifacts(self, execution_id: int, key: str) -> dict[str, Artifact]:
        outputs = super().output_artifacts(execution_id, key)
        pushed = outputs['pushed_model']
        pushed.set('store_id', store_identity(self.store))
        pushed.set('pipeline', self.pipeline.name)
        pushed.set('run_id', self.pipeline.run_id)
        return outputs

    def cached_outputs(self, key: str) -> dict[str, Artifact] | None:
        outputs = super().cached_outputs(key)
        if outputs is None:
            return None
        pushed = outputs['pushed_model']
        if pushed.get('pushed') == 1:
            version = inspect_version(pushed.get('pushed_destination') or '', pushed.get('pushed_version') or 0) \
                if str(pushed.get('pushed_version') or '').isdigit() else None
            expected = pushed.get('pushed_fingerprint')
            if version is None or not version.complete or (expected and version.fingerprint != expected):
                where = os.path.join(pushed.get('pushed_destination') or '', pushed.get('pushed_version') or '')
                why = 'is gone' if version is None else 'no longer holds the pushed model'
                print(f'{self.component.id}: the cached push ({pushed!r}) says pushed, but {where} {why}; '
                      'pushing again', flush=True)
                return None
        return outputs


class PusherExecutor(Executor):
    def run(self, *, model: Model, blessing: ModelBlessing | None, pushed_model: PushedModel,
            push_destination: str) -> None:
        destination = os.path.abspath(push_destination)
        pushed_model.set('pushed_destination', destination)
        if blessing is None:  # TFX's Pusher without model_blessing: every model is pushed, and that is said
            pushed_model.set('gated', 0)
            return self._push(model, pushed_model, destination)
        if blessing.get('current_model_id') != model.id:
            raise ValueError(f'{blessing!r} blesses model #{blessing.get("current_model_id")}, not {model!r}; wire '
                             'the same Trainer output into ModelValidator and Pusher.')
        measured_at = blessing.get('push_destination') or ''
        if measured_at and os.path.abspath(measured_at) != destination:
            raise ValueError(f'{blessing!r} was measured against the model in production at {measured_at}, but this '
                             f'Pusher pushes to {destination}; give the Evaluator push_destination={destination!r}.')
        if not blessing.get('blessed'):
            return self._not_pushed(pushed_model, 'the model is NOT_BLESSED (see the blessing\'s reasons.json); '
                                                  'the destination is unchanged')
        return self._push(model, pushed_model, destination, blessing, measured_at)

    def _push(self, model: Model, pushed_model: PushedModel, destination: str, blessing: ModelBlessing | None = None,
              measured_at: str = '') -> None:
        """Copy the model into a new version under the destination's lock. Gated (a blessing): only if
        production is still the version the blessing was measured against (compare-and-swap)."""
        if not os.path.isfile(os.path.join(model.uri, SERVING_DIR, 'saved_model.pb')):
            raise PushError(f'{model!r} holds no {SERVING_DIR}/saved_model.pb; there is nothing to push.')
        baseline = None
        if blessing is not None:
            measured_version = str(blessing.get('baseline_version') or '')
            if measured_version.isdigit():
                baseline = {'version': int(measured_version), 'fingerprint': blessing.get('baseline_fingerprint')}
        ungated = '' if blessing is not None else '; no blessing gated this push (the Pusher has no blessing input)'
        fingerprint = model_fingerprint(model.uri)
        with destination_lock(destination):
            now = production(destination)
            for note in now.notes():
                print(f'Pusher: {note}', flush=True)
            current = now.current
            if current is not None and current.fingerprint == fingerprint:
                # e.g. a push whose record in the store was cut off by a crash
                return self._pushed(pushed_model, model, current, f'already in production as version {current.number} '
                                                                  f'(pushed earlier; nothing copied){ungated}')
            if blessing is not None and (current.ref() if current else None) != baseline:
                return self._not_pushed(pushed_model, self._changed(baseline, now, measured_at))
            summary, metrics = _blessing_summary(blessing) if blessing is not None else (None, None)
            identity = {'store_id': pushed_model.get('store_id'), 'artifact_id': model.id,
                        'pipeline': pushed_model.get('pipeline'), 'run_id': pushed_model.get('run_id'),
                        'uri': model.uri}
            record = new_record('push', identity, current, baseline=baseline, blessing=summary, metrics=metrics,
                                destination=destination)
            version = write_version(destination, copy_model(model.uri), record)
        over = f'over {current.describe()}' if current else '(the first model at this destination)'
        return self._pushed(pushed_model, model, version, f'pushed as version {version.number} {over}{ungated}')

    @staticmethod
    def _changed(baseline: dict | None, now: Production, measured_at: str) -> str:
        current = now.current
        by = ''
        if current is not None:
            model = (current.record or {}).get('model') or {}
            by = {'rollback': f', a rollback to version {((current.record or {}).get("target") or {}).get("version")}',
                  'promote': f', promoted by hand ({(current.record or {}).get("reason")})',
                  'hand-pushed': ', pushed by hand or by another tool',
                  'copied': f', {current.copied_from()} made by hand'}.get(
                current.kind, f", pushed by pipeline {model.get('pipeline')} run {model.get('run_id')}"
                if model.get('pipeline') else '')
        notes = ''.join(f'; {n}' for n in now.notes())
        hint = ''
        if baseline is None and not measured_at:
            hint = (' (its evaluation names no push destination: give the Evaluator push_destination=... or put '
                    'Evaluator and Pusher in one Pipeline)')
        after = (f'run the pipeline again (a new run or sluice resume) to measure it against {current.describe()}'
                 if current is not None else 'run the pipeline again to measure it against an empty destination')
        return (f'the model in production changed since this model was evaluated (it was measured against '
                f'{describe_ref(baseline)}{hint}, production at {now.destination} is now {now.describe()}{by}{notes}); '
                f'{after}')

    @staticmethod
    def _pushed(pushed_model: PushedModel, model: Model, version: Version, reason: str) -> None:
        for part in os.listdir(version.path):  # the artifact keeps a copy of what was pushed
            src = os.path.join(version.path, part)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(pushed_model.uri, part))
        pushed_model.set('pushed', 1)
        pushed_model.set('pushed_version', str(version.number))
        pushed_model.set('pushed_fingerprint', version.fingerprint or '')
        pushed_model.set('reason', reason)
        print(f'Pusher: model #{model.id} {reason}: {version.path}', flush=True)

    @staticmethod
    def _not_pushed(pushed_model: PushedModel, reason: str) -> None:
        pushed_model.set('pushed', 0)
        pushed_model.set('pushed_version', '')
        pushed_model.set('reason', reason)
        with open(os.path.join(pushed_model.uri, 'NOT_PUSHED'), 'w') as f:
            f.write(reason + '\n')
        print(f'Pusher: not pushed: {reason}', flush=True)


class Pusher(Component):
    """Pushes a BLESSED model to ``push_destination/<version>/``, atomically and compare-and-swap.
    Without a ``blessing`` input (as TFX allows), every model is pushed; the PushedModel records
    ``gated=0`` and the run's output says that no blessing gated the push."""
    model = Input(Model)
    blessing = Input(ModelBlessing, optional=True)  # None: every model is pushed (TFX's Pusher without a blessing)
    pushed_model = Output(PushedModel)
    push_destination = Parameter(str, path=True)
    libraries = ()  # copies files: no library shapes its output
    executor = PusherExecutor
    driver = PusherDriver
