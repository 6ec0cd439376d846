"""One served model: an ONNX Runtime session on a pushed version (or a Model artifact), its inputs as
raw features, and the translation between request bodies and the session's tensors (loading one and its
warm-up: ``loading``).

Inputs follow the ONNX export's convention (``sluice.components.onnx_export``): one input per raw
feature, as in the CSV, one value per example (a tensor of shape [batch, 1], or [batch] when the
model's serving_default took such dense inputs); a feature that may be absent (a VarLenFeature) can
be left out of a row or given as ``null``. Nothing here imports TensorFlow.

Request forms (TF Serving's REST API and the Open Inference Protocol):

* rows: ``{"instances": [{"feature": value, ...}, ...]}`` -> ``{"predictions": [...]}``
* columns: ``{"inputs": {"feature": [values], ...}}`` -> ``{"outputs": ...}``
* v2: ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}`` -> ``{"outputs": [...]}``

A value may be given bare or as a one-element list (``[3.5]``); strings may be given as TF Serving's
``{"b64": "..."}``. With one model output, a prediction is that output's row; with several, a dict.
"""
from __future__ import annotations

import base64
import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np


_NP = {'float32': np.float32, 'int64': np.int64, 'string': object}
_TYPE_WORDS = {'float32': 'float32 (a number)', 'int64': 'int64 (a whole number)', 'string': 'string'}
_V2_TYPES = {'float32': 'FP32', 'int64': 'INT64', 'string': 'BYTES'}
_V2_ACCEPTS = {'float32': {'FP32', 'FP64', 'FP16'}, 'int64': {'INT64', 'INT32', 'INT16', 'INT8', 'UINT8',
                                                              'UINT16', 'UINT32'}, 'string': {'BYTES'}}
_TF_TYPES = {'float32': 'DT_FLOAT', 'int64': 'DT_INT64', 'string': 'DT_STRING', 'float64': 'DT_DOUBLE'}
_ORT_TYPES = {'tensor(float)': 'float32', 'tensor(int64)': 'int64', 'tensor(string)': 'string',
              'tensor(double)': 'float64'}


class RequestError(ValueError):
    """A request the model cannot answer; the message names the feature, the type it takes and what
    arrived. ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class LoadError(RuntimeError):
    """A model that cannot be served: the message says which, why, and what to do."""


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str  # float32 | int64 | string
    required: bool
    missing: Any  # the value standing for an absent one (VarLenFeature), else None
    rank: int = 2  # of the ONNX input: [batch, 1] (2), or [batch] (1, a dense signature's rank-1 input)

    @property
    def shape(self) -> list[int]:
        return [-1, 1] if self.rank == 2 else [-1]

    def describe(self) -> str:
        return f"{_TYPE_WORDS[self.dtype]}{'' if self.required else ', may be left out'}"


def _features_of(session) -> list[Feature]:
    """The inputs, from the export's self-description (``sluice.inputs``), else from the session."""
    described = session.get_modelmeta().custom_metadata_map.get('sluice.inputs')
    by_name = {d['name']: d for d in json.loads(described)} if described else {}
    features = []
    for inp in session.get_inputs():
        dtype = _ORT_TYPES.get(inp.type)
        if dtype not in _NP:
            raise LoadError(f'input {inp.name!r} is a {inp.type}; sluice serve takes float, int64 and string inputs')
        d = by_name.get(inp.name, {})
        missing = d.get('missing')
        if missing is not None:
            missing = {'float32': float, 'int64': int, 'string': str}[dtype](missing)
        rank = 1 if len(inp.shape or [None, 1]) == 1 else 2
        features.append(Feature(inp.name, dtype, missing is None, missing, rank))
    return features


class _InFlight:
    """How many requests this process's server is answering (counted on its event loop, from a request's
    arrival to its response; read in worker threads, where a count a moment old does no harm), and
    when one last arrived while another was being answered."""
    requests = 0
    overlapped = 0.0  # time.monotonic()

    def arrived(self) -> None:
        self.requests += 1
        if self.requests > 1:
            self.overlapped = time.monotonic()

    def alone(self) -> bool:
        """Whether the request being read is the only one, and none has overlapped another for
        ALONE_SECONDS: a client that sends one request at a time, whom no other is waiting behind."""
        return self.requests <= 1 and time.monotonic() - self.overlapped > ALONE_SECONDS


ALONE_SECONDS = 1.0
IN_FLIGHT = _InFlight()


