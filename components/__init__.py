"""Sluice components: the standard components and the component model.

    from components import CsvExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform, Trainer
    from components import Evaluator, ModelValidator, Pusher
    from components import Component, Input, Output, Parameter, Executor   # your own components

Importing this package is cheap: TensorFlow, TFDV and Beam are imported inside executors only.
"""
import os as _os

# Before TensorFlow is first imported; see pipelines/__init__.py.
_os.environ['TF_USE_LEGACY_KERAS'] = '1'
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from components.component import Channel, Component, Input, Output, Parameter, WiringError
from components.driver import Driver, InputError, PipelineInfo
from components.example_gen import CsvExampleGen, DataError, ImportExampleGen
from components.example_validator import AnomaliesFound, ExampleValidator
from components.executor import Executor
from components.publisher import Publisher
from components.evaluator import Evaluator
from components.model_validator import ModelValidator
from components.pusher import Pusher
from components.resolvers import LatestSpans
from components.schema_gen import ImportSchemaGen, SchemaGen
from components.statistics_gen import StatisticsGen
from components.trainer import DataAccessor, FnArgs, Trainer
from components.transform import Transform
from metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph)

__all__ = ['CsvExampleGen', 'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ImportSchemaGen',
           'ExampleValidator', 'LatestSpans', 'Transform', 'Trainer', 'Evaluator', 'ModelValidator', 'Pusher', 'FnArgs',
           'DataAccessor', 'DataError', 'AnomaliesFound', 'Channel', 'Component', 'Input', 'Output', 'Parameter', 'WiringError', 'Driver', 'InputError',
           'PipelineInfo', 'Executor', 'Publisher', 'Artifact', 'ExampleAnomalies', 'Examples',
           'ExampleStatistics', 'Model', 'ModelBlessing', 'ModelEvaluation', 'ModelRun', 'PushedModel',
           'Schema', 'TransformGraph']
