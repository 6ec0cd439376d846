"""Small components that read and write text files, for tests of the framework itself."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from typing import Callable

from sluice.components import Artifact, Component, Driver, Executor, Input, Model, ModelBlessing, Output, Parameter
from sluice.components.fingerprint import files_fingerprint
from sluice.components.module_file import load_module_file


class Text(Artifact):
    """Text files under the URI; ``chars`` counts their characters."""
    PROPERTIES = {'chars': int}


class Number(Artifact):
    """A number in ``value.txt``."""


def read_text(artifact: Artifact) -> str:
    parts = []
    for path in sorted(glob.glob(os.path.join(artifact.uri, '*.txt'))):
        with open(path) as f:
            parts.append(f.read())
    return ''.join(parts)


def write_text(artifact: Artifact, text: str, name: str = 'data.txt') -> None:
    with open(os.path.join(artifact.uri, name), 'w') as f:
        f.write(text)
    artifact.set('chars', len(text))


class SourceDriver(Driver):
    def external_fingerprints(self) -> dict[str, str]:
        directory = self.component.parameters['input_base']
        return {'files': files_fingerprint(glob.glob(os.path.join(directory, '*.txt')), root=directory)}


class SourceExecutor(Executor):
    def run(self, *, input_base: str, text: Text) -> None:
        files = sorted(glob.glob(os.path.join(input_base, '*.txt')))
        if not files:
            raise FileNotFoundError(f'no .txt files in {input_base}')
        for path in files:
            shutil.copy(path, text.uri)
        text.set('chars', len(read_text(text)))


class Source(Component):
    """Copies the .txt files of a directory."""
    input_base = Parameter(str, path=True)
    text = Output(Text)
    executor = SourceExecutor
    driver = SourceDriver


class UpperExecutor(Executor):
    calls: list[str] = []

    def run(self, *, text: Text, result: Text, suffix: str) -> None:
        UpperExecutor.calls.append(self.node_id)
        write_text(result, read_text(text).upper() + suffix)


class Upper(Component):
    """Upper-cases its input and appends ``suffix``."""
    text = Input(Text)
    result = Output(Text)
    suffix = Parameter(str, default='')
    executor = UpperExecutor


class JoinExecutor(Executor):
    def run(self, *, left: Text, right: Text, extra: Text | None, result: Text) -> None:
        parts = [read_text(left), read_text(right)] + ([read_text(extra)] if extra is not None else [])
        write_text(result, '|'.join(parts))


class Join(Component):
    """Joins two (or three) texts with '|'."""
    left = Input(Text)
    right = Input(Text)
    extra = Input(Text, optional=True)
    result = Output(Text)
    executor = JoinExecutor


class CountExecutor(Executor):
    def run(self, *, text: Text, count: Number, minimum: int) -> None:
        n = len(read_text(text))
        if n < minimum:
            raise ValueError(f'text has {n} characters, fewer than minimum={minimum}')
        with open(os.path.join(count.uri, 'value.txt'), 'w') as f:
            f.write(str(n))


class Count(Component):
    """Counts characters; fails when there are fewer than ``minimum``."""
    text = Input(Text)
    count = Output(Number)
    minimum = Parameter(int, default=0)
    executor = CountExecutor


class ApplyModuleExecutor(Executor):
    def run(self, *, text: Text, result: Text, module_file: str) -> None:
        module = load_module_file(module_file, required=['transform'])
        write_text(result, module.transform(read_text(text)))


class ApplyModule(Component):
    """Applies ``transform(text) -> text`` from a user module file."""
    text = Input(Text)
    result = Output(Text)
    module_file = Parameter(str, user_code=True)
    executor = ApplyModuleExecutor


class ProbeExecutor(Executor):
    """Calls ``hook(self, text, result)`` while running, so a test can look at the store mid-run."""
    hook: Callable | None = None

    def run(self, *, text: Text, result: Text) -> None:
        write_text(result, 'partial')
        if ProbeExecutor.hook is not None:
            ProbeExecutor.hook(self, text, result)
        write_text(result, read_text(text))


class Probe(Component):
    text = Input(Text)
    result = Output(Text)
    executor = ProbeExecutor


class SlowExecutor(Executor):
    def run(self, *, text: Text, result: Text, seconds: float, until: str) -> None:
        import time
        write_text(result, 'partial')
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and os.path.exists(until)):
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        write_text(result, read_text(text)[::-1])


class Slow(Component):
    """Reverses its input, slowly (a window to kill the process in): after ``seconds``, or as soon as
    the file ``until`` exists."""
    text = Input(Text)
    result = Output(Text)
    seconds = Parameter(float, default=1.0)
    until = Parameter(str, default='')
    executor = SlowExecutor


class FakeModelExecutor(Executor):
    """Writes a stand-in model (for tests of the Pusher and concurrency, not of training)."""

    def run(self, *, text: Text, model: Model) -> None:
        os.makedirs(os.path.join(model.uri, 'Format-Serving'))
        with open(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'), 'w') as f:
            f.write(read_text(text))


class FakeModel(Component):
    text = Input(Text)
    model = Output(Model)
    executor = FakeModelExecutor


class FakeBlessExecutor(Executor):
    def run(self, *, model: Model, blessing: ModelBlessing, blessed: bool) -> None:
        with open(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
            f.write('')
        blessing.set('blessed', int(blessed))
        blessing.set('current_model_id', model.id)
        blessing.set('baseline_model_id', 0)


class FakeBless(Component):
    """Blesses a model against no baseline, as a first run's ModelValidator would."""
    model = Input(Model)
    blessing = Output(ModelBlessing)
    blessed = Parameter(bool, default=True)
    executor = FakeBlessExecutor


