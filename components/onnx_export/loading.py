"""Loading a served model: an ONNX Runtime session on a pushed version or a Model artifact's ONNX copy,
warmed up on the sample request the export stored beside it (``serving_samples.json``: the request
and the answers the export got, which the warm-up must reproduce), and timed there for the server's
choice of where a request runs (``LoadedModel.seconds_for``). Nothing here imports TensorFlow."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import numpy as np

from sluice.components.onnx_export.serving import _ORT_TYPES, LoadedModel, LoadError, _features_of, is_missing

SAMPLES_FILE = 'serving_samples.json'  # beside model.onnx: a request and the answers the export got
SAMPLE_ROWS = 8
SAMPLE_TOLERANCE = 1e-5  # the warm-up's answers against the Trainer's, same ONNX file and runtime
# A request a server answers on its event loop, not in a worker thread: one whose rows the model should
# answer within INLINE_SECONDS (as timed at warm-up, at least MIN_ROW_SECONDS a row: a noisy slope
# never makes rows free), and at most INLINE_ROWS of them (see sluice.serving.app).
INLINE_SECONDS = 2.5e-4
MIN_ROW_SECONDS = 5e-7
INLINE_ROWS = 256
ALONE_INLINE_SECONDS = 5e-3  # a request answered alone (IN_FLIGHT.alone) runs on the event loop up to this long
# onnxruntime's threads for one run of a served model while other requests are answered: each already
# has a thread of the server's, and a pool per run only adds threads that spin-wait for work. Taxi's
# model, 64 rows a request, in one process here (2 cores), two requests at a time: 1,052-1,123 us of CPU
# per request and 1,710-1,830 requests/s with the default pool (one thread per core), 714-758 us and
# 2,170-2,306 with one (bench/onnx_threads.py). A request answered alone runs on a second session with
# the default pool, which may use every core (bench/README.md, "onnxruntime's threads").
SERVING_THREADS = 1


def load(path: str, version: int, fingerprint: str) -> LoadedModel:
    """An ONNX Runtime session on the ONNX model at ``path`` (a pushed version or a Model artifact),
    warmed up on the sample rows pushed with it; raises LoadError with the reason."""
    from sluice.components.production.destination import onnx_path

    started = time.perf_counter()
    onnx_file = onnx_path(path)
    if onnx_file is None:
        raise LoadError(f'{path} has no ONNX model (model.onnx): sluice serve answers with the ONNX copy a '
                        "Trainer's export (its node <trainer id>.onnx) makes; push a model trained with "
                        "export_onnx=True (where export_onnx='if_possible' could not export one, its OnnxModel's "
                        'onnx_skipped says why)')
    model = open_model(onnx_file, version, fingerprint, path)
    samples = os.path.join(os.path.dirname(onnx_file), SAMPLES_FILE)
    if (os.cpu_count() or 1) > 1:  # both sessions answer their first request here, not a client's
        warm_up(model, samples, timed=False)
        alone = dataclasses.replace(model, session=_session(onnx_file, None))
        warm_up(alone, samples)  # timed on the session a request answered alone runs on (the event-loop rule)
        model.session_alone = alone.session
        model.call_seconds, model.row_seconds = alone.call_seconds, alone.row_seconds
    else:
        warm_up(model, samples)
    model.load_seconds = time.perf_counter() - started
    return model


def _session(onnx_file: str, threads: int | None):
    from sluice.components.onnx_export.runtime import make_session

    try:
        return make_session(onnx_file, threads)
    except Exception as e:  # onnxruntime's own reason (a truncated or corrupt file, an unknown op)
        raise LoadError(f'{onnx_file} does not load in ONNX Runtime: {type(e).__name__}: {e}') from None


def open_model(onnx_file: str, version: int = 0, fingerprint: str = '', path: str = '') -> LoadedModel:
    session = _session(onnx_file, SERVING_THREADS)
    outputs = [(o.name, _ORT_TYPES.get(o.type, 'float32')) for o in session.get_outputs()]
    shapes = {o.name: [d if isinstance(d, int) else -1 for d in (o.shape or [])] for o in session.get_outputs()}
    return LoadedModel(version, fingerprint, path or os.path.dirname(onnx_file), session, _features_of(session),
                       outputs, shapes)


def write_samples(onnx_file: str, features: dict[str, np.ndarray], description: list[dict]) -> str:
    """Writes ``serving_samples.json`` beside ``onnx_file``: a row-form request made of the first rows
    of ``features`` and the model's answers to it, which a server checks its warm-up against."""
    request = sample_request(features, description)
    answer, _ = open_model(onnx_file).predict(request)
    path = os.path.join(os.path.dirname(onnx_file), SAMPLES_FILE)
    with open(path, 'w') as f:
        json.dump({'request': request, 'predictions': answer['predictions']}, f, indent=1)
    return path


