"""Sluice: ML pipelines on ML-Metadata and Apache Beam.

    from sluice import Pipeline, LocalDagRunner, BeamDagRunner, InteractiveContext, Retry
    from sluice.components import CsvExampleGen, Trainer, Pusher
    from sluice.tfx import v1 as tfx

The names below are loaded on first use, so ``import sluice.components`` (or the CLI) does not
load the runners, and nothing here imports TensorFlow.
"""
import importlib as _importlib
import os as _os

# TensorFlow 2.16 ships Keras 3; TFMA, TFT and tf2onnx need Keras 2 (tf-keras). This must be set
# before TensorFlow is first imported; every sluice.* import runs this file first.
_os.environ['TF_USE_LEGACY_KERAS'] = '1'
# TensorFlow's C++ info and CUDA-probe lines are noise on CPU machines; TF_CPP_MIN_LOG_LEVEL=0 shows them.
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from sluice import deferred as _deferred  # noqa: E402 (after the environment above)
# What third-party packages import that Sluice does not use, imported on first use instead (see
# sluice/deferred.py for what each cost): before anything of ML-Metadata, Beam or TensorFlow is imported.
_deferred.stdlib_distutils()
for _name in ('grpc', 'google.cloud.bigquery'):
    _deferred.defer(_name)
del _name

_EXPORTS = {
    'Pipeline': 'sluice.dsl.pipeline', 'PipelineError': 'sluice.dsl.pipeline',
    'load_pipeline': 'sluice.dsl.pipeline', 'Retry': 'sluice.components.retry',
    'LatestSpans': 'sluice.components.resolvers',
    'LocalDagRunner': 'sluice.runners.local', 'BeamDagRunner': 'sluice.runners.beam',
    'InteractiveContext': 'sluice.runners.interactive',
    'NodeResult': 'sluice.orchestration.launcher', 'launch': 'sluice.orchestration.launcher',
    'RunResult': 'sluice.orchestration.run',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
