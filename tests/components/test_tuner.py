"""Tuner: tuner_fn's KerasTuner search on the penguins (real tf.Transform, TensorFlow, KerasTuner and
ML-Metadata), its best hyperparameters handed to the Trainer's run_fn as TFX hands them, a second run
all cached, and the errors a module file can make, each a FAILED execution with nothing published."""
from __future__ import annotations

import json
import os

import pytest

from sluice import LocalDagRunner, Pipeline
from sluice.components import CsvExampleGen, ImportSchemaGen, Trainer, Transform
from sluice.components.component import WiringError
from sluice.components.trainer import HyperParametersError, read_hyperparameters
from sluice.components.tuner import Tuner
from sluice.metadata import MetadataStore
from sluice.metadata.artifact import HyperParameters

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(TESTS, 'tfx_style', 'tuner_penguin_module.py')
PENGUIN = os.path.join(os.path.dirname(TESTS), 'pipelines', 'examples', 'penguin')
STEPS = {'train_steps': 5, 'eval_steps': 2}

NO_TUNER_FN = '''
def run_fn(fn_args):
    pass
'''
RETURNS_THE_TUNER = '''
import keras_tuner

def tuner_fn(fn_args):
    return keras_tuner.RandomSearch(lambda hp: None, max_trials=1, directory=fn_args.working_dir)
'''
SHARED_DIRECTORY = '''
import keras_tuner
from sluice.components.tuner import TunerFnResult

def tuner_fn(fn_args):
    tuner = keras_tuner.RandomSearch(lambda hp: None, max_trials=1, directory={directory!r},
                                     project_name='shared')
    return TunerFnResult(tuner=tuner, fit_kwargs={{}})
'''
FATAL_FIT = '''
import keras_tuner
import tensorflow as tf
from sluice.components.tuner import TunerFnResult


class Model(keras_tuner.HyperModel):
    def build(self, hp):
        model = tf.keras.Sequential([tf.keras.layers.Dense(hp.Int('units', 1, 2))])
        model.compile(loss='mse')
        return model

    def fit(self, hp, model, *args, **kwargs):
        raise keras_tuner.errors.FatalError('the examples cannot be read')


def tuner_fn(fn_args):
    tuner = keras_tuner.RandomSearch(Model(), objective='loss', max_trials=2, directory=fn_args.working_dir)
    return TunerFnResult(tuner=tuner, fit_kwargs={})
'''