@dataclass
class LoadedModel:
    """An ONNX Runtime session on one model, ready to answer."""
    version: int
    fingerprint: str
    path: str
    session: Any
    features: list[Feature]
    outputs: list[tuple[str, str]]  # (name, dtype)
    output_shapes: dict[str, list[int]] = field(default_factory=dict)  # -1 where unknown
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)
    # What answering takes here, measured at warm-up: per request and per row (see sluice.serving.app)
    call_seconds: float = math.inf
    row_seconds: float = math.inf
    # A second session with onnxruntime's default threads (one per core), for a request answered while
    # no other is (see IN_FLIGHT): it may use every core. ``session`` runs with one thread, for requests
    # answered at once.
    session_alone: Any = None

    def seconds_for(self, rows: int) -> float:
        """About how long answering ``rows`` rows takes in this process."""
        return self.call_seconds + rows * self.row_seconds

    @property
    def missing(self) -> dict[str, Any]:
        return {f.name: f.missing for f in self.features}

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [name for name, _ in self.outputs]
        alone = self.session_alone is not None and IN_FLIGHT.requests <= 1
        return dict(zip(names, (self.session_alone if alone else self.session).run(names, feed)))

    # -- TF Serving's REST API -------------------------------------------------------------------
    def predict(self, body: Any) -> tuple[dict, dict[str, np.ndarray]]:
        """A ``:predict`` request body (rows or columns) -> its response body (without the version)
        and the inputs it was given (for the request log)."""
        if not isinstance(body, dict):
            raise RequestError('the request body must be a JSON object with "instances" (rows) or "inputs" '
                               f'(columns); got {_kind(body)}')
        if 'instances' in body and 'inputs' in body:
            raise RequestError('give either "instances" (rows) or "inputs" (columns), not both')
        if 'instances' in body:
            feed, n, ignored = self.rows_feed(body['instances'])
            answer = {'predictions': _rows_of(self.run(feed), n)}
        elif 'inputs' in body:
            feed, n, ignored = self.columns_feed(body['inputs'])
            answer = {'outputs': _columns_of(self.run(feed))}
        else:
            raise RequestError('the request body has neither "instances" (rows) nor "inputs" (columns); '
                               f'keys: {sorted(body)}')
        if ignored:
            answer['ignored_features'] = ignored
        return answer, feed

    def rows_feed(self, instances: Any) -> tuple[dict[str, np.ndarray], int, list[str]]:
        if not isinstance(instances, list) or not instances:
            raise RequestError(f'"instances" must be a non-empty list of rows, one object per example; got '
                               f'{_kind(instances)}')
        for i, row in enumerate(instances):
            if not isinstance(row, dict):
                raise RequestError(f'instance {i} must be an object of raw features ({self._expects()}); got '
                                   f'{_kind(row)}')
        names = {f.name for f in self.features}
        extra = set().union(*instances) - names
        columns = {}
        for f in self.features:
            name = f.name
            columns[name] = _column(f, [row.get(name) for row in instances], 'instance')
        return self._feed(columns), len(instances), sorted(extra)

    def columns_feed(self, inputs: Any) -> tuple[dict[str, np.ndarray], int, list[str]]:
        if not isinstance(inputs, dict):
            raise RequestError(f'"inputs" must be an object of feature columns ({self._expects()}); got '
                               f'{_kind(inputs)}')
        sizes = {name: len(v) for name, v in inputs.items() if isinstance(v, list)}
        if not sizes or len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise RequestError('"inputs" must map each feature to a list of values, all of one non-zero '
                               f'length; got lengths {sizes or "none"}')
        n = next(iter(sizes.values()))
        columns = {}
        for f in self.features:
            given = inputs.get(f.name)
            if given is not None and not isinstance(given, list):
                raise RequestError(f'feature "{f.name}": expected a list of {_TYPE_WORDS[f.dtype]} values, got '
                                   f'{_kind(given)}')
            columns[f.name] = _column(f, given if given is not None else [None] * n, 'row')
        return self._feed(columns), n, sorted(k for k in inputs if k not in columns)

    # -- the Open Inference Protocol (KServe v2) --------------------------------------------------
    def infer(self, body: Any) -> tuple[dict, dict[str, np.ndarray]]:
        if not isinstance(body, dict) or not isinstance(body.get('inputs'), list) or not body['inputs']:
            raise RequestError('the request body must be a JSON object with "inputs": a list of '
                               '{"name", "shape", "datatype", "data"}, one per feature')
        given = {}
        for i, tensor in enumerate(body['inputs']):
            if not isinstance(tensor, dict) or 'name' not in tensor or 'data' not in tensor:
                raise RequestError(f'inputs[{i}] must be an object with "name", "shape", "datatype" and "data"')
            given[tensor['name']] = tensor
        sizes = set()
        columns = {}
        for f in self.features:
            tensor = given.get(f.name)
            if tensor is None:
                if f.required:
                    raise RequestError(f'no input "{f.name}" ({_V2_TYPES[f.dtype]}, shape {f.shape}): the model '
                                       f'takes {self._expects()}')
                continue
            if tensor.get('datatype') not in _V2_ACCEPTS[f.dtype]:
                raise RequestError(f'input "{f.name}": expected datatype {_V2_TYPES[f.dtype]}, got '
                                   f'{tensor.get("datatype")!r}')
            data = list(_flatten(tensor['data']))
            shape = tensor.get('shape')
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                      for d in shape) or math.prod(shape) != len(data):
                raise RequestError(f'input "{f.name}": shape {json.dumps(shape)} does not hold the {len(data)} values '
                                   'given (a list of whole numbers, e.g. [n, 1])')
            sizes.add(len(data))
            columns[f.name] = _column(f, data, 'value')
        if len(sizes) != 1 or 0 in sizes:
            raise RequestError(f'every input must hold one value per example, the same number; got {sorted(sizes)}')
        n = sizes.pop()
        for f in self.features:
            columns.setdefault(f.name, [f.missing] * n)
        feed = self._feed(columns)
        outputs = self.run(feed)
        answer = {'outputs': [{'name': name, 'shape': list(value.shape), 'datatype': _v2_type(value),
                               'data': _nested(value.reshape(-1))} for name, value in outputs.items()]}
        ignored = sorted(set(given) - {f.name for f in self.features})
        if ignored:
            answer['ignored_features'] = ignored
        return answer, feed

    # -- descriptions ------------------------------------------------------------------------------
    def signature(self) -> dict:
        """``serving_default`` in the shape TF Serving's metadata endpoint gives it: the raw features."""
        def spec(name, dtype, shape):
            return {'dtype': _TF_TYPES.get(dtype, 'DT_INVALID'), 'name': name,
                    'tensor_shape': {'dim': [{'size': str(d), 'name': ''} for d in shape], 'unknown_rank': False}}
        return {'inputs': {f.name: spec(f.name, f.dtype, f.shape) for f in self.features},
                'outputs': {name: spec(name, dtype, self.output_shapes.get(name, [-1, -1]))
                            for name, dtype in self.outputs},
                'method_name': 'tensorflow/serving/predict'}

    def v2_tensors(self) -> dict:
        return {'inputs': [{'name': f.name, 'datatype': _V2_TYPES[f.dtype], 'shape': f.shape}
                           for f in self.features],
                'outputs': [{'name': name, 'datatype': _V2_TYPES.get(dtype, 'FP64'),
                             'shape': self.output_shapes.get(name, [-1, -1])} for name, dtype in self.outputs]}

    def _expects(self) -> str:
        return ', '.join(f'"{f.name}": {f.describe()}' for f in self.features)

    def _feed(self, columns: dict[str, list]) -> dict[str, np.ndarray]:
        """The session's inputs: the numeric features of each type made into one array at once (and
        checked for float32 overflow at once), each feature a row of it; one by one when that fails,
        so that the error names the feature."""
        feed = {}
        for dtype, features in self._by_dtype:
            block = None
            if dtype != 'string' and len(features) > 1:
                try:  # a float32 overflow becomes inf (found below, and named)
                    block = np.array([columns[f.name] for f in features], dtype=_NP[dtype])
                except _OVERFLOW:
                    pass
            if block is None or block.ndim != 2 or (dtype == 'float32' and np.isinf(block).any()):
                for f in features:
                    feed[f.name] = self._array(f, columns[f.name])
            else:
                for f, row in zip(features, block):
                    feed[f.name] = row.reshape(f.shape)
        return feed

    @functools.cached_property
    def _by_dtype(self) -> list[tuple[str, list[Feature]]]:
        groups: dict[str, list[Feature]] = {}
        for f in self.features:
            groups.setdefault(f.dtype, []).append(f)
        return list(groups.items())

    @staticmethod
    def _array(f: Feature, values: list) -> np.ndarray:
        try:
            array = np.array(values, dtype=_NP[f.dtype])
        except _OVERFLOW:  # RuntimeWarning: numpy's float32 overflow, where warnings are errors
            if f.dtype != 'float32':
                raise RequestError(f'feature "{f.name}": a value is outside int64\'s range') from None
            array = None
        if f.dtype == 'float32' and (array is None or np.isinf(array).any()):
            i = _outside_float32(values)
            text = repr(values[i]) if len(repr(values[i])) <= 40 else repr(values[i])[:37] + '...'
            raise RequestError(f'feature "{f.name}" of row {i}: {text} is outside float32\'s range')
        return array.reshape(f.shape)


