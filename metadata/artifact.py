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


class Examples(_SplitsMixin, Artifact):
    """gzipped TFRecords of tf.Example under ``Split-<split>/``."""
    PROPERTIES = {'split_names': str, 'span': int, 'version': int}


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
    """``Format-Serving/`` (SavedModel) and ``Format-ONNX/model.onnx``."""
    PROPERTIES = {'onnx_max_abs_diff': float}


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


STANDARD_TYPES: tuple[type[Artifact], ...] = (
    Examples, ExampleStatistics, Schema, ExampleAnomalies, TransformGraph, Model, ModelRun,
    ModelEvaluation, ModelBlessing, InfraBlessing, PushedModel, TransformCache, HyperParameters, TunerResults,
    InferenceResult)
