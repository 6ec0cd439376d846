"""Pusher: puts a blessed model into production, atomically, and only over the baseline it beat.

    >>> pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
    ...                 push_destination='serving/penguin')

A push copies the model (``Format-Serving`` SavedModel and ``Format-ONNX``) into a staging directory
beside the destination, then renames it to ``<destination>/<version>/`` (versions are increasing
integers, as TF Serving expects), so nothing half-written is ever visible there. Each version holds
``sluice_push.json`` (which model, when). Under a lock on the destination, the push happens only if
the model currently in production is still the baseline the blessing was measured against
(compare-and-swap); otherwise, or when the blessing is NOT_BLESSED, nothing is pushed and the
PushedModel records ``pushed=0`` and why.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
import uuid
from typing import Any

from components.component import Component, Input, Output, Parameter
from components.executor import Executor
from metadata.artifact import Model, ModelBlessing, PushedModel

PUSH_RECORD = 'sluice_push.json'
LOCK_FILE = '.sluice-push.lock'


class PushError(RuntimeError):
    """The destination cannot be written; the message says where and how to fix it."""


def versions(destination: str) -> list[int]:
    """Version directories in the destination, oldest first."""
    if not os.path.isdir(destination):
        return []
    return sorted(int(d) for d in os.listdir(destination)
                  if d.isdigit() and os.path.isdir(os.path.join(destination, d)))


def current_push(destination: str) -> dict | None:
    """The push record of the newest version, i.e. the model in production there, or None."""
    found = versions(destination)
    if not found:
        return None
    path = os.path.join(destination, str(found[-1]), PUSH_RECORD)
    record: dict[str, Any] = {'version': str(found[-1]), 'model_id': None}
    if os.path.isfile(path):
        with open(path) as f:
            record.update(json.load(f))
    return record


class PusherExecutor(Executor):
    def run(self, *, model: Model, blessing: ModelBlessing, pushed_model: PushedModel,
            push_destination: str) -> None:
        if blessing.get('current_model_id') != model.id:
            raise ValueError(f'{blessing!r} blesses model #{blessing.get("current_model_id")}, not {model!r}; wire '
                             'the same Trainer output into ModelValidator and Pusher.')
        pushed_model.set('pushed_destination', push_destination)
        if not blessing.get('blessed'):
            return self._not_pushed(pushed_model, 'the model is NOT_BLESSED (see the blessing\'s reasons.json); '
                                                  'the destination is unchanged')
        baseline_id = blessing.get('baseline_model_id') or None
        try:
            os.makedirs(push_destination, exist_ok=True)
            lock = open(os.path.join(push_destination, LOCK_FILE), 'a')
        except OSError as e:
            raise PushError(f'Cannot write to the push destination {push_destination}: {e.strerror}. Choose a '
                            'writable push_destination or fix its permissions.') from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for name in os.listdir(push_destination):  # left by a push that was killed; we hold the lock
                if name.startswith('.staging-'):
                    shutil.rmtree(os.path.join(push_destination, name), ignore_errors=True)
            current = current_push(push_destination)
            current_id = current['model_id'] if current else None
            if current_id == model.id:  # already in production, e.g. a push whose record was cut off
                return self._pushed(pushed_model, model, push_destination, current['version'], fresh=False)
            if current_id != baseline_id:
                return self._not_pushed(
                    pushed_model,
                    f'the model in production changed since this model was evaluated (it was measured against '
                    f'{_model_name(baseline_id)}, production is now {_model_name(current_id)}); rerun the pipeline '
                    'to evaluate it against the new production model')
            version = str(max([int(time.time())] + [v + 1 for v in versions(push_destination)]))
            staging = os.path.join(push_destination, f'.staging-{uuid.uuid4().hex}')
            try:
                self._stage(model, staging)
                with open(os.path.join(staging, PUSH_RECORD), 'w') as f:
                    json.dump({'model_id': model.id, 'model_uri': model.uri, 'blessing_id': blessing.id,
                               'baseline_model_id': baseline_id, 'version': version,
                               'pushed_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}, f, indent=2)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(staging, os.path.join(push_destination, version))  # atomic on one filesystem
            except OSError as e:
                shutil.rmtree(staging, ignore_errors=True)
                if e.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC):
                    raise PushError(f'Cannot write to the push destination {push_destination}: {e.strerror}.') from None
                raise
            return self._pushed(pushed_model, model, push_destination, version, fresh=True)

    @staticmethod
    def _stage(model: Model, staging: str) -> None:
        os.makedirs(staging)
        for part in ('Format-Serving', 'Format-ONNX'):
            source = os.path.join(model.uri, part)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(staging, part))

    def _pushed(self, pushed_model: PushedModel, model: Model, destination: str, version: str, fresh: bool) -> None:
        target = os.path.join(destination, version)
        for part in os.listdir(target):  # the artifact keeps a copy of what was pushed
            src = os.path.join(target, part)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(pushed_model.uri, part))
        pushed_model.set('pushed', 1)
        pushed_model.set('pushed_version', version)
        pushed_model.set('reason', 'pushed' if fresh else 'already in production (pushed earlier as this version)')
        print(f'Pusher: model #{model.id} pushed to {target}', flush=True)

    @staticmethod
    def _not_pushed(pushed_model: PushedModel, reason: str) -> None:
        pushed_model.set('pushed', 0)
        pushed_model.set('pushed_version', '')
        pushed_model.set('reason', reason)
        with open(os.path.join(pushed_model.uri, 'NOT_PUSHED'), 'w') as f:
            f.write(reason + '\n')
        print(f'Pusher: not pushed: {reason}', flush=True)


def _model_name(model_id: int | None) -> str:
    return f'model #{model_id}' if model_id else 'no model'


class Pusher(Component):
    """Pushes a BLESSED model to ``push_destination/<version>/``, atomically and compare-and-swap."""
    model = Input(Model)
    blessing = Input(ModelBlessing)
    pushed_model = Output(PushedModel)
    push_destination = Parameter(str, path=True)
    executor = PusherExecutor