# A float32 overflow when request values become arrays: numpy makes it inf with a RuntimeWarning (an
# exception where warnings are errors). The inf is found and named; the warning says nothing more.
warnings.filterwarnings('ignore', message='overflow encountered in cast', category=RuntimeWarning,
                        module=__name__.replace('.', r'\.'))
_OVERFLOW = (OverflowError, RuntimeWarning)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PLAIN = {'float32': {float, int}, 'int64': {int}, 'string': {str}}


def _outside_float32(values: list) -> int:
    """The first row whose number float32 cannot hold (a missing value's NaN can be held)."""
    for i, value in enumerate(values):
        try:
            if abs(float(value)) > _FLOAT32_MAX:
                return i
        except OverflowError:  # an int too large for a float
            return i
    return 0
_NONE = type(None)


def _column(f: Feature, values: list, where: str) -> list:
    """One feature's values, checked: at once when each is a plain value of the feature's type or,
    for a feature that may be absent, null (the common cases), else one by one, so that an error names
    the row and what arrived."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN[f.dtype]:
        return values
    if not f.required and kinds - {_NONE} <= _PLAIN[f.dtype]:
        return [f.missing if v is None else v for v in values]
    return [_value(f, v, f'{where} {i}') for i, v in enumerate(values)]


def _value(f: Feature, value: Any, where: str) -> Any:
    """One raw feature value, checked against what the model takes."""
    if isinstance(value, list):
        if len(value) > 1:
            raise RequestError(f'feature "{f.name}" of {where}: expected one {_TYPE_WORDS[f.dtype]} value, got a '
                               f'list of {len(value)}')
        value = value[0] if value else None
    if value is None:
        if f.required:
            raise RequestError(f'feature "{f.name}" of {where} is missing: expected {_TYPE_WORDS[f.dtype]} (it '
                               'is required)')
        return f.missing
    if f.dtype == 'string':
        if isinstance(value, dict) and set(value) == {'b64'}:
            try:
                return base64.b64decode(value['b64'], validate=True).decode('utf-8')
            except (ValueError, TypeError) as e:
                raise RequestError(f'feature "{f.name}" of {where}: "b64" is not base64 of UTF-8 text ({e})')
        if isinstance(value, str):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if f.dtype == 'float32':
            return float(value)
        if float(value).is_integer():
            return int(value)
    raise RequestError(f'feature "{f.name}" of {where}: expected {_TYPE_WORDS[f.dtype]}, got {_kind(value)}')


def _kind(value: Any) -> str:
    text = json.dumps(value)[:60] if not isinstance(value, (bytes, bytearray)) else repr(value[:60])
    name = {bool: 'a boolean', str: 'a string', int: 'a number', float: 'a number', list: 'a list',
            dict: 'an object', type(None): 'null'}.get(type(value), type(value).__name__)
    return f'{text} ({name})' if name != 'null' else 'null'


def _flatten(data: Any):
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _plain(array: np.ndarray) -> list:
    if array.dtype == object or array.dtype.kind in 'SU':
        return [v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v) for v in array.tolist()]
    return array.tolist()


def _v2_type(array: np.ndarray) -> str:
    return {'f': 'FP32' if array.dtype == np.float32 else 'FP64', 'i': 'INT64', 'b': 'BOOL'}.get(
        array.dtype.kind, 'BYTES')


def _rows_of(outputs: dict[str, np.ndarray], n: int) -> list:
    """One prediction per row: the row of the output, or a dict of every output's row."""
    listed = {name: _nested(value) for name, value in outputs.items()}
    if len(listed) == 1:
        [rows] = listed.values()
        return rows[:n]
    return [dict(zip(listed, row)) for row in zip(*listed.values())]


def _columns_of(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        [value] = outputs.values()
        return _nested(value)
    return {name: _nested(value) for name, value in outputs.items()}


def _nested(value: np.ndarray) -> list:
    """The array as nested lists of plain values (str for strings; null for a NaN or an infinity,
    which JSON cannot carry)."""
    if value.dtype.kind == 'f' and not np.isfinite(value).all():
        return np.where(np.isfinite(value), value.astype(object), None).tolist()
    if value.dtype != object and value.dtype.kind not in 'SU':
        return value.tolist()
    return np.asarray(_plain(value.reshape(-1)), dtype=object).reshape(value.shape).tolist()


def is_missing(value: Any, missing: Any) -> bool:
    """Whether ``value`` stands for an absent value of a feature whose stand-in is ``missing`` (None:
    the feature is required, nothing stands for absent)."""
    return missing is not None and (value == missing or (isinstance(value, float) and math.isnan(value)))
