"""Artifacts: typed handles on files under a URI, recorded in ML-Metadata.

Each artifact type is a subclass of :class:`Artifact` whose class name is the MLMD type name and
whose ``PROPERTIES`` declare the typed MLMD properties. Type names and properties follow TFX so
that a store written by Sluice reads naturally to TFX tools.

    >>> examples = Examples(uri='/tmp/examples', split_names='["train", "eval"]')
    >>> examples.split_names
    ['train', 'eval']
"""
from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from sluice.metadata import storage

# Every artifact carries the fingerprint the cache key is built from.
COMMON_PROPERTIES: dict[str, type] = {'fingerprint': str}


class Artifact:
    """A typed handle on the files under ``uri`` plus MLMD properties.

    ``properties`` hold the declared typed properties of the type; ``custom_properties`` hold
    anything else an executor wants to record (ints, floats or strings).
    """

    PROPERTIES: ClassVar[dict[str, type]] = {}
    _registry: ClassVar[dict[str, type[Artifact]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, kind in cls.PROPERTIES.items():
            if kind not in (int, float, str):
                raise TypeError(f'{cls.__name__}.PROPERTIES[{name!r}] must be int, float or str; got {kind!r}.')
        known = Artifact._registry.get(cls.__name__)
        if known is not None and 'PROPERTIES' not in cls.__dict__ and \
                (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__):
            # cloudpickle rebuilding a class pickled by value first makes an empty skeleton (its attributes
            # come later), and drops it for the class already in this process: keep the one we have.
            return
        Artifact._registry[cls.__name__] = cls

    def __init__(self, uri: str = '', **properties: Any) -> None:
        self.id: int | None = None
        self.external_id = ''  # MLMD's external_id, for artifacts that stand for files outside Sluice
        self.uri = uri
        self.state = 'PENDING'
        self.properties: dict[str, Any] = {}
        self.custom_properties: dict[str, Any] = {}
        for name, value in properties.items():
            self.set(name, value)

    @property
    def stored_uri(self) -> str:
        """Where the files are kept: ``uri``, unless ``uri`` is this machine's copy of an object store's
        files (an executor's input when the pipeline root is remote), then that store's URL."""
        return getattr(self, '_stored_uri', None) or self.uri

    @stored_uri.setter
    def stored_uri(self, value: str) -> None:
        self._stored_uri = value

    # -- identity -----------------------------------------------------------------------------
    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    @classmethod
    def all_properties(cls) -> dict[str, type]:
        return {**COMMON_PROPERTIES, **cls.PROPERTIES}

    @staticmethod
    def type_class(name: str) -> type[Artifact]:
        """The Artifact subclass registered under an MLMD type name (a generic one if unknown)."""
        cls = Artifact._registry.get(name)
        if cls is None:
            cls = type(name, (Artifact,), {})
        return cls

    # -- properties ---------------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Set a declared property (checked and converted) or else a custom property."""
        declared = self.all_properties()
        if name in declared:
            kind = declared[name]
            if kind is str and isinstance(value, (list, tuple)):
                value = json.dumps(list(value))
            try:
                self.properties[name] = kind(value)
            except (TypeError, ValueError):
                raise TypeError(f'{self.type_name()} property {name!r} expects {kind.__name__}; got {value!r}.') from None
        else:
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, float, str)):
                value = json.dumps(value, sort_keys=True)
            self.custom_properties[name] = value

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.properties:
            return self.properties[name]
        return self.custom_properties.get(name, default)

    @property
    def fingerprint(self) -> str:
        return self.properties.get('fingerprint', '')

    def exists(self) -> bool:
        """Whether the artifact's files are still on disk (or in its object store)."""
        return bool(self.uri) and storage.exists(self.uri)

    def __repr__(self) -> str:
        ident = f'#{self.id} ' if self.id is not None else ''
        return f'{self.type_name()}({ident}{self.uri!r})'


