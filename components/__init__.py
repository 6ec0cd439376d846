"""Sluice components: the standard components and the component model.

    from sluice.components import CsvExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform, Trainer
    from sluice.components import Evaluator, ModelValidator, InfraValidator, Pusher, Tuner
    from sluice.components import Cond   # with Cond(channel.future()[0].custom_property('x') == 1): ...
    from sluice.components import Component, Input, Output, Parameter, Executor   # your own components

Importing this package is cheap: TensorFlow, TFDV and Beam are imported inside executors only.
"""
from sluice.components.bulk_inferrer import BulkInferrer
from sluice.components.component import Channel, Component, Input, Output, Parameter, WiringError
from sluice.components.driver import Driver, InputError, PipelineInfo
from sluice.components.example_diff import ExampleDiff
from sluice.components.example_gen import CsvExampleGen, DataError, ImportExampleGen
from sluice.components.example_validator import AnomaliesFound, ExampleValidator
from sluice.components.executor import Executor
from sluice.components.infra_validator import InfraValidator
from sluice.components.publisher import Publisher
from sluice.components.evaluator import Evaluator
from sluice.components.model_validator import ModelValidator
from sluice.components.pusher import Pusher
from sluice.components.resolvers import LatestSpans
from sluice.components.schema_gen import ImportSchemaGen, SchemaGen
from sluice.components.served_drift_component import ServedDrift
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.onnx_exporter import OnnxExporter
from sluice.components.trainer import DataAccessor, FnArgs, Trainer
from sluice.components.transform import Transform
from sluice.components.tuner import Tuner, TunerFnResult
from sluice.components.conditions import Cond
from sluice.metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, InfraBlessing, Model,
                               OnnxModel, ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph, TransformCache, HyperParameters, TunerResults, InferenceResult,
                               ExamplesDiff)

__all__ = ['CsvExampleGen', 'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ImportSchemaGen',
           'ExampleValidator', 'LatestSpans', 'Transform', 'Tuner', 'TunerFnResult', 'Trainer', 'OnnxExporter', 'Evaluator', 'ModelValidator', 'InfraValidator', 'Pusher', 'BulkInferrer', 'ServedDrift',
           'ExampleDiff',
           'FnArgs',
           'DataAccessor', 'DataError', 'AnomaliesFound', 'Channel', 'Component', 'Input', 'Output', 'Parameter', 'WiringError', 'Driver', 'InputError',
           'PipelineInfo', 'Executor', 'Publisher', 'Artifact', 'ExampleAnomalies', 'Examples',
           'ExampleStatistics', 'InfraBlessing', 'Model', 'OnnxModel', 'ModelBlessing', 'ModelEvaluation', 'ModelRun', 'PushedModel',
           'Schema', 'TransformGraph', 'TransformCache', 'HyperParameters', 'TunerResults', 'InferenceResult', 'ExamplesDiff', 'Cond']
