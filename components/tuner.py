"""Tuner: searches hyperparameters with the KerasTuner tuner the user's ``tuner_fn(fn_args)`` builds.

    >>> tuner = Tuner(module_file='penguin_module.py', examples=transform.outputs['transformed_examples'],
    ...               transform_graph=transform.outputs['transform_graph'], train_steps=20, eval_steps=5)
    >>> trainer = Trainer(module_file='penguin_module.py', ...,
    ...                   best_hyperparameters=tuner.outputs['best_hyperparameters'])

The contract is TFX's: ``tuner_fn(fn_args)`` returns ``TunerFnResult(tuner=..., fit_kwargs={...})``, a
KerasTuner tuner (``keras_tuner.RandomSearch(...)``, ``Hyperband(...)``, ...) and the keyword arguments
of its ``search`` (``x``, ``validation_data``, ``steps_per_epoch``, ...). ``fn_args`` is the Trainer's
(TFX's field names: train_files, eval_files, train_steps, eval_steps, schema_path, transform_graph_path,
transform_output, data_accessor, base_model, custom_config, working_dir); ``fn_args.working_dir`` is a
directory of this execution's scratch space, where the tuner must keep its trials
(``directory=fn_args.working_dir``), so that no two executions share or reload trials.

After ``tuner.search(**fit_kwargs)`` the Tuner writes, as TFX does:

- ``best_hyperparameters``: ``best_hyperparameters.txt``, the JSON of the best trial's
  ``keras_tuner.HyperParameters.get_config()`` (``{'space': [...], 'values': {...}}``), which the
  Trainer hands to ``run_fn`` as ``fn_args.hyperparameters``; the artifact's ``best_score`` and
  ``objective`` say how it scored;
- ``tuner_results``: ``tuner_results.json``, the completed trials best first, one record each
  (``{'trial_id': ..., 'score': ..., <hyperparameter>: <value>, ...}``); its ``trials_completed`` and
  ``trials_failed`` count them.

A module file without ``tuner_fn``, a ``tuner_fn`` that returns anything else or keeps its trials
outside ``fn_args.working_dir``, and a search that completes no trial fail the execution with a
message naming the module file and the fix; nothing is published.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.components.module_file import load_module_file
from sluice.components.tf_setup import libraries_without_autograph
from sluice.components.trainer import HYPERPARAMETERS_FILE, common_fn_args
from sluice.metadata.artifact import Examples, HyperParameters, Model, Schema, TransformGraph, TunerResults

RESULTS_FILE = 'tuner_results.json'
_RETURN = ('return TunerFnResult(tuner=<a KerasTuner tuner, e.g. keras_tuner.RandomSearch(...)>, '
           'fit_kwargs={<the arguments of tuner.search: x, validation_data, steps_per_epoch, ...>}) '
           '(from sluice.components.tuner import TunerFnResult)')

logger = logging.getLogger(__name__)


class TunerFnResult(NamedTuple):
    """What ``tuner_fn`` returns (TFX's TunerFnResult): the tuner, and the keyword arguments of its
    ``search``."""
    tuner: Any
    fit_kwargs: dict[str, Any]


class TunerError(RuntimeError):
    """tuner_fn returned something unusable, or the search completed no trial."""
    retryable = False


class TunerExecutor(Executor):
    imports = ('tensorflow', 'tfx_bsl.public.tfxio')

    def run(self, *, examples: Examples, schema: Schema | None, transform_graph: TransformGraph | None,
            base_model: Model | None, best_hyperparameters: HyperParameters, tuner_results: TunerResults,
            module_file: str, train_steps: int | None, eval_steps: int | None, custom_config: dict,
            train_split: str, eval_split: str) -> None:
        module = load_module_file(module_file, required=['tuner_fn'])
        libraries_without_autograph()
        working_dir = os.path.join(self.tmp_dir, 'tuning')  # this execution's own: no trials shared or reloaded
        os.makedirs(working_dir, exist_ok=True)
        fn_args = common_fn_args(examples=examples, transform_graph=transform_graph, schema=schema,
                                 base_model=base_model, train_split=train_split, eval_split=eval_split,
                                 train_steps=train_steps, eval_steps=eval_steps, custom_config=custom_config,
                                 working_dir=working_dir, who='Tuner')
        fn_args.serving_model_dir = fn_args.eval_model_dir = fn_args.model_run_dir = None  # as TFX's Tuner
        tuner, fit_kwargs = _checked(module.tuner_fn(fn_args), module_file, working_dir)
        logger.info('Tuner: searching with %s (tuner_fn in %s)', type(tuner).__name__, module_file)
        try:
            tuner.search(**fit_kwargs)
        except Exception as e:
            error = TunerError(f'The search of the {type(tuner).__name__} that tuner_fn in {module_file} built failed: '
                               f'{type(e).__name__}: {_gist(str(e))}')
            error.retryable = getattr(e, 'retryable', True)  # as the search's own error says
            raise error from e
        _write(tuner, module_file, best_hyperparameters, tuner_results)


def _checked(result: Any, module_file: str, working_dir: str) -> tuple[Any, dict[str, Any]]:
    """(tuner, fit_kwargs) from what tuner_fn returned, or a TunerError saying what to return."""
    from keras_tuner.engine.base_tuner import BaseTuner

    tuner, fit_kwargs = getattr(result, 'tuner', None), getattr(result, 'fit_kwargs', None)
    if not isinstance(tuner, BaseTuner) or not isinstance(fit_kwargs, Mapping) or \
            not all(isinstance(k, str) for k in fit_kwargs):
        if isinstance(result, BaseTuner):
            what = f'the tuner itself ({type(result).__name__}), without the arguments of its search'
        elif isinstance(fit_kwargs, Mapping) and not isinstance(tuner, BaseTuner):
            what = f'a result whose tuner is {_short(tuner)}, not a KerasTuner tuner'
        elif isinstance(tuner, BaseTuner):
            what = f'a result whose fit_kwargs is {_short(fit_kwargs)}, not a dict of keyword arguments'
        else:
            what = 'None' if result is None else _short(result)
        raise TunerError(f'tuner_fn in {module_file} returned {what}; {_RETURN}.')
    project = os.path.realpath(os.path.join(str(tuner.directory), str(tuner.project_name)))
    if not project.startswith(os.path.join(os.path.realpath(working_dir), '')):
        raise TunerError(f'The {type(tuner).__name__} that tuner_fn in {module_file} built keeps its trials in {project}, '
                         f'outside fn_args.working_dir ({working_dir}): build it with directory=fn_args.working_dir, so '
                         'that each execution searches afresh (a shared directory reloads or mixes the trials of other runs).')
    return tuner, dict(fit_kwargs)


def _write(tuner: Any, module_file: str, best_hyperparameters: HyperParameters, tuner_results: TunerResults) -> None:
    """best_hyperparameters.txt and tuner_results.json (TFX's files), or a TunerError if no trial completed."""
    from keras_tuner.engine.trial import TrialStatus

    oracle = tuner.oracle
    trials = list(oracle.trials.values())
    ranked = oracle.get_best_trials(len(trials))  # completed ones first, best first
    completed = [t for t in ranked if t.status == TrialStatus.COMPLETED]
    failed = [t for t in trials if t.status != TrialStatus.COMPLETED]
    if not completed:
        why = '; '.join(f'trial {t.trial_id}: {_last_line(t.message or t.status)}' for t in failed[:3])
        raise TunerError(
            f'The search of the {type(tuner).__name__} that tuner_fn in {module_file} built completed no trial '
            + (f'({len(failed)} ran, none completed; {why}' + ('; ...' if len(failed) > 3 else '') + ')'
               if failed else '(none ran)')
            + f'. Make a trial complete: building and fitting the model must not raise, and the objective '
            f'{oracle.objective.name!r} must be one of the metrics the fit reports (a val_ metric needs '
            "validation_data in fit_kwargs).")
    best = tuner.get_best_hyperparameters()[0].get_config()
    with open(os.path.join(best_hyperparameters.uri, HYPERPARAMETERS_FILE), 'w') as f:
        json.dump(best, f, default=_plain)
    records = [{'trial_id': t.trial_id, 'score': t.score, **t.hyperparameters.values}
               for t in completed if t.hyperparameters.values]
    with open(os.path.join(tuner_results.uri, RESULTS_FILE), 'w') as f:
        json.dump(records, f, default=_plain)
    best_hyperparameters.set('best_score', float(completed[0].score))
    best_hyperparameters.set('objective', f'{oracle.objective.name} ({oracle.objective.direction})')
    tuner_results.set('trials_completed', len(completed))
    tuner_results.set('trials_failed', len(failed))
    for t in failed:
        logger.warning('Tuner: trial %s did not complete: %s', t.trial_id, _last_line(t.message or t.status))
    logger.info('Tuner: best of %d trial(s), %s %s: %s', len(completed), oracle.objective.name,
                completed[0].score, best['values'])


def _plain(value: Any) -> Any:
    """numpy scalars (a score, a sampled value) as Python numbers for JSON."""
    if hasattr(value, 'item'):
        return value.item()
    raise TypeError(f'{type(value).__name__} {value!r} is not JSON serialisable')


def _gist(text: str) -> str:
    """The first line of a message, and its last where it goes on (a traceback's error line)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ''
    return f'{lines[0]} ... {lines[-1]}'


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ''


def _short(value: Any) -> str:
    """A value's type and, where it says more than its address, its repr (shortened)."""
    text = repr(value)
    if ' object at 0x' in text:
        return f'a {type(value).__name__}'
    text = text if len(text) <= 100 else text[:97] + '...'
    return f'{type(value).__name__} {text}'


class Tuner(Component):
    """Searches hyperparameters with ``tuner_fn`` from ``module_file`` (TFX's Tuner): writes the best
    (``best_hyperparameters``, for the Trainer) and every trial's score (``tuner_results``)."""
    examples = Input(Examples)
    schema = Input(Schema, optional=True)
    transform_graph = Input(TransformGraph, optional=True)
    base_model = Input(Model, optional=True)
    best_hyperparameters = Output(HyperParameters)
    tuner_results = Output(TunerResults)
    module_file = Parameter(str, user_code=True)
    train_steps = Parameter(int, default=None)
    eval_steps = Parameter(int, default=None)
    custom_config = Parameter(dict, default={})
    train_split = Parameter(str, default='train')
    eval_split = Parameter(str, default='eval')
    libraries = ('tensorflow', 'tf-keras', 'tensorflow-transform', 'tfx-bsl', 'keras-tuner')
    executor = TunerExecutor