class _SplitsMixin:
    """Artifacts with one sub-directory per split (``Split-<name>``)."""

    @property
    def split_names(self) -> list[str]:
        raw = self.properties.get('split_names')  # type: ignore[attr-defined]
        return json.loads(raw) if raw else []

    def split_uri(self, split: str) -> str:
        return storage.join(self.uri, f'Split-{split}')  # type: ignore[attr-defined]

    def splits_without(self, exclude: list[str]) -> list[str]:
        """The split names but ``exclude`` (TFX's ``exclude_splits``; a name the artifact lacks is
        ignored, as in TFX); ValueError when none is left."""
        kept = [s for s in self.split_names if s not in exclude]
        if not kept:
            raise ValueError(f'exclude_splits={list(exclude)} leaves none of the splits of {self!r} '
                             f'({", ".join(self.split_names) or "none"}); exclude fewer.')
        return kept


class Examples(_SplitsMixin, Artifact):
    """gzipped TFRecords of tf.Example under ``Split-<split>/``."""
    PROPERTIES = {'split_names': str, 'span': int, 'version': int}


def row_counts(artifact: Artifact) -> dict[str, int]:
    """The rows per split an ExampleGen recorded on Examples (``row_counts``, a JSON object); {} if none."""
    counts = artifact.get('row_counts')
    return json.loads(counts) if isinstance(counts, str) and counts else dict(counts or {})


class ExampleStatistics(_SplitsMixin, Artifact):
    """TFDV statistics, ``Split-<split>/FeatureStats.pb``."""
    PROPERTIES = {'split_names': str}


class Schema(Artifact):
    """A tensorflow_metadata schema, ``schema.pbtxt``."""


class ExampleAnomalies(_SplitsMixin, Artifact):
    """TFDV anomalies per split, ``Split-<split>/SchemaDiff.pb``."""
    PROPERTIES = {'split_names': str, 'has_anomalies': int}


class TransformGraph(Artifact):
    """A tf.Transform output directory."""


class Model(Artifact):
    """``Format-Serving/``: a SavedModel. (Models trained before the ONNX export was a node of its own
    also hold ``Format-ONNX/model.onnx``, and their ``onnx_max_abs_diff``.)"""
    PROPERTIES = {'onnx_max_abs_diff': float}


class OnnxModel(Artifact):
    """The ONNX copy of Model ``model_id`` (the OnnxExporter's): ``model.onnx`` and ``serving_samples.json``,
    checked against the SavedModel (``onnx_max_abs_diff``); or no files and ``onnx_skipped`` saying why."""
    PROPERTIES = {'model_id': int, 'onnx_max_abs_diff': float}


class ModelRun(Artifact):
    """TensorBoard logs of a training run."""


class ModelEvaluation(Artifact):
    """TFMA output for the candidate and the baseline model. The baseline is the model in production
    at ``push_destination``: version ``baseline_version`` with content ``baseline_fingerprint``
    (both empty when there was none)."""
    PROPERTIES = {'baseline_model_id': int, 'push_destination': str, 'baseline_version': str,
                  'baseline_fingerprint': str}


class ModelBlessing(Artifact):
    """``BLESSED`` or ``NOT_BLESSED`` plus ``reasons.json``, bound to the candidate and to the production
    version it was measured against (``push_destination``, ``baseline_version``, ``baseline_fingerprint``)."""
    PROPERTIES = {'blessed': int, 'current_model_id': int, 'baseline_model_id': int, 'push_destination': str,
                  'baseline_version': str, 'baseline_fingerprint': str}


class InfraBlessing(Artifact):
    """``INFRA_BLESSED`` or ``INFRA_NOT_BLESSED`` plus ``infra_validation.json``: whether the serving code
    loaded the candidate ``current_model_id`` and answered in time (the InfraValidator), and why."""
    PROPERTIES = {'blessed': int, 'current_model_id': int}


