"""Declaring a pipeline: ``Pipeline`` (nodes, root, store, Beam arguments), loading a pipeline file,
and the retry policy a pipeline or a node carries."""
from sluice.components.retry import Retry
from sluice.dsl.pipeline import Pipeline, PipelineError, load_pipeline

__all__ = ['Pipeline', 'PipelineError', 'Retry', 'load_pipeline']
