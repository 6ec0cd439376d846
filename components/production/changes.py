"""Changing what is in production at a push destination: a new version (a push, a rollback, a
promotion), written under the destination's lock.

A new version is staged in a directory beside the versions (its files, then its push record with the
version number and the staged files' content fingerprint), then renamed to ``<destination>/<version>/``,
so nothing half-written is ever visible; then its record is appended to the destination's history
(so history survives deleted versions), after any complete version present that the history misses
(made by hand, copied, or a push killed just after its rename). ``rollback`` and ``promote`` (behind
``sluice rollback`` and ``sluice promote``) copy a version or a model into a new, higher version this
way; the Pusher does too. What a destination holds is read with
``sluice.components.production.destination``.

Every change goes through ``change(destination, decide)``: read production, ``decide`` (a ``Write``,
or an outcome that writes nothing), write. On a local destination that happens under the lock. On an
object store (``s3://``, ``gs://``), with no lock and no rename, the version number is claimed with an exclusive
create, the files uploaded, the change made THE successor of the version it read in production with
another exclusive create (the compare-and-swap), and the push record written last as the commit
marker (``sluice.components.production.objectstore``). A writer that loses the compare-and-swap
removes what it uploaded, waits for the winner's commit and decides again on what production is
now: a gated push then finds production changed, as it would after waiting for the lock.
"""
from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sluice.metadata import storage
from sluice.components.production import objectstore
from sluice.components.production.destination import (
    HISTORY_FILE, PUSH_RECORD, PUSHED_PARTS, RECORD_FORMAT, SERVING_DIR, Production, Version, complete_below,
    content_fingerprint, counted, inspect_version, iso_time, location, model_fingerprint, production, pushed_files,
    read_history, unlogged_entry, versions)

LOCK_FILE = '.sluice-push.lock'


class PushError(RuntimeError):
    """The destination cannot be written; the message says where and how to fix it."""
    retryable = False


class ProductionError(RuntimeError):
    """A rollback or promotion was refused; the message says why and what to do."""
    retryable = False


# -- a new version, under the destination's lock ---------------------------------------------------
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
    if storage.is_remote(destination):
        try:
            objectstore.write_history(destination, entries)
        except storage.StorageError as e:  # the versions are in place; the history is a convenience
            print(f'warning: could not add to the history of {destination}: {e}', flush=True)
        return
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
            found.append({**unlogged_entry(version), 'first_seen': iso_time(time.time())})
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
            'time': iso_time(time.time()), 'operator': operator(), **extra}


def operator() -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return {'user': user, 'host': socket.gethostname(), 'pid': os.getpid()}


class Content:
    """What a new version holds. Called with a staging directory, it copies its files there (a local
    destination); ``files()`` lists them as (path in the version, local path or object URL), for an
    object store."""

    def __init__(self, fill: Callable[[str], None], files: Callable[[], list[tuple[str, str]]]) -> None:
        self.fill, self.files = fill, files

    def __call__(self, staging: str) -> None:
        self.fill(staging)


@dataclass
class Write:
    """``decide``'s answer when a change is to be written: the new version's content and record."""
    content: Content
    record: dict


def copy_model(model_uri: str, onnx_uri: str | None = None) -> Content:
    """What to stage for a Model artifact: its ``Format-Serving`` SavedModel at the version's root
    (where TF Serving and ``tf.saved_model.load`` look) and its ONNX copy beside it (the files of the
    OnnxModel at ``onnx_uri``, or the Model's own ``Format-ONNX``: see ``pushed_files``)."""
    def fill(staging: str) -> None:
        pushed_files(model_uri, onnx_uri)  # two files that would land on one path: a clear error, nothing copied
        for part in (SERVING_DIR,) if onnx_uri else PUSHED_PARTS:  # whole trees: empty directories come along
            source = os.path.join(model_uri, part)
            if os.path.isdir(source):
                shutil.copytree(source, staging, dirs_exist_ok=True)
        if onnx_uri:  # its files, not the hidden entries at its root (as pushed_files)
            shutil.copytree(onnx_uri, staging, dirs_exist_ok=True,
                            ignore=lambda d, names: [n for n in names if d == onnx_uri and n.startswith('.')])
    return Content(fill, lambda: pushed_files(model_uri, onnx_uri))


def copy_version(path: str) -> Content:
    """What to stage for a copy of a pushed version (a local directory, or a version on an object
    store copied inside the store): its files, without its record."""
    def fill(staging: str) -> None:
        for name in os.listdir(path):
            if name == PUSH_RECORD:
                continue
            source = os.path.join(path, name)
            (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, os.path.join(staging, name))

    def files() -> list[tuple[str, str]]:
        if storage.is_remote(path):
            return objectstore.version_sources(path, lambda rel: not counted(rel))
        found = []
        for dirpath, _, filenames in os.walk(path):
            for name in filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), path).replace(os.sep, '/')
                if counted(rel):
                    found.append((rel, os.path.join(dirpath, name)))
        return found
    return Content(fill, files)


# -- one change: read production, decide, write ----------------------------------------------------
def change(destination: str, decide: Callable[[Production], Any]) -> tuple[Production, Any]:
    """Read production, ``decide(now)``, and if it answers a ``Write``, write that version over
    ``now`` (compare-and-swap): returns (production as decided on, the new Version or ``decide``'s
    answer). Local: under the destination's lock. On an object store, see the module's docstring."""
    if storage.is_remote(destination):
        return _change_stored(location(destination), decide)
    with destination_lock(destination) as where:
        now = production(where)
        decision = decide(now)
        if isinstance(decision, Write):
            decision = write_version(where, decision.content, decision.record)
        return now, decision


ATTEMPTS = 5  # compare-and-swaps lost in a row (each to a change that committed) before giving up


