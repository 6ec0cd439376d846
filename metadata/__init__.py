"""Sluice's ML-Metadata layer: artifact types and the store. Imports no component."""
from sluice.metadata.deferred import defer

defer('grpc')  # ML-Metadata imports it for a remote client Sluice does not use (see deferred.py)
from sluice.metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model, OnnxModel,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph, STANDARD_TYPES)  # noqa: E402 (after defer)
from sluice.metadata.records import (ExecutionRecord, FencingError, LeaseRecord, LineageNode, MetadataStoreError,
                                     RunSummary)  # noqa: E402
from sluice.metadata.store import MetadataStore  # noqa: E402

__all__ = ['Artifact', 'ExampleAnomalies', 'Examples', 'ExampleStatistics', 'Model', 'OnnxModel', 'ModelBlessing',
           'ModelEvaluation', 'ModelRun', 'PushedModel', 'Schema', 'TransformGraph', 'STANDARD_TYPES',
           'ExecutionRecord', 'FencingError', 'LeaseRecord', 'LineageNode', 'MetadataStore', 'MetadataStoreError',
           'RunSummary']