class PushedModel(Artifact):
    """A copy of what was pushed; ``pushed_fingerprint`` is the content fingerprint of the pushed files."""
    PROPERTIES = {'pushed': int, 'pushed_destination': str, 'pushed_version': str, 'pushed_fingerprint': str}


class TransformCache(Artifact):
    """tf.Transform's analyzer cache: what the analyzers computed per input dataset (span), so that a
    later Transform over some of the same spans skips re-analysing them."""


class HyperParameters(Artifact):
    """The best hyperparameters a Tuner found: ``best_hyperparameters.txt`` (KerasTuner's config, JSON)."""


class TunerResults(Artifact):
    """A Tuner's trials and their scores: ``tuner_results.json``."""


class InferenceResult(Artifact):
    """A BulkInferrer's predictions: ``prediction_logs-*.gz``, TFRecords of TF Serving's PredictionLog."""


class ExamplesDiff(Artifact):
    """An ExampleDiff's skew between two sets of examples: ``SplitPair-<test>_<baseline>/`` per pair of
    splits (TFDV's skew records and ``skew.json``); ``skewed_features`` (a JSON list) the features with
    skew in any pair."""
    PROPERTIES = {'split_pairs': str, 'skewed_features': str}



# -- value artifacts (TFX's ValueArtifact and its standard types) ---------------------------------
VALUE_FILE = 'value'  # the payload's file under the artifact's uri (TFX's <node>/<key>/<execution>/value)
VALUE_PROPERTY = 'value'  # the value again, as a custom property, when it is small enough
NULL_PROPERTY = '__is_null__'  # 1 when the value is None (an empty payload), as TFX records it
PROPERTY_MAX = 1024  # the longest text (UTF-8 bytes) also recorded as the ``value`` property


class ValueArtifact(Artifact):
    """A small value (TFX's ValueArtifact): ``artifact.value`` reads it, ``artifact.value = v`` writes it.

    The payload is the file ``<uri>/value``, encoded as TFX encodes it (``encode``/``decode`` of each
    type); ``uri`` is the artifact's directory, as for every Sluice artifact. Writing also records the
    value as the custom property ``value`` when it fits in one (a number, a boolean as 1/0, text up to
    PROPERTY_MAX bytes), so that ``sluice show`` and a ``Cond`` predicate can read it from the store;
    ``None`` is an empty payload with ``__is_null__ = 1``. A wrong type is a TypeError."""

    def __init__(self, uri: str = '', **properties: Any) -> None:
        super().__init__(uri, **properties)
        self._value: Any = None
        self._has_value = False

    @property
    def value_uri(self) -> str:
        """The payload file (the uri itself where it is a file, as in a store TFX wrote)."""
        if self.uri and self.uri.rstrip('/').endswith('/' + VALUE_FILE) and storage.isfile(self.uri):
            return self.uri
        return storage.join(self.uri, VALUE_FILE)

    @property
    def value(self) -> Any:
        if not self._has_value:
            self._value, self._has_value = self._read(), True
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        if value is not None:
            value = self.check(value)
        storage.write_bytes(self.value_uri, b'' if value is None else self.encode(value))
        self.set(NULL_PROPERTY, int(value is None))
        small = None if value is None else self.as_property(value)
        if small is None:
            self.custom_properties.pop(VALUE_PROPERTY, None)
        else:
            self.set(VALUE_PROPERTY, small)
        self._value, self._has_value = value, True

    def _read(self) -> Any:
        if self.get(NULL_PROPERTY):
            return None
        path = self.value_uri
        if self.uri and storage.exists(path):
            return self.decode(storage.read_bytes(path))
        if VALUE_PROPERTY in self.custom_properties:  # the files are gone (gc) or elsewhere: the store has it
            return self.from_property(self.custom_properties[VALUE_PROPERTY])
        raise ValueError(f'{self!r} holds no value: {path} does not exist (nothing set its .value).')

    def _wrong(self, what: str, value: Any) -> TypeError:
        return TypeError(f'{self.type_name()} holds {what}; got {type(value).__name__} {value!r:.100}.')

    # What each type defines: the check (and conversion), TFX's encoding, and the property form.
    def check(self, value: Any) -> Any:
        return value

    def encode(self, value: Any) -> bytes:  # abstract: each value type (String, Integer, ...) defines it
        raise NotImplementedError(f'{type(self).__name__} is a ValueArtifact without an encoding: define encode()')

    def decode(self, data: bytes) -> Any:  # abstract, as encode
        raise NotImplementedError(f'{type(self).__name__} is a ValueArtifact without an encoding: define decode()')

    def as_property(self, value: Any) -> int | float | str | None:
        return None

    def from_property(self, recorded: Any) -> Any:
        return recorded