def _change_stored(destination: str, decide: Callable[[Production], Any]) -> tuple[Production, Any]:
    def complete(number: int) -> bool:
        version = inspect_version(destination, number)
        return version is not None and version.complete

    for _ in range(ATTEMPTS):
        now = production(destination)
        decision = decide(now)
        if not isinstance(decision, Write):
            return now, decision
        log_unlogged_versions(destination)
        number, facts = _claim_next(destination, decision.record.get('kind') or '')
        target = storage.join(destination, str(number))
        try:
            objectstore.upload(target, decision.content.files())
            stored = {rel: o for rel, o in objectstore.stored_files(target).items() if counted(rel)}
            record = {**decision.record, 'version': number, 'fingerprint': objectstore.fingerprint(stored)}
            replaces = now.current.number if now.current is not None else None
            won, other = objectstore.take_successor(destination, replaces, {**facts, 'version': number}, complete)
            if won:  # the commit marker, last
                storage.put_object(storage.join(target, PUSH_RECORD),
                                   json.dumps(record, indent=2, sort_keys=True).encode())
        except BaseException:
            _remove_quietly(target)  # a claimed version without a record; readers skip it meanwhile
            raise
        if won:
            _append_history(destination, [record])
            return now, Version(destination, number, record, record['fingerprint'], stored=stored)
        _remove_quietly(target)
        objectstore.wait_for(other or {}, complete)
    raise PushError(f'Could not change production at {destination}: other writers changed it {ATTEMPTS} times in '
                    'a row while this change was being written. Try again.')


def _claim_next(destination: str, kind: str) -> tuple[int, dict]:
    """Claim the next version number (an exclusive create); a number another writer claimed first
    is left to it."""
    facts = {'claim': uuid.uuid4().hex, 'kind': kind, 'operator': operator(), 'time': iso_time(time.time())}
    for _ in range(100):
        number = next_version(destination)
        if objectstore.claim(destination, number, {**facts, 'version': number}):
            return number, facts
    raise PushError(f'Could not claim a version number at {destination}: 100 numbers in a row were taken '
                    'by other writers. Try again.')


def _remove_quietly(target: str) -> None:
    try:
        storage.remove_tree(target)
    except storage.StorageError as e:
        print(f'warning: could not remove the unfinished version {target} (readers skip it): {e}', flush=True)


# -- rollback and promotion ------------------------------------------------------------------------
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
    destination = location(destination)
    if _absent(destination):
        raise ProductionError(f'No push destination at {destination}: nothing to roll back.')
    chosen: dict[str, Version] = {}

    def decide(now: Production) -> Write:
        current, target = _rollback_target(destination, now, to)
        chosen['target'] = target
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
        return Write(copy_version(target.path), record)

    now, new = change(destination, decide)
    return new, chosen['target'], now.current


def _absent(destination: str) -> bool:
    if storage.is_remote(destination):
        return not storage.listdir(destination)
    return not os.path.isdir(destination)


def _rollback_target(destination: str, now: Production, to: int | None) -> tuple[Version, Version]:
    """(the version in production, the version to make current again), or ProductionError saying why not."""
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
    return current, target


def promoted_content(model_uri: str, remote: bool = False, onnx_uri: str | None = None) -> tuple[str, Content]:
    """What a promotion pushes of a model directory, and the content fingerprint it will have at a
    local destination (``remote``: at one on an object store): ``Format-Serving`` (and ``Format-ONNX``)
    as a push does, with the OnnxModel at ``onnx_uri`` as its ONNX copy when given; or, for a SavedModel at the directory's root (a model made by hand, a Model
    artifact standing for a version), its files as they are. A model on an object store is read from
    its local copy."""
    model_dir = storage.local_copy(model_uri)
    if os.path.isfile(os.path.join(model_dir, SERVING_DIR, 'saved_model.pb')):
        onnx_dir = storage.local_copy(onnx_uri) if onnx_uri else None
        content = copy_model(model_dir, onnx_dir)
        return (objectstore.expected_fingerprint(content.files()) if remote
                else model_fingerprint(model_dir, onnx_dir)), content
    if os.path.isfile(os.path.join(model_dir, 'saved_model.pb')):
        content = copy_version(model_dir)
        return (objectstore.expected_fingerprint(content.files()) if remote else content_fingerprint(model_dir)), content
    raise ProductionError(f'{model_uri} holds no SavedModel (saved_model.pb at its root or under {SERVING_DIR}/): '
                          'only a Model with a SavedModel can be promoted.')


def promote(destination: str, model_uri: str, model: dict, reason: str,
            onnx_uri: str | None = None) -> tuple[Version, Version | None]:
    """Push a model without a blessing, as a recorded, deliberate decision with a reason; its ONNX
    copy is the OnnxModel at ``onnx_uri`` when given. Returns (new version, version replaced)."""
    if not (reason or '').strip():
        raise ProductionError('a promotion needs a reason (--reason TEXT): it pushes a model without a blessing, '
                              'and the reason is kept in its push record.')
    destination = location(destination)
    fingerprint, content = promoted_content(model_uri, storage.is_remote(destination), onnx_uri)

    def decide(now: Production) -> Write:
        current = now.current
        if current is not None and current.fingerprint == fingerprint:
            raise ProductionError(f'this model is already in production at {destination} as '
                                  f'{current.describe()}; nothing to do.')
        for note in now.notes():
            print(f'promote: {note}', flush=True)
        record = new_record('promote', {**model, 'uri': model_uri}, current, reason=reason.strip(),
                            baseline=None, blessing=None, metrics=None, destination=destination)
        return Write(content, record)

    now, new = change(destination, decide)
    return new, now.current


def _list(numbers: list[int]) -> str:
    return ', '.join(str(n) for n in numbers) or 'none'


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
