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
from typing import Any, Callable, Iterator

from sluice.components.production.destination import (
    HISTORY_FILE, PUSH_RECORD, PUSHED_PARTS, RECORD_FORMAT, SERVING_DIR, Version, complete_below, content_fingerprint,
    inspect_version, iso_time, model_fingerprint, production, pushed_files, read_history, unlogged_entry, versions)

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


def copy_model(model_uri: str) -> Callable[[str], None]:
    """What to stage for a Model artifact: its ``Format-Serving`` SavedModel at the version's root
    (where TF Serving and ``tf.saved_model.load`` look) and its ``Format-ONNX`` files beside it."""
    def fill(staging: str) -> None:
        pushed_files(model_uri)  # two files that would land on one path: a clear error, nothing copied
        for part in PUSHED_PARTS:  # whole trees, so that empty directories (variables/) come along
            source = os.path.join(model_uri, part)
            if os.path.isdir(source):
                shutil.copytree(source, staging, dirs_exist_ok=True)
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
    hand, a Model artifact standing for a version), its files as they are."""
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
