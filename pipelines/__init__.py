"""Sluice pipelines: the Pipeline DSL and the runners.

    from pipelines import Pipeline, LocalDagRunner, BeamDagRunner
"""
import os as _os

# TensorFlow 2.16 ships Keras 3; TFMA, TFT and tf2onnx need Keras 2 (tf-keras). This must be set
# before TensorFlow is first imported, so every Sluice package sets it on import.
_os.environ['TF_USE_LEGACY_KERAS'] = '1'
# TensorFlow's C++ info and CUDA-probe lines are noise on CPU machines; TF_CPP_MIN_LOG_LEVEL=0 shows them.
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from pipelines.interactive import InteractiveContext  # noqa: E402
from pipelines.launcher import NodeResult, launch  # noqa: E402
from pipelines.beam_dag_runner import BeamDagRunner  # noqa: E402
from pipelines.local_dag_runner import LocalDagRunner  # noqa: E402
from pipelines.pipeline import Pipeline, PipelineError, load_pipeline  # noqa: E402
from pipelines.retry import Retry  # noqa: E402
from pipelines.runner import RunResult  # noqa: E402

__all__ = ['InteractiveContext', 'NodeResult', 'launch', 'BeamDagRunner', 'LocalDagRunner', 'Pipeline', 'PipelineError', 'load_pipeline', 'Retry', 'RunResult']
from components.resolvers import LatestSpans  # noqa: E402,F401  (spans: a rolling window)
