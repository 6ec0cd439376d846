"""``tfx.types.standard_artifacts``: Sluice's artifact types, which carry TFX's names and on-disk layout;
the value artifacts (String, Integer, Float, Boolean, Bytes, JsonValue) hold a small value in
``<uri>/value`` that ``artifact.value`` reads and writes (sluice.metadata.artifact.ValueArtifact)."""
from __future__ import annotations

from sluice.metadata.artifact import (ExampleAnomalies, Examples, ExamplesDiff, ExampleStatistics, HyperParameters,
                                     InferenceResult,
                                     InfraBlessing, Model, ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                                     TransformCache, TransformGraph, TunerResults)
from sluice.metadata.artifact import Boolean, Bytes, Float, Integer, JsonValue, String  # value artifacts
from sluice.tfx.v1._common import module_getattr

_OFFERED = ['Examples', 'ExampleAnomalies', 'ExampleStatistics', 'InfraBlessing', 'Model', 'ModelBlessing',
            'ModelEvaluation',
            'ModelRun', 'PushedModel', 'Schema', 'TransformGraph', 'TransformCache', 'HyperParameters', 'TunerResults',
            'InferenceResult', 'ExamplesDiff', 'String', 'Integer', 'Float', 'Boolean', 'Bytes', 'JsonValue']
_MISSING: dict[str, str] = {}
__getattr__ = module_getattr('tfx.types.standard_artifacts', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
