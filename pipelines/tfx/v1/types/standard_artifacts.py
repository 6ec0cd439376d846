"""``tfx.types.standard_artifacts``: Sluice's artifact types, which carry TFX's names and on-disk layout."""
from __future__ import annotations

from sluice.metadata.artifact import (ExampleAnomalies, Examples, ExampleStatistics, InfraBlessing, Model, ModelBlessing,
                               ModelEvaluation,
                               ModelRun, PushedModel, Schema, TransformGraph)
from sluice.tfx.v1._common import module_getattr

_OFFERED = ['Examples', 'ExampleAnomalies', 'ExampleStatistics', 'InfraBlessing', 'Model', 'ModelBlessing',
            'ModelEvaluation',
            'ModelRun', 'PushedModel', 'Schema', 'TransformGraph']
_VALUE = ('Sluice passes values as component parameters, not as artifacts; declare your own artifact type '
          '(class MyType(components.Artifact)) for a custom component')
_MISSING = {
    'InferenceResult': 'Sluice has no BulkInferrer (and so no InferenceResult)',
    'TransformCache': 'Sluice has no tf.Transform analyzer cache; Transform reruns only when its inputs or code change',
    'TunerResults': 'Sluice has no Tuner (and so no TunerResults)',
    'HyperParameters': 'Sluice has no Tuner; pass hyperparameters to the Trainer in custom_config={...}',
    **{name: _VALUE for name in ('Bytes', 'Float', 'Integer', 'String', 'Boolean', 'JsonValue')},
}
__getattr__ = module_getattr('tfx.types.standard_artifacts', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
