"""Continuous training: run a pipeline whenever its inputs change (``sluice watch``).

Each tick looks at the files the pipeline reads (every file under each path parameter of its
components: ExampleGen input directories, imported schemas, module files; not push destinations,
which it writes) by name, size and
modification time, which costs a directory walk and no reading. When something is new or changed
(a new span directory, a replaced CSV, an edited module file), the pipeline file is loaded again
and run; the cache reruns only what the change affects. A run that failed with an error a retry
could fix is resumed on the next tick; one that cannot (bad data, bad code) waits for the inputs to
change. Ctrl-C (or SIGTERM) stops watching.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, TextIO

from sluice.metadata.artifact import PushedModel
from sluice.dsl.pipeline import Pipeline, load_pipeline

State = dict[str, tuple[int, int]]


def input_state(pipeline: Pipeline) -> State:
    """path -> (size, mtime_ns) of every file under every path parameter of the pipeline's components."""
    state: State = {}
    # Push destinations are where the pipeline writes, not what it reads: a push must not start a run.
    outputs = {os.path.abspath(c.parameters['push_destination']) for c in pipeline.components
               if c.parameters.get('push_destination') and
               any(issubclass(o.type, PushedModel) for o in type(c).OUTPUTS.values())}
    for component in pipeline.components:
        for key, decl in type(component).PARAMETERS.items():
            value = component.parameters.get(key)
            if not decl.path or not isinstance(value, str) or '://' in value or os.path.abspath(value) in outputs:
                continue
            if os.path.isfile(value):
                st = os.stat(value)
                state[value] = (st.st_size, st.st_mtime_ns)
            elif os.path.isdir(value):
                for directory, dirs, files in os.walk(value):
                    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
                    for name in files:
                        if name.startswith('.'):
                            continue
                        path = os.path.join(directory, name)
                        try:
                            st = os.stat(path)
                        except OSError:  # removed meanwhile
                            continue
                        state[path] = (st.st_size, st.st_mtime_ns)
    if pipeline.source_file and os.path.isfile(pipeline.source_file):
        st = os.stat(pipeline.source_file)
        state[pipeline.source_file] = (st.st_size, st.st_mtime_ns)
    return state


def changes(before: State | None, after: State) -> list[str]:
    if before is None:
        return []
    new = [f'new {p}' for p in sorted(set(after) - set(before))]
    changed = [f'changed {p}' for p in sorted(set(after) & set(before)) if after[p] != before[p]]
    gone = [f'removed {p}' for p in sorted(set(before) - set(after))]
    return new + changed + gone


class Watcher:
    """Runs ``path``'s pipeline now and whenever its inputs change; ``tick()`` does one look."""

    def __init__(self, path: str, every: float = 60.0, metadata: str | None = None,
                 runner: Any = None, say: Callable[[str], None] | None = None, stream: TextIO | None = None) -> None:
        from sluice.runners.local import LocalDagRunner

        self.path, self.every, self.metadata = path, every, metadata
        self.runner = runner or LocalDagRunner()
        self.say = say or (lambda text: print(text, file=stream, flush=True))
        self.last: State | None = None
        self.pipeline = self._load()
        self.to_resume: str | None = None  # a run that failed transiently, resumed on the next tick
        self.runs: list[Any] = []

    def _load(self) -> Pipeline:
        pipeline = load_pipeline(self.path)
        if self.metadata:
            pipeline.metadata = self.metadata
        return pipeline

    def tick(self) -> Any:
        """One look at the inputs: run, resume, or (nothing new) do nothing. Returns the run's result
        or None."""
        state = input_state(self.pipeline)
        if self.to_resume is not None:
            run_id, self.to_resume = self.to_resume, None
            self.say(f'Resuming run {run_id}, which failed with an error a retry may fix.')
            result = self.runner.resume(None, run_id, metadata=self.pipeline.metadata)
        elif state != self.last:
            what = changes(self.last, state)
            if what:
                self.say(f'Inputs changed ({"; ".join(what[:5])}{" ..." if len(what) > 5 else ""}): running.')
                self.pipeline = self._load()  # the pipeline file or a module may have changed too
                state = input_state(self.pipeline)
            result = self.runner.run(self.pipeline)
        else:
            return None
        self.last = state
        self.runs.append(result)
        if result.state != 'COMPLETE':
            failed = [n for n in result.nodes.values() if n.state == 'FAILED']
            if failed and all(n.retryable for n in failed):
                self.to_resume = result.run_id
                self.say(f'Run {result.run_id} failed ({failed[0].node_id}: {failed[0].error}); it will be resumed '
                         f'at the next tick, in {self.every:g}s.')
            else:
                self.say(f'Run {result.run_id} failed; waiting for the inputs to change (fix the cause, or run '
                         f'sluice resume {result.run_id}).')
        return result

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
