"""InfraValidator: blesses a candidate only if the serving code loads it and answers in time.

    >>> infra = InfraValidator(model=trainer.outputs['model'], time_limit_seconds=60)
    >>> pusher = Pusher(model=..., blessing=..., infra_blessing=infra.outputs['blessing'], ...)

It starts ``sluice serve`` on the candidate's directory in a child process on a free loopback port
(the same code, runtime and custom ops that will serve it in production), waits for it to load and
warm up, sends the sample request stored with the model's ONNX copy (``serving_samples.json``, written
by the OnnxExporter; ``onnx_model`` is wired by itself when ``model`` is a Trainer's) ``requests``
times, and checks the answers against the ones the export recorded. With ``examples`` (as TFX's
InfraValidator takes them) it also sends ``num_examples`` of them from ``split_name`` (default: the
first split, as TFX) as one request of raw rows, which must be answered with one finite prediction
per row. It blesses the model only if all of that happens within ``time_limit_seconds``. It always writes an InfraBlessing:
an ``INFRA_BLESSED`` or ``INFRA_NOT_BLESSED`` file (as TFX's), ``infra_validation.json`` (the verdict,
why, the load time and the answers' latencies) and the server's log (``serve.log``). A Pusher given
``infra_blessing`` pushes nothing unless it is blessed.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.components.onnx_exporter import WithOnnxDriver, check_onnx_of, onnx_dir, wire_onnx
from sluice.components.production.destination import SERVING_DIR
from sluice.metadata.artifact import Examples, InfraBlessing, Model, OnnxModel

NAME = 'candidate'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    import urllib.error  # here: with http.client and ssl, 7 ms of every `sluice` command's start
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {}


def _parent_death_signal():
    """A function for the child to call before it runs (Popen's preexec_fn): on Linux, it asks for a
    SIGTERM when the process that started it ends (killed included), so a killed run leaves no server
    holding a port. Looked up here, in the parent: the child only calls into libc (no import, no lock)."""
    try:
        import ctypes
        import signal
        prctl, term = ctypes.CDLL(None).prctl, int(signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the finally in run() is what stops it
        return None
    return lambda: prctl(1, term)  # PR_SET_PDEATHSIG


class _Check:
    """One infra check: the child server, its deadline, and what was seen."""

    def __init__(self, model_dir: str, out_dir: str, timeout: float):
        self.model_dir, self.timeout = model_dir, timeout
        self.url = f'http://127.0.0.1:{_free_port()}'
        self.log_path = os.path.join(out_dir, 'serve.log')
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.process: subprocess.Popen | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def start(self) -> None:
        port = self.url.rsplit(':', 1)[1]
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'sluice.ui.cli', 'serve', self.model_dir, '--name', NAME, '--port', port],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_parent_death_signal())

    def wait_loaded(self) -> str:
        """'' once the model answers status AVAILABLE, else why not (load failure, exit, time out)."""
        status_url = f'{self.url}/v1/models/{NAME}'
        while self.left() > 0:
            if self.process.poll() is not None:
                return f'the server exited with status {self.process.returncode} before it loaded the model: ' \
                       + self.log_tail()
            try:
                code, body = _call(status_url, timeout=max(0.1, min(2.0, self.left())))
            except OSError:  # not listening yet
                time.sleep(0.1)
                continue
            states = body.get('model_version_status') or []
            if any(s.get('state') == 'AVAILABLE' for s in states):
                return ''
            failed = [s for s in states if s.get('state') == 'END']
            if failed:
                return f"the model failed to load: {failed[0]['status']['error_message']}"
            time.sleep(0.1)
        return f'the model did not load within time_limit_seconds={self.timeout:g}: ' + self.log_tail()

    def log_tail(self) -> str:
        with open(self.log_path) as f:
            lines = [line.strip() for line in f if line.strip()]
        return ' | '.join(lines[-3:]) or '(the server wrote nothing)'

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _samples(model_dir: str) -> tuple[dict, list | None]:
    from sluice.components.onnx_export.loading import SAMPLES_FILE
    from sluice.components.production.destination import onnx_path

    found = onnx_path(model_dir)
    path = os.path.join(os.path.dirname(found), SAMPLES_FILE) if found else ''
    if not path or not os.path.isfile(path):
        return {}, None
    with open(path) as f:
        samples = json.load(f)
    return samples['request'], samples['predictions']


def _candidate_dir(model: Model, onnx_uri: str | None, tmp_dir: str) -> str:
    """The directory ``sluice serve`` loads: the Model's, or, with an OnnxModel, one that links its
    SavedModel and the OnnxModel's files side by side (as a push would put them)."""
    if onnx_uri is None:
        return model.uri
    staged = os.path.join(tmp_dir, 'candidate')
    os.makedirs(staged, exist_ok=True)
    os.symlink(os.path.join(model.uri, SERVING_DIR), os.path.join(staged, SERVING_DIR))
    for name in os.listdir(onnx_uri):
        if not name.startswith('.'):
            os.symlink(os.path.join(onnx_uri, name), os.path.join(staged, name))
    return staged


def _example_request(examples: Examples, split: str, rows: int, onnx_file: str) -> tuple[dict, str]:
    """A row-form request of the first ``rows`` examples of ``split`` (the model's raw inputs, read as
    the ONNX model describes them), and the split read; raises ValueError naming what is wrong."""
    from sluice.components.onnx_export import OnnxExportError
    from sluice.components.onnx_export.loading import open_model, sample_request
    from sluice.components.onnx_export.runtime import dense_features
    from sluice.components.onnx_exporter import read_records

    split = split or (examples.split_names[0] if examples.split_names else '')
    if split not in examples.split_names:
        raise ValueError(f"{examples!r} has no split {split!r} (its splits: {', '.join(examples.split_names) or 'none'}); "
                         "give split_name= one of them (through tfx.components: RequestSpec(split_name=...))")
    description = [{'name': f.name, 'dtype': f.dtype, 'missing': f.missing} for f in open_model(onnx_file).features]
    try:
        records = read_records(examples, split, rows)
    except FileNotFoundError:
        raise ValueError(f"{examples!r} holds no '{split}' examples (no files under {examples.split_uri(split)})") \
            from None
    except Exception as e:  # noqa: BLE001 - e.g. TensorFlow's DataLossError on a corrupt or wrongly compressed file
        raise ValueError(f"the '{split}' examples of {examples!r} could not be read: {type(e).__name__}: {e}") from e
    try:
        features = dense_features(records, description)
    except OnnxExportError as e:
        raise ValueError(f"the '{split}' examples of {examples!r} do not fit the model's inputs: {e}") from e
    return sample_request(features, description, rows=rows), split


def finite_predictions(predictions) -> bool:
    """Whether every number in a response's predictions is finite: the server sends a NaN or an infinity
    as null, which JSON cannot carry, so a null counts as not finite."""
    if isinstance(predictions, dict):
        return all(finite_predictions(v) for v in predictions.values())
    if isinstance(predictions, list):
        return all(finite_predictions(v) for v in predictions)
    return predictions is not None and (not isinstance(predictions, float) or math.isfinite(predictions))


class InfraValidatorExecutor(Executor):
    def run(self, *, model: Model, blessing: InfraBlessing, time_limit_seconds: float, requests: int,
            num_examples: int, split_name: str, onnx_model: OnnxModel | None = None,
            examples: Examples | None = None) -> None:
        from sluice.components.onnx_export.loading import SAMPLE_TOLERANCE, max_difference
        from sluice.components.production.destination import onnx_path

        check_onnx_of(onnx_model, model, 'InfraValidator')
        model_dir = _candidate_dir(model, onnx_dir(onnx_model), self.tmp_dir)
        report: dict = {'model_id': model.id, 'time_limit_seconds': time_limit_seconds}
        check = _Check(model_dir, blessing.uri, time_limit_seconds)
        try:
            if onnx_path(model_dir) is None:
                skipped = onnx_model.get('onnx_skipped') if onnx_model is not None else None
                why = (f'{model!r} has no ONNX copy' + (f' ({onnx_model!r} says why: {skipped})' if skipped else '')
                       + ': there is nothing sluice serve can load')
            else:
                why, example_request = '', None
                if examples is not None:  # read before the server starts: the time limit is the server's
                    from sluice.components.onnx_export.serving import LoadError
                    try:
                        example_request = _example_request(examples, split_name, num_examples, onnx_path(model_dir))
                    except ValueError as e:
                        why = str(e)
                    except LoadError:  # the model does not load here: the server's load says so, and why
                        pass
                if not why:
                    check.start()
                    why = check.wait_loaded()
                report['load_seconds'] = round(time.monotonic() - check.started, 3)
                if not why:
                    why = self._answers(check, *_samples(model_dir), requests, report, max_difference, SAMPLE_TOLERANCE)
                if not why and example_request is not None:
                    why = self._examples_answered(check, *example_request, report)
        finally:
            check.stop()
        blessed = not why
        report.update(blessed=blessed, reason=why or f'loaded and answered {requests} requests within '
                      f'{time_limit_seconds:g} s')
        with open(os.path.join(blessing.uri, 'infra_validation.json'), 'w') as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(blessing.uri, 'INFRA_BLESSED' if blessed else 'INFRA_NOT_BLESSED'), 'w'):
            pass
        blessing.set('blessed', int(blessed))
        blessing.set('current_model_id', model.id)
        blessing.set('reason', report['reason'])
        print(f"InfraValidator: {'INFRA_BLESSED' if blessed else 'INFRA_NOT_BLESSED'} model #{model.id}: "
              f"{report['reason']}", flush=True)

    @staticmethod
    def _answers(check: _Check, request: dict, expected, requests: int, report: dict, max_difference,
                 tolerance: float) -> str:
        """Sends the sample request ``requests`` times; '' if every answer came in time and matched."""
        if not request:
            request = {'instances': [{}]}  # a model without samples: its status was checked, ask for the error shape
            expected = None
        latencies = []
        for i in range(requests):
            if check.left() <= 0:
                return f'answered {i} of {requests} requests within time_limit_seconds={check.timeout:g}'
            started = time.monotonic()
            try:
                code, body = _call(f'{check.url}/v1/models/{NAME}:predict', request, timeout=check.left())
            except OSError as e:
                return f'request {i + 1} got no answer: {e}'
            latencies.append(round(time.monotonic() - started, 4))
            if code >= 500 or (code != 200 and expected is not None):
                return f'request {i + 1} was answered with status {code}: {body.get("error", body)}'
            if expected is not None:
                worst = max_difference(body.get('predictions'), expected)
                if not worst <= tolerance:
                    return (f'the answers differ from the ones recorded at training by up to {worst:.3g} '
                            f'(tolerance {tolerance:g})')
        report['latency_seconds'] = {'first': latencies[0], 'max': max(latencies),
                                     'median': sorted(latencies)[len(latencies) // 2]}
        return ''

    @staticmethod
    def _examples_answered(check: _Check, request: dict, split: str, report: dict) -> str:
        """Sends the examples' request; '' if each row got one finite prediction in time."""
        sent = len(request['instances'])
        if check.left() <= 0:
            return f'no time left for the request of {sent} examples within time_limit_seconds={check.timeout:g}'
        try:
            code, body = _call(f'{check.url}/v1/models/{NAME}:predict', request, timeout=check.left())
        except OSError as e:
            return f"the request of {sent} '{split}' examples got no answer: {e}"
        if code != 200:
            return f"the request of {sent} '{split}' examples was answered with status {code}: {body.get('error', body)}"
        predictions = body.get('predictions') or []
        if len(predictions) != sent or not finite_predictions(predictions):
            return (f"the request of {sent} '{split}' examples was answered with {len(predictions)} predictions"
                    + ('' if len(predictions) != sent else ', not all of them finite numbers'))
        report['examples'] = {'split': split, 'rows': sent}
        return ''


def _check_timeout(value: float) -> None:
    if not value > 0:
        raise ValueError(f'time_limit_seconds must be positive, got {value}')


def _check_requests(value: int) -> None:
    if value < 1:
        raise ValueError(f'requests must be at least 1 (the sample request is sent that many times), got {value}')


def _check_num_examples(value: int) -> None:
    if value < 1:
        raise ValueError(f'num_examples must be at least 1 (that many examples make the request), got {value}')


class InfraValidator(Component):
    """Blesses a model only if ``sluice serve`` loads it and answers its sample request in time."""
    model = Input(Model)
    onnx_model = Input(OnnxModel, optional=True)  # the model's ONNX copy; a Trainer's is wired by itself
    blessing = Output(InfraBlessing)
    time_limit_seconds = Parameter(float, default=60.0, check=_check_timeout)
    requests = Parameter(int, default=10, check=_check_requests)
    examples = Input(Examples, optional=True)  # raw examples (ExampleGen's): rows of them are sent too
    num_examples = Parameter(int, default=1, check=_check_num_examples)  # TFX's RequestSpec.num_examples
    split_name = Parameter(str, default='')  # '': the first split, as TFX
    libraries = ('onnxruntime', 'onnxruntime-extensions', 'fastapi', 'uvicorn', 'tensorflow')  # TF reads examples
    executor = InfraValidatorExecutor
    driver = WithOnnxDriver

    def __init__(self, **kwargs) -> None:
        super().__init__(**wire_onnx(kwargs))