def _front(module_file: str):
    gen = CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'), split_ratios={'train': 2, 'eval': 1})
    schema = ImportSchemaGen(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'))
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'], module_file=module_file)
    return [gen, schema, transform], transform


def _tuner(transform, module_file: str, **kwargs) -> Tuner:
    return Tuner(examples=transform.outputs['transformed_examples'], transform_graph=transform.outputs['transform_graph'],
                 module_file=module_file, **STEPS, **kwargs)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """One store, one pipeline name, three runs: Transform -> Tuner -> Trainer (and a Trainer with one
    value fixed over the tuned ones); the same again; then the shared front with Tuners that fail."""
    where = tmp_path_factory.mktemp('tuner')
    root, url = str(where / 'root'), f'sqlite:///{where}/m.db'

    def tuned():
        front, transform = _front(MODULE)
        tuner = _tuner(transform, MODULE)
        common = dict(examples=transform.outputs['transformed_examples'], transform_graph=transform.outputs['transform_graph'],
                      module_file=MODULE, export_onnx=False, best_hyperparameters=tuner.outputs['best_hyperparameters'],
                      **STEPS)
        return [*front, tuner, Trainer(**common), Trainer(hyperparameters={'num_layers': 4}, **common).with_id('pinned')]

    def failing():
        front, transform = _front(MODULE)
        modules = {}
        for name, text in (('no_tuner_fn', NO_TUNER_FN), ('returns_the_tuner', RETURNS_THE_TUNER),
                           ('shared_directory', SHARED_DIRECTORY.format(directory=str(where / 'shared'))),
                           ('fatal_fit', FATAL_FIT)):
            modules[name] = where / f'{name}.py'
            modules[name].write_text(text)
        bad = [_tuner(transform, str(path)).with_id(name) for name, path in modules.items()]
        # every trial fails: the objective is a metric the model does not report
        bad.append(_tuner(transform, MODULE, custom_config={'objective': 'val_auc'}).with_id('no_trial'))
        return front + bad, modules

    results = [LocalDagRunner(progress=False).run(Pipeline('tuning', root, tuned(), metadata=url)) for _ in range(2)]
    nodes, modules = failing()
    results.append(LocalDagRunner(progress=False).run(Pipeline('tuning', root, nodes, metadata=url)))
    return results, MetadataStore(url), root, modules


def _outputs(store, result, node):
    return {k: v[0] for k, v in store.node_outputs(result.run_id, node).items()}


def test_tuner_writes_the_best_hyperparameters_and_the_trials(runs):
    import keras_tuner

    (first, _, _), store, _, _ = runs
    assert first.state == 'COMPLETE', {k: n.error for k, n in first.nodes.items() if n.error}
    out = _outputs(store, first, 'Tuner')
    best, results = out['best_hyperparameters'], out['tuner_results']
    with open(os.path.join(best.uri, 'best_hyperparameters.txt')) as f:
        config = json.load(f)
    hp = keras_tuner.HyperParameters.from_config(config)  # KerasTuner's own config, as TFX writes it
    assert {p.name for p in hp.space} == {'learning_rate', 'num_layers'}
    assert hp.get('learning_rate') in (1e-2, 1e-3) and hp.get('num_layers') in (1, 2, 3)
    assert read_hyperparameters(best) == config
    with open(os.path.join(results.uri, 'tuner_results.json')) as f:
        trials = json.load(f)
    assert len(trials) == 2 == results.get('trials_completed') and results.get('trials_failed') == 0
    assert [set(t) for t in trials] == [{'trial_id', 'score', 'learning_rate', 'num_layers'}] * 2
    assert trials[0]['score'] == max(t['score'] for t in trials) == pytest.approx(best.get('best_score'))  # best first
    assert {k: trials[0][k] for k in ('learning_rate', 'num_layers')} == config['values']
    assert best.get('objective') == 'val_sparse_categorical_accuracy (max)'
    # The trials were kept in the execution's scratch space, which is gone with it.
    assert not [d for d, _, _ in os.walk(runs[2]) if d.endswith('penguin_tuning')]


def _used(store, result, node):
    with open(os.path.join(_outputs(store, result, node)['model_run'].uri, 'hyperparameters_used.json')) as f:
        return json.load(f)


def test_the_trainer_trains_with_the_tuned_values(runs):
    (first, _, _), store, _, _ = runs
    tuned = read_hyperparameters(_outputs(store, first, 'Tuner')['best_hyperparameters'])
    used = _used(store, first, 'Trainer')
    assert used['given'] == tuned  # fn_args.hyperparameters: the KerasTuner config, as in TFX
    assert used['hidden_layers'] == tuned['values']['num_layers']
    assert used['learning_rate'] == pytest.approx(tuned['values']['learning_rate'])
    # The Trainer read the Tuner's artifact (its input event), and so its cache key covers it.
    trainer = store.node_done(first.run_id, 'Trainer')
    assert trainer.inputs['best_hyperparameters'][0].id == _outputs(store, first, 'Tuner')['best_hyperparameters'].id


def test_values_given_to_the_trainer_are_fixed_over_the_tuned_ones(runs):
    (first, _, _), store, _, _ = runs
    tuned = read_hyperparameters(_outputs(store, first, 'Tuner')['best_hyperparameters'])
    used = _used(store, first, 'pinned')
    assert used['given'] == {'space': tuned['space'], 'values': {**tuned['values'], 'num_layers': 4}}
    assert used['hidden_layers'] == 4  # outside the searched range: the given value wins
    assert used['learning_rate'] == pytest.approx(tuned['values']['learning_rate'])


def test_a_second_run_is_all_cached(runs):
    (first, second, _), store, _, _ = runs
    assert second.node_states() == dict.fromkeys(first.node_states(), 'CACHED')
    assert _outputs(store, second, 'Trainer')['model'].id == _outputs(store, first, 'Trainer')['model'].id
    parts = json.loads(store.node_done(first.run_id, 'Tuner').properties['cache_key_parts'])
    assert list(parts['code']) == ['module_file']  # the module file's code closure, as the Trainer's
    assert 'keras-tuner' in parts['implementation']['libraries']


def test_errors_fail_the_execution_and_publish_nothing(runs):
    (_, _, third), store, root, modules = runs
    assert third.state == 'FAILED'
    expected = {
        'no_tuner_fn': f"ModuleFileError: Module file {modules['no_tuner_fn']} has no function tuner_fn(); define it "
                       'there. Functions it defines: run_fn.',
        'returns_the_tuner': f"TunerError: tuner_fn in {modules['returns_the_tuner']} returned the tuner itself "
                             '(RandomSearch), without the arguments of its search; return TunerFnResult(tuner=<a '
                             'KerasTuner tuner, e.g. keras_tuner.RandomSearch(...)>, fit_kwargs={<the arguments of '
                             'tuner.search: x, validation_data, steps_per_epoch, ...>}) (from sluice.components.tuner '
                             'import TunerFnResult).',
        'shared_directory': f"TunerError: The RandomSearch that tuner_fn in {modules['shared_directory']} built keeps "
                            f"its trials in {os.path.realpath(modules['shared_directory'].parent / 'shared' / 'shared')}, "
                            'outside fn_args.working_dir (',
        'fatal_fit': f"TunerError: The search of the RandomSearch that tuner_fn in {modules['fatal_fit']} built failed: "
                     'FatalError: the examples cannot be read',
        'no_trial': f'TunerError: The search of the RandomSearch that tuner_fn in {MODULE} built completed no trial '
                    "(2 ran, none completed; trial 0: KeyError: 'val_auc'; trial 1: KeyError: 'val_auc'). Make a trial "
                    "complete: building and fitting the model must not raise, and the objective 'val_auc' must be one "
                    'of the metrics the fit reports (a val_ metric needs validation_data in fit_kwargs).',
    }
    executions = {e.node_id: e for e in store.executions(third.run_id)}
    for node, message in expected.items():
        assert third[node].state == 'FAILED' and executions[node].state == 'FAILED', node
        if node == 'shared_directory':
            assert third[node].error.startswith(message), third[node].error
            assert third[node].error.endswith('): build it with directory=fn_args.working_dir, so that each execution '
                                              'searches afresh (a shared directory reloads or mixes the trials of '
                                              'other runs).')
        else:
            assert third[node].error == message, third[node].error
        assert executions[node].error == third[node].error  # recorded in the store as said
        assert store.node_outputs(third.run_id, node) is None
        for key in ('best_hyperparameters', 'tuner_results'):
            published = os.path.join(root, node, key)
            assert not os.path.exists(published) or not any(files for _, _, files in os.walk(published)), published


def test_a_channel_given_as_hyperparameters_is_refused_with_the_input_to_use(tmp_path):
    front, transform = _front(MODULE)
    tuner = _tuner(transform, MODULE)
    common = dict(examples=transform.outputs['transformed_examples'], module_file=MODULE)
    with pytest.raises(WiringError) as e:
        Trainer(hyperparameters=tuner.outputs['best_hyperparameters'], **common)
    assert str(e.value) == ("Trainer(hyperparameters=...) takes a dict of values; wire a Tuner's output as "
                            "best_hyperparameters=Tuner.outputs['best_hyperparameters'] (values given in "
                            'hyperparameters={...} are then fixed over the tuned ones).')
    with pytest.raises(WiringError, match=r"give the values to fix over the tuned ones as \{name: value\}; got a "
                                          r"whole KerasTuner config \('space', 'values'\)\."):
        Trainer(hyperparameters={'space': [], 'values': {}}, best_hyperparameters=tuner.outputs['best_hyperparameters'],
                **common)
    # without a Tuner, the dict reaches run_fn as given (and may be a whole config)
    assert Trainer(hyperparameters={'space': [], 'values': {}}, **common).parameters['hyperparameters'] == \
        {'space': [], 'values': {}}


def test_a_hyperparameters_artifact_without_a_config_is_a_clear_error(tmp_path):
    empty = HyperParameters(uri=str(tmp_path / 'empty'))
    os.makedirs(empty.uri)
    with pytest.raises(HyperParametersError, match=r"holds no best_hyperparameters.txt \(files there: none\); wire a "
                                                   r"Tuner's outputs\['best_hyperparameters'\]\."):
        read_hyperparameters(empty)
    other = HyperParameters(uri=str(tmp_path / 'other'))
    os.makedirs(other.uri)
    (tmp_path / 'other' / 'hp.json').write_text('{"learning_rate": 0.1}')  # its only file, as TFX reads it
    with pytest.raises(HyperParametersError, match=r"hp.json \(the best_hyperparameters input\) is not a KerasTuner "
                                                   r"config \(\{'space': \[...\], 'values': \{...\}\}, what "
                                                   r"keras_tuner.HyperParameters.get_config\(\) returns\)\."):
        read_hyperparameters(other)