class String(ValueArtifact):
    """A str, UTF-8."""

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._wrong('a str', value)
        return value

    def encode(self, value: str) -> bytes:
        return value.encode('utf-8')

    def decode(self, data: bytes) -> str:
        return data.decode('utf-8')

    def as_property(self, value: str) -> str | None:
        return value if len(value.encode('utf-8')) <= PROPERTY_MAX else None


class Integer(ValueArtifact):
    """An int, as decimal digits."""

    def check(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong('an int', value)
        return value

    def encode(self, value: int) -> bytes:
        return str(value).encode('utf-8')

    def decode(self, data: bytes) -> int:
        return int(data)

    def as_property(self, value: int) -> int | None:
        return value if -2**63 <= value < 2**63 else None  # what an MLMD int holds


class Float(ValueArtifact):
    """A float, as Python writes it (``Infinity``, ``-Infinity`` and ``NaN`` for the special values)."""

    def check(self, value: Any) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._wrong('a float', value)
        return float(value)

    def encode(self, value: float) -> bytes:
        if math.isnan(value):
            return b'NaN'
        if math.isinf(value):
            return b'Infinity' if value > 0 else b'-Infinity'
        return repr(value).encode('utf-8')

    def decode(self, data: bytes) -> float:
        return float(data)

    def as_property(self, value: float) -> float | None:
        return value if math.isfinite(value) else None


class Boolean(ValueArtifact):
    """A bool, ``1`` or ``0``."""

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._wrong('a bool', value)
        return value

    def encode(self, value: bool) -> bytes:
        return b'1' if value else b'0'

    def decode(self, data: bytes) -> bool:
        return int(data) != 0

    def as_property(self, value: bool) -> int:
        return int(value)

    def from_property(self, recorded: Any) -> bool:
        return bool(recorded)


class Bytes(ValueArtifact):
    """Raw bytes (never recorded as a property)."""

    def check(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise self._wrong('bytes', value)
        return bytes(value)

    def encode(self, value: bytes) -> bytes:
        return value

    def decode(self, data: bytes) -> bytes:
        return data


class JsonValue(ValueArtifact):
    """A JSON value (dicts with str keys, lists, numbers, strings, booleans, None), as JSON text."""

    def check(self, value: Any) -> Any:
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise self._wrong('a JSON value', value) from None
        return value

    def encode(self, value: Any) -> bytes:
        return json.dumps(value).encode('utf-8')

    def decode(self, data: bytes) -> Any:
        return json.loads(data)

    def as_property(self, value: Any) -> str | None:
        text = json.dumps(value)
        return text if len(text.encode('utf-8')) <= PROPERTY_MAX else None

    def from_property(self, recorded: Any) -> Any:
        return json.loads(recorded)


VALUE_TYPES: tuple[type[ValueArtifact], ...] = (String, Integer, Float, Boolean, Bytes, JsonValue)

STANDARD_TYPES: tuple[type[Artifact], ...] = (
    Examples, ExampleStatistics, Schema, ExampleAnomalies, TransformGraph, Model, OnnxModel, ModelRun,
    ModelEvaluation, ModelBlessing, InfraBlessing, PushedModel, TransformCache, HyperParameters, TunerResults,
    InferenceResult, ExamplesDiff)
