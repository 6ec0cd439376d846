"""``tfx.types.standard_artifacts``: Sluice's artifact types, which carry TFX's names and on-disk layout;
the value artifacts (String, Integer, Float, Boolean, Bytes, JsonValue) hold a small value in
``<uri>/value`` that ``artifact.value`` reads and writes (sluice.metadata.artifact.ValueArtifact)."""
from __future__ import annotations

from sluice.metadata.artifact import (ExampleAnomalies, Examples, ExampleStatistics, InfraBlessing, Model, ModelBlessing,
                               ModelEvaluation,
                               ModelRun, PushedModel, Schema, TransformGraph)
from sluice.metadata.artifact import Boolean, Bytes, Float, Integer, JsonValue, String  # value artifacts
from sluice.tfx.v1._common import module_getattr

_OFFERED = ['Examples', 'ExampleAnomalies', 'ExampleStatistics', 'InfraBlessing', 'Model', 'ModelBlessing',
            'ModelEvaluation',
            'ModelRun', 'PushedModel', 'Schema', 'TransformGraph',
            'String', 'Integer', 'Float', 'Boolean', 'Bytes', 'JsonValue']
_MISSING = {
    'InferenceResult': 'Sluice has no BulkInferrer (and so no InferenceResult)',
    'TransformCache': 'Sluice has no tf.Transform analyzer cache; Transform reruns only when its inputs or code change',
    'TunerResults': 'Sluice has no Tuner (and so no TunerResults)',
    'HyperParameters': 'Sluice has no Tuner; pass hyperparameters to the Trainer in custom_config={...}',
}
__getattr__ = module_getattr('tfx.types.standard_artifacts', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
