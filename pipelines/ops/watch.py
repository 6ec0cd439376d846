"""Continuous training: run a pipeline whenever its inputs change (``sluice watch``).

Each tick looks at the files the pipeline reads (every file under each path parameter of its
components: ExampleGen input directories, imported schemas; not push destinations, which it
writes) and at its code (the pipeline file and the module files, each with the project files it
imports, as the cache key finds them: ``fingerprint.imports.local_imports``) by name, size and
modification time, which costs a directory walk and no reading. When something is new or changed
(a new span directory, a replaced CSV, an edited module file or helper), the pipeline file is loaded
again (and the files to watch found again) and run; the cache reruns only what the change affects.
A run that failed with an error a retry could fix is resumed on the next tick; one that cannot (bad
data, bad code) waits for the inputs to change.

Watching outlives ordinary errors. A pipeline file that does not load (half saved, a syntax error,
an exception in ``create_pipeline``) is reported in one line; the last pipeline that loaded is kept
(and run if its inputs changed) and the file is loaded again at its next change. A run that cannot
start or resume (its lease held by another live process, the store unreachable or locked, any
error of the runner) is reported and tried again at the next tick. Ctrl-C (or SIGTERM) stops
watching.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, TextIO

from sluice.metadata import storage
from sluice.components.fingerprint import local_imports
from sluice.metadata.artifact import PushedModel
from sluice.dsl.pipeline import Pipeline, PipelineError, load_pipeline

State = dict[str, tuple[int, int | str]]  # path -> (size, mtime_ns), or (size, ETag) in an object store


def file_state(paths: Iterable[str], state: State | None = None) -> State:
    """Add path -> (size, mtime_ns) of each of ``paths`` that exists to ``state`` (a new one if None)."""
    state = {} if state is None else state
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:  # absent, or removed meanwhile
            continue
        state[path] = (st.st_size, st.st_mtime_ns)
    return state


def code_files(pipeline: Pipeline) -> list[str]:
    """The pipeline file and the module file of each component, with the project files each imports,
    directly or not (not the standard library, installed packages or Sluice's own code); a module
    file absent now is listed too, so that its arrival is seen."""
    files = {os.path.abspath(path) for component in pipeline.components for _, path in component.user_code_files()}
    if pipeline.source_file:
        files.add(os.path.abspath(pipeline.source_file))
    found = set(files)
    for path in files:
        if os.path.isfile(path):
            found.update(local_imports(path))
    return sorted(found)


def input_state(pipeline: Pipeline, code: Iterable[str] | None = None) -> State:
    """path -> (size, mtime_ns) of every file under every path parameter of the pipeline's components,
    and of its code: ``code`` (default: ``code_files(pipeline)``, found again)."""
    state: State = {}
    # Push destinations are where the pipeline writes, not what it reads: a push must not start a run.
    outputs = {storage.normalize(c.parameters['push_destination']) for c in pipeline.components
               if c.parameters.get('push_destination') and
               any(issubclass(o.type, PushedModel) for o in type(c).OUTPUTS.values())}
    for component in pipeline.components:
        for key, decl in type(component).PARAMETERS.items():
            value = component.parameters.get(key)
            if not decl.path or decl.user_code or not isinstance(value, str) or \
                    ('://' in value and not storage.is_remote(value)) or storage.normalize(value) in outputs:
                continue
            if storage.is_remote(value):
                state.update(storage.tree_state(value))
            elif os.path.isdir(value):
                for directory, dirs, files in os.walk(value):
                    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
                    file_state((os.path.join(directory, n) for n in files if not n.startswith('.')), state)
            else:
                file_state([value], state)
    return file_state(code_files(pipeline) if code is None else code, state)


def changes(before: State | None, after: State) -> list[str]:
    if before is None:
        return []
    new = [f'new {p}' for p in sorted(set(after) - set(before))]
    changed = [f'changed {p}' for p in sorted(set(after) & set(before)) if after[p] != before[p]]
    gone = [f'removed {p}' for p in sorted(set(before) - set(after))]
    return new + changed + gone


def _one_line(text: str) -> str:
    return ' '.join(text.split()).rstrip('.')


class Watcher:
    """Runs ``path``'s pipeline now and whenever its inputs change; ``tick()`` does one look (the first
    loads the pipeline file). Errors are told through ``say``, never raised; Ctrl-C is."""

    def __init__(self, path: str, every: float = 60.0, metadata: str | None = None,
                 runner: Any = None, say: Callable[[str], None] | None = None, stream: TextIO | None = None) -> None:
        from sluice.runners.local import LocalDagRunner

        self.path, self.every, self.metadata = path, every, metadata
        self.runner = runner or LocalDagRunner()
        self.say = say or (lambda text: print(text, file=stream, flush=True))
        self.last: State | None = None
        self.pipeline: Pipeline | None = None  # the last pipeline that loaded
        self.loader: list[str] = [os.path.abspath(path)]  # the pipeline file and the project files it imports
        self.code: list[str] = list(self.loader)  # and the module files with theirs
        self.due = False  # a run could not start: try again at the next tick
        self.to_resume: str | None = None  # a run that failed transiently, resumed on the next tick
        self.runs: list[Any] = []  # each run started (its result once it returned)
        self.interrupted = False  # Ctrl-C came during a run or resume (not between two ticks)

    def _load(self) -> bool:
        """Load the pipeline file; on an error, say it and keep the last pipeline that loaded."""
        try:
            pipeline = load_pipeline(self.path)
        except Exception as e:
            # load_pipeline's messages name the file; watching, the file is not run again by hand.
            message = _one_line(str(e).removesuffix(' Fix the pipeline file and run again.'))
            if not isinstance(e, PipelineError):
                message = f'Pipeline file {os.path.abspath(self.path)} failed to load: {type(e).__name__}: {message}'
            # Watch what the file imports now as well as what it imported when it last loaded.
            now = local_imports(self.path) if os.path.isfile(self.path) else [os.path.abspath(self.path)]
            self.loader = sorted({*self.loader, *now})
            kept = 'keeping the last good pipeline' if self.pipeline is not None else 'no pipeline loaded yet'
            self.say(f'{message}; {kept}; will retry on the next change.')
            return False
        if self.metadata:
            pipeline.metadata = self.metadata
        self.pipeline, self.code = pipeline, code_files(pipeline)
        self.loader = local_imports(self.path)
        return True

    def _state(self) -> State:
        if self.pipeline is None:  # nothing loaded yet: watch the pipeline file and what it imports
            return file_state(self.loader)
        return input_state(self.pipeline, {*self.code, *self.loader})  # loader: what a failed load imports

    def _restate(self, seen: State) -> State:
        """The state of the files to watch now (a load may have changed which), as seen in ``seen``
        where it holds them, so that a change made during the load is still seen at the next tick."""
        return {path: seen.get(path, now) for path, now in self._state().items()}

    def _start(self, what: str, start: Callable[[], Any]) -> tuple[Any, bool]:
        """(start()'s result, False), or, if it raised, (None, whether to try again at the next tick).
        The run has its place in ``runs`` from before it starts, its result stored there when it
        returns: a stop (Ctrl-C, SIGTERM) at any moment in between counts it once."""
        self.runs.append(None)
        try:
            result = start()
        except KeyboardInterrupt:  # in the middle of it, or just after it ended: it still counts
            self.interrupted = True
            raise
        except Exception as e:  # a held lease, the store down or locked, a bug: watching goes on
            self.runs.pop()  # it did not start: not a run
            again = getattr(e, 'retryable', True) is not False
            when = f'at the next tick, in {self.every:g}s' if again else 'when the inputs change'
            self.say(f'Could not {what}: {type(e).__name__}: {_one_line(str(e))}; will try again {when}.')
            return None, again
        self.runs[-1] = result
        return result, False

    def tick(self) -> Any:
        """One look at the inputs: run, resume, or (nothing new) do nothing. Returns the run's result
        or None."""
        state = self._state()
        if self.to_resume is not None:
            run_id, self.to_resume = self.to_resume, None
            self.say(f'Resuming run {run_id}, which failed with an error a retry may fix.')
            result, again = self._start(f'resume run {run_id}', lambda: self.runner.resume(
                None, run_id, metadata=self.pipeline.metadata))
            self.to_resume = run_id if again else None
        elif state != self.last or self.due:
            what, before = changes(self.last, state), self.last
            if what:
                self.say(f'Inputs changed ({"; ".join(what[:5])}{" ..." if len(what) > 5 else ""}): running.')
            if (what or self.pipeline is None) and not self._load() and \
                    (self.pipeline is None or not self._inputs_changed(before, state)):
                self.last = self._restate(state)  # only code that does not load changed: wait for a change
                return None
            state = self._restate(state)
            result, self.due = self._start(f'start a run of {self.path}', lambda: self.runner.run(self.pipeline))
        else:
            return None
        self.last = state
        if result is not None:
            self._report(result)
        return result

    def _inputs_changed(self, before: State | None, after: State) -> bool:
        """Whether something other than the pipeline file and the files it imports changed."""
        changed = {p for p in set(before or {}) | set(after) if (before or {}).get(p) != after.get(p)}
        return bool(changed - set(self.loader))

    def _report(self, result: Any) -> None:
        if result.state != 'COMPLETE':
            failed = [n for n in result.nodes.values() if n.state == 'FAILED']
            if failed and all(n.retryable for n in failed):
                self.to_resume = result.run_id
                self.say(f'Run {result.run_id} failed ({failed[0].node_id}: {failed[0].error}); it will be resumed '
                         f'at the next tick, in {self.every:g}s.')
            else:
                self.say(f'Run {result.run_id} failed; waiting for the inputs to change (fix the cause, or run '
                         f'sluice resume {result.run_id}).')

    def forever(self) -> None:
        """Tick every ``every`` seconds until Ctrl-C or SIGTERM (a service manager's stop)."""
        if threading.current_thread() is threading.main_thread():
            def stop(signum: int, frame: Any) -> None:
                raise KeyboardInterrupt

            # Started in the background by a shell (`sluice watch ... &`), SIGINT arrives ignored: take it back.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, stop)
        self.say(f'Watching the inputs of {self.path} every {self.every:g}s (Ctrl-C to stop).')
        try:
            while True:
                self.tick()
                time.sleep(self.every)
        except KeyboardInterrupt:
            self.say(f'Stopped watching after {len(self.runs)} run(s).')
