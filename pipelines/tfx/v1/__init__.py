"""TFX's public API (``from tfx import v1 as tfx``) mapped onto Sluice's own components and runners.

    from sluice.tfx import v1 as tfx      # instead of: from tfx import v1 as tfx

    gen = tfx.components.CsvExampleGen(input_base='data')
    trainer = tfx.components.Trainer(module_file='module.py', examples=gen.outputs['examples'],
                                     train_args=tfx.proto.TrainArgs(num_steps=100),
                                     eval_args=tfx.proto.EvalArgs(num_steps=5))
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], push_destination=tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(base_directory='serving')))
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name='penguin', pipeline_root='runs/penguin', components=[gen, trainer, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config('m.db')))

Every constructor returns the Sluice node a Sluice pipeline file would declare (same node ids,
execution types, parameters, cache keys), so a TFX-style pipeline records what the same pipeline
written for Sluice records, and ``sluice run``/``resume``/``show`` work on it. What Sluice does not
offer fails when it is imported or constructed, with a message naming it and the Sluice way
(``sluice.tfx.v1.NotOffered``). Importing this is cheap: no TensorFlow, TFDV or TFMA.
"""
from __future__ import annotations

from sluice.tfx.v1._common import NotOffered, module_getattr
from sluice.tfx.v1 import proto  # noqa: I001  (proto first: components use it)
from sluice.tfx.v1 import dsl, types, utils
from sluice.tfx.v1 import components, orchestration

__version__ = '1.x-sluice'  # TFX's v1 API, as Sluice offers it

_OFFERED = ['components', 'dsl', 'orchestration', 'proto', 'types', 'utils', 'NotOffered', '__version__']
_MISSING = {
    'extensions': 'Sluice runs on this machine and Beam (no Google Cloud extensions); see README "Beyond one machine"',
    'testing': 'test Sluice components with pytest and InteractiveContext (pipelines.InteractiveContext)',
}
__getattr__ = module_getattr('tfx', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
