"""Sluice's ML-Metadata layer: artifact types and the store. Imports no component."""
from sluice.metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model, OnnxModel,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph, STANDARD_TYPES)
from sluice.metadata.records import (ExecutionRecord, FencingError, LeaseRecord, LineageNode, MetadataStoreError,
                                     RunSummary)
from sluice.metadata.store import MetadataStore

__all__ = ['Artifact', 'ExampleAnomalies', 'Examples', 'ExampleStatistics', 'Model', 'OnnxModel', 'ModelBlessing',
           'ModelEvaluation', 'ModelRun', 'PushedModel', 'Schema', 'TransformGraph', 'STANDARD_TYPES',
           'ExecutionRecord', 'FencingError', 'LeaseRecord', 'LineageNode', 'MetadataStore', 'MetadataStoreError',
           'RunSummary']
