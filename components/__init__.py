"""Sluice components: the component model and the standard components.

    from components import Component, Input, Output, Parameter, Executor
"""
import os as _os

_os.environ['TF_USE_LEGACY_KERAS'] = '1'  # before TensorFlow is imported; see pipelines/__init__.py

from components.component import Channel, Component, Input, Output, Parameter, WiringError
from components.driver import Driver, InputError, PipelineInfo
from components.executor import Executor
from components.publisher import Publisher
from metadata.artifact import (Artifact, ExampleAnomalies, Examples, ExampleStatistics, Model,
                               ModelBlessing, ModelEvaluation, ModelRun, PushedModel, Schema,
                               TransformGraph)

__all__ = ['Channel', 'Component', 'Input', 'Output', 'Parameter', 'WiringError', 'Driver', 'InputError',
           'PipelineInfo', 'Executor', 'Publisher', 'Artifact', 'ExampleAnomalies', 'Examples',
           'ExampleStatistics', 'Model', 'ModelBlessing', 'ModelEvaluation', 'ModelRun', 'PushedModel',
           'Schema', 'TransformGraph']
