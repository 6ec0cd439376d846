"""Sluice's ML-Metadata layer: artifact types and the store. Imports no component."""
import os as _os

_os.environ['TF_USE_LEGACY_KERAS'] = '1'  # before TensorFlow is imported; see pipelines/__init__.py

from metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph, STANDARD_TYPES)
from metadata.store import (ExecutionRecord, LineageNode, MetadataStore, MetadataStoreError,
                            RunSummary)

__all__ = ['Artifact', 'ExampleAnomalies', 'Examples', 'ExampleStatistics', 'Model', 'ModelBlessing',
           'ModelEvaluation', 'ModelRun', 'PushedModel', 'Schema', 'TransformGraph', 'STANDARD_TYPES',
           'ExecutionRecord', 'LineageNode', 'MetadataStore', 'MetadataStoreError', 'RunSummary']
