"""Sluice's ML-Metadata layer: artifact types and the store. Imports no component."""
import os as _os

# Before TensorFlow is first imported; see pipelines/__init__.py.
_os.environ['TF_USE_LEGACY_KERAS'] = '1'
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph, STANDARD_TYPES)
from metadata.store import (ExecutionRecord, LineageNode, MetadataStore, MetadataStoreError,
                            RunSummary)

__all__ = ['Artifact', 'ExampleAnomalies', 'Examples', 'ExampleStatistics', 'Model', 'ModelBlessing',
           'ModelEvaluation', 'ModelRun', 'PushedModel', 'Schema', 'TransformGraph', 'STANDARD_TYPES',
           'ExecutionRecord', 'LineageNode', 'MetadataStore', 'MetadataStoreError', 'RunSummary']