def warm_up(model: LoadedModel, samples_file: str, timed: bool = True) -> None:
    """Answers the sample request pushed with the model and checks the answers against the ones the
    Trainer recorded (a model pushed without samples is warmed up on one row of zeros and empty
    strings); then, ``timed``, times the model (``time_it``)."""
    if os.path.isfile(samples_file):
        try:
            with open(samples_file) as f:
                samples = json.load(f)
            request, expected = samples['request'], samples['predictions']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LoadError(f'{samples_file} is unreadable: {e}') from None
    else:
        zero = {'float32': 0.0, 'int64': 0, 'string': ''}
        request, expected = {'instances': [{f.name: zero[f.dtype] for f in model.features}]}, None
    try:
        got = model.predict(request)[0]['predictions']
    except Exception as e:
        raise LoadError(f'the warm-up request ({samples_file}) fails: {type(e).__name__}: {e}') from None
    if expected is not None:
        worst = max_difference(got, expected)
        if not worst <= SAMPLE_TOLERANCE:
            raise LoadError(f'the warm-up answers differ from the ones recorded at training by up to {worst:.3g} '
                            f'(tolerance {SAMPLE_TOLERANCE:g}): the model does not run here as it ran there')
    if timed:
        time_it(model, request.get('instances'))


def time_it(model: LoadedModel, rows: Any) -> None:
    """``model.call_seconds`` and ``row_seconds`` from answering 1 row and a batch of 64 made of
    ``rows`` (the sample rows), for a model quick enough to be answered on a server's event loop; a
    slower one (its first row over 4 x INLINE_SECONDS), or rows that cannot be timed, stay untimed (inf)."""
    if not isinstance(rows, list) or not rows:
        return
    batch = rows * (64 // len(rows) or 1)
    try:
        if _median_seconds(model, batch[:1], times=1) > 4 * INLINE_SECONDS:
            return
        one, many = _median_seconds(model, batch[:1]), _median_seconds(model, batch)
    except Exception:  # noqa: BLE001 - e.g. a model that takes only batches of its samples' size: left untimed
        return
    model.row_seconds = max(MIN_ROW_SECONDS, (many - one) / max(1, len(batch) - 1))
    model.call_seconds = max(0.0, one - model.row_seconds)


def _median_seconds(model: LoadedModel, rows: list, times: int = 11) -> float:
    """The median time this process takes to answer ``rows`` with ``model`` (request to answer)."""
    body, spent = {'instances': rows}, []
    for _ in range(times):
        started = time.perf_counter()
        model.predict(body)
        spent.append(time.perf_counter() - started)
    return sorted(spent)[len(spent) // 2]


def max_difference(got: Any, expected: Any) -> float:
    """The largest absolute difference between two predictions (nested lists, dicts or scalars);
    inf when their shapes or kinds differ."""
    if isinstance(got, dict) and isinstance(expected, dict):
        if set(got) != set(expected):
            return math.inf
        return max((max_difference(got[k], expected[k]) for k in got), default=0.0)
    if isinstance(got, list) and isinstance(expected, list):
        if len(got) != len(expected):
            return math.inf
        return max((max_difference(a, b) for a, b in zip(got, expected)), default=0.0)
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        return abs(float(got) - float(expected))
    return 0.0 if got == expected else math.inf


def sample_request(features: dict[str, np.ndarray], description: list[dict], rows: int = SAMPLE_ROWS) -> dict:
    """The first ``rows`` examples of ``features`` (the ONNX inputs, dense convention) as a row-form
    request: absent values (``missing``) are left out, as a user would."""
    instances = []
    n = min(rows, len(next(iter(features.values()))))
    for i in range(n):
        row = {}
        for d in description:
            value = np.asarray(features[d['name']]).reshape(-1)[i]
            value = value.item() if hasattr(value, 'item') else value
            missing = d.get('missing')
            if is_missing(value, missing):
                continue
            row[d['name']] = value.decode('utf-8') if isinstance(value, bytes) else value
        instances.append(row)
    return {'instances': instances}