class FlakyExecutor(Executor):
    """Fails with a transient error the first ``fail_times`` times (counted in ``counter``), then
    writes ``attempt <n>``; sleeps ``sleep_first`` seconds on the first call only."""

    def run(self, *, counter: str, fail_times: int, sleep_first: float, text: Text) -> None:
        calls = 1
        if os.path.exists(counter):
            with open(counter) as f:
                calls = int(f.read()) + 1
        with open(counter, 'w') as f:
            f.write(str(calls))
        write_text(text, f'partial output of call {calls}', 'partial.txt')
        if calls == 1 and sleep_first:
            time.sleep(sleep_first)
        if calls <= fail_times:
            raise ConnectionError(f'worker blipped (call {calls})')
        os.remove(os.path.join(text.uri, 'partial.txt'))
        write_text(text, f'attempt {calls}')


class Flaky(Component):
    counter = Parameter(str)  # an absolute path; not an input (sluice watch would watch it)
    fail_times = Parameter(int, default=0)
    sleep_first = Parameter(float, default=0.0)
    text = Output(Text)
    executor = FlakyExecutor


class HangExecutor(Executor):
    """Starts a child process (as Beam's workers are), records both pids and its parent's, then hangs."""

    def run(self, *, pids: str, text: Text) -> None:
        child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
        with open(pids, 'w') as f:
            f.write(f'{os.getpid()} {child.pid} {os.getppid()}')
        time.sleep(120)


class Hang(Component):
    pids = Parameter(str, path=True)
    text = Output(Text)
    executor = HangExecutor


class WhereExecutor(Executor):
    """Writes where it ran, as JSON: its pid, its parent's, its process group, whether TensorFlow was
    imported before it started, and the pid of the process that ran its Beam pipeline's one element."""

    def run(self, *, report: Text) -> None:
        import json

        import apache_beam as beam

        warm = 'tensorflow' in sys.modules
        worker = os.path.join(report.uri, 'worker')
        with self.beam_pipeline() as p:
            _ = (p | beam.Create([0]) | beam.Map(lambda _: str(os.getpid()))
                 | beam.io.WriteToText(worker, shard_name_template=''))
        with open(worker) as f:
            ran_on = int(f.read())
        os.remove(worker)
        write_text(report, json.dumps({'pid': os.getpid(), 'parent': os.getppid(), 'group': os.getpgid(0),
                                       'warm': warm, 'worker': ran_on}))


class Where(Component):
    """Runs its executor in a process of its own beside other nodes (apart_when_parallel)."""
    report = Output(Text)
    executor = WhereExecutor
    apart_when_parallel = True
