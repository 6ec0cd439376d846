"""Which model answers: the destination's production, followed as pushes, rollbacks, promotions and
hand deletions change it.

The rule is Sluice's own (``sluice.components.production.destination``): the highest complete
version is in production. ``Follower.poll`` reads it; on a change it loads the new version in the
background (an ONNX Runtime session, warmed up on the rows pushed with it, see ``model.load``) and
only then swaps it in. A request takes the model in production once, when it starts, so requests in
flight finish on the version they started on. A version that fails to load is not served: the one
before keeps answering, the failure shows in the status, in ``/metrics`` and in the log, and the
load is retried with backoff (1 s doubling to 60 s) until the destination changes or it loads.

A version with its own push record is complete when its files match the record (a push writes it
last, into a staged directory renamed into place). A version without one (copied or written by hand)
has no such marker: it is taken only once its files' fingerprint is the same on two polls in a row,
so a copy in progress is not loaded half-way.

A ``Follower`` can also serve one fixed model (a Model artifact or a version directory): the
InfraValidator serves a candidate that way.

A destination on an object store (``s3://`` or ``gs://bucket/prefix``) is followed the same way, by listing it on
every poll: a version is downloaded (once, into ``sluice.metadata.storage.local_cache_root()``, keyed by its
content fingerprint) and loaded from the local copy only once it is complete, that is once its push
record, written last, is there and matches its objects; the copy is checked against the fingerprint
before it is loaded, so a version changed during the download is not served.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass

from sluice.metadata import storage
from sluice.components.onnx_export.serving import LoadedModel, LoadError
from sluice.components.onnx_export.loading import load as load_local

logger = logging.getLogger('sluice.serve')

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
KEEP_LOADED = 4  # versions asked for by number or label, besides production, kept loaded


def load(path: str, version: int, fingerprint: str) -> LoadedModel:
    """``load`` of a local directory, or of a version on an object store through its local copy."""
    return load_local(local_version(path, fingerprint) if storage.is_remote(path) else path, version, fingerprint)


def local_version(uri: str, fingerprint: str) -> str:
    """A local copy of the stored version ``uri`` whose content fingerprint is ``fingerprint``
    (downloaded once, then reused); raises LoadError if the copy does not match the fingerprint."""
    from sluice.components.production import objectstore
    from sluice.components.production.destination import counted, stored_fingerprint

    tag = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    target = f'{storage.local_mirror(uri)}@{tag}'
    if os.path.isdir(target):
        return target
    partial = f'{target}.part-{uuid.uuid4().hex[:8]}'
    try:
        objectstore.download(uri, partial, lambda rel: not counted(rel))
        if stored_fingerprint(uri) != fingerprint:  # as listed after the download
            raise LoadError(f'{uri} changed while it was being downloaded (its files no longer match {fingerprint[:19]})')
        os.replace(partial, target)
    except storage.StorageError as e:
        raise LoadError(str(e)) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


class NotServed(Exception):
    """No model answers this request: ``status`` (404 or 503) and a message saying why."""

    def __init__(self, message: str, status: int = 503):
        super().__init__(message)
        self.status = status


@dataclass
class Failure:
    version: int
    fingerprint: str
    message: str
    attempts: int
    retry_at: float


class Follower:
    def __init__(self, source: str, *, metrics=None, fixed: bool = False, recheck: float = 2.0):
        self.source = storage.normalize(source)
        self.fixed = fixed
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.failure: Failure | None = None
        self.empty_reason = 'no model loaded yet'
        self._others: collections.OrderedDict[tuple[int, str], LoadedModel] = collections.OrderedDict()
        self._unsettled: tuple[int, str | None] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Versions asked for by number or label are read from the destination at most every ``recheck``
        # seconds (as production is polled): number (or ('previous', current)) -> (when, result)
        self.recheck = recheck
        self._resolved: dict = {}
        self._loading: dict[tuple[int, str], threading.Lock] = {}  # one load per version at a time

    # -- following the destination ---------------------------------------------------------------
    def poll(self) -> None:
        """Reads production once and, when it changed, loads and swaps (or records why not)."""
        if self.fixed:
            if self.current is None:
                name = os.path.basename(self.source)
                self._try_load(int(name) if name.isdigit() else 1, 'fixed', self.source)
            return
        from sluice.components.production.destination import production

        found = production(self.source)
        for note in found.notes():
            logger.debug(note)
        version = found.current
        if version is None:
            if self.current is not None:
                logger.warning('Nothing is in production at %s any more (no complete version): serving nothing',
                               self.source)
                self._swap(None)
            self.empty_reason = f'nothing is in production at {self.source} (no complete version)'
            return
        key = (version.number, version.fingerprint)
        if self.current is not None and (self.current.version, self.current.fingerprint) == key:
            self.failure = None
            return
        settled = version.record is not None or self._unsettled == key
        self._unsettled = None if settled else key
        if settled:
            self._try_load(version.number, version.fingerprint, version.path)

    def _try_load(self, number: int, fingerprint: str, path: str) -> None:
        failure = self.failure
        if failure and (failure.version, failure.fingerprint) == (number, fingerprint) and time.time() < failure.retry_at:
            return
        loaded = self._others.get((number, fingerprint))
        try:
            model = loaded or load(path, number, fingerprint)
        except LoadError as e:
            attempts = failure.attempts + 1 if failure and (failure.version, failure.fingerprint) == (
                number, fingerprint) else 1
            wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
            self.failure = Failure(number, fingerprint, str(e), attempts, time.time() + wait)
            serving = f'still serving version {self.current.version}' if self.current else 'serving nothing'
            logger.warning('Version %s at %s failed to load (attempt %d): %s; %s; next attempt in %.0f s',
                           number, self.source, attempts, e, serving, wait)
            if self.metrics is not None:
                self.metrics.load_failed(number)
            return
        self.failure = None
        self._swap(model)

    def _swap(self, model: LoadedModel | None) -> None:
        with self._lock:
            before, self.current = self.current, model
            if before is not None and model is not None:
                self._keep(before)
        if model is not None:
            was = f' (was version {before.version})' if before is not None else ''
            logger.info('Serving version %s%s: loaded and warmed up in %.2f s', model.version, was,
                        model.load_seconds)
        if self.metrics is not None:
            self.metrics.swapped(model)

    def _keep(self, model: LoadedModel) -> None:
        self._others[(model.version, model.fingerprint)] = model
        self._others.move_to_end((model.version, model.fingerprint))
        while len(self._others) > KEEP_LOADED:
            self._others.popitem(last=False)

    def run(self, every: float) -> None:
        """Polls every ``every`` seconds until ``stop``."""
        while not self._stop.wait(every):
            try:
                self.poll()
            except Exception:  # a poll must never end the thread: the next one may succeed
                logger.exception('Reading production at %s failed; trying again in %.1f s', self.source, every)

    def start(self, every: float) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(every,), name='sluice-follow', daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # -- answering ---------------------------------------------------------------------------------
    def model(self, version: str | None = None, label: str | None = None) -> LoadedModel:
        """The model a request names: production by default, a version number, or a label
        (``production``, ``previous``)."""
        current = self.current
        if label is not None:
            if label == 'production':
                version = None
            elif label == 'previous':
                return self._previous(current)
            else:
                raise NotServed(f'no label "{label}": the labels are "production" and "previous"', 404)
        if version is None:
            if current is None:
                raise NotServed(f'no model is being served: {self._why_none()}')
            return current
        if not str(version).isdigit():
            raise NotServed(f'"{version}" is not a version number', 404)
        if current is not None and current.version == int(version):
            return current
        if self.fixed:
            raise NotServed(f'only version {current.version if current else 0} is served here', 404)
        return self._version(int(version))

    def _why_none(self) -> str:
        failure = self.failure  # read once: the follower thread may change it meanwhile
        if failure is not None:
            return f'version {failure.version} failed to load: {failure.message}'
        return self.empty_reason

    def _recent(self, key: object, compute):
        """``compute()``, or its result from the last ``recheck`` seconds (errors are remembered too)."""
        now = time.monotonic()
        found = self._resolved.get(key)
        if found is None or now - found[0] > self.recheck:
            try:
                found = (now, compute(), None)
            except NotServed as e:
                found = (now, None, e)
            self._resolved[key] = found
            if len(self._resolved) > 64:
                self._resolved = {k: v for k, v in self._resolved.items() if now - v[0] <= self.recheck}
        if found[2] is not None:
            raise found[2]
        return found[1]

    def _previous(self, current: LoadedModel | None) -> LoadedModel:
        if current is None or self.fixed:
            raise NotServed('no previous version: nothing else was in production here', 404)
        return self._version(self._recent(('previous', current.version, current.fingerprint),
                                          lambda: self._previous_number(current)))

    def _previous_number(self, current: LoadedModel) -> int:
        from sluice.components.production.destination import complete_below, inspect_version

        version = inspect_version(self.source, current.version)
        earlier = ((version.record or {}).get('previous') or {}).get('version') if version else None
        target = inspect_version(self.source, earlier) if earlier is not None else None
        if target is None or not target.complete:
            target = complete_below(self.source, current.version)
        if target is None:
            raise NotServed(f'no previous version: version {current.version} is the only complete one at '
                            f'{self.source}', 404)
        return target.number

    def _version(self, number: int) -> LoadedModel:
        version = self._recent(number, lambda: self._complete_version(number))
        key = (version.number, version.fingerprint)
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # concurrent first requests for a version: one loads it, the others take it
            with self._lock:
                model = self._others.get(key)
                if model is not None:
                    self._others.move_to_end(key)
                    return model
            try:
                model = load(version.path, version.number, version.fingerprint)
            except LoadError as e:
                if self.metrics is not None:
                    self.metrics.load_failed(number)
                raise NotServed(f'version {number} failed to load: {e}') from None
            with self._lock:
                self._keep(model)
                self._loading.pop(key, None)
            return model

    def _complete_version(self, number: int):
        from sluice.components.production.destination import inspect_version, versions

        version = inspect_version(self.source, number)
        if version is None:
            raise NotServed(f'no version {number} at {self.source}; versions: '
                            f"{', '.join(map(str, versions(self.source))) or 'none'}", 404)
        if not version.complete:
            raise NotServed(f'version {number} at {self.source} is incomplete ({version.problem}): not served', 404)
        return version

    def status(self) -> list[dict]:
        """TF Serving's model_version_status: the version in production, and a version that failed."""
        found = []
        current, failure = self.current, self.failure  # read once: a swap may happen meanwhile
        if current is not None:
            found.append({'version': str(current.version), 'state': 'AVAILABLE',
                          'status': {'error_code': 'OK', 'error_message': ''}})
        if failure is not None:
            found.append({'version': str(failure.version), 'state': 'END',
                          'status': {'error_code': 'UNKNOWN', 'error_message': failure.message}})
        if not found:
            found.append({'version': '0', 'state': 'START',
                          'status': {'error_code': 'UNAVAILABLE', 'error_message': self.empty_reason}})
        return found
