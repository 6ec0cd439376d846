"""End to end on the real stack and the real data: the penguin and Chicago taxi pipelines, the gate,
and the ONNX export served with onnxruntime."""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import pytest
from shared_runs import changing

from sluice.components.production.destination import production
from sluice.metadata import MetadataStore
from sluice.components.production.record import store_identity
from sluice import LocalDagRunner, load_pipeline
from sluice.ui.cli.runs import outcome_lines
from serving_helpers import call, serving as sluice_serve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, 'pipelines', 'examples')
PENGUIN = os.path.join(EXAMPLES, 'penguin', 'penguin_pipeline.py')
TAXI = os.path.join(EXAMPLES, 'taxi', 'taxi_pipeline.py')


def run(path, root, tweak=None, **kwargs):
    pipeline = load_pipeline(path, root=str(root), **kwargs)
    if tweak:
        tweak(pipeline)
    result = LocalDagRunner(progress=False).run(pipeline)
    return pipeline, result, MetadataStore(pipeline.metadata)


def tf_serving_version(base):
    """The version directory TF Serving serves from a model base path, by its rules: the child
    directories whose names are integers are the versions, the highest is served (the default
    'latest' policy), and it must hold a SavedModel at its root (``saved_model.pb``, what
    ``tf.saved_model.contains_saved_model`` checks, as TF Serving's loader does)."""
    import tensorflow as tf

    numbers = [int(d) for d in os.listdir(base) if d.isdigit() and os.path.isdir(os.path.join(base, d))]
    assert numbers, f'no version directory under {base}: {os.listdir(base)}'
    path = os.path.join(base, str(max(numbers)))
    assert tf.saved_model.contains_saved_model(path), f'{path} holds no SavedModel at its root: {os.listdir(path)}'
    return path


def read_json(*path):
    with open(os.path.join(*path)) as f:
        return json.load(f)


def states(store, run_id):
    return {r.node_id: r.state for r in store.executions(run_id)}


def destination_listing(root):
    serving = os.path.join(str(root), 'serving')
    return sorted(os.path.relpath(os.path.join(d, f), serving) for d, _, files in os.walk(serving) for f in files)


@pytest.fixture(scope='module')
def penguin_root(tmp_path_factory):
    return tmp_path_factory.mktemp('penguin') / 'root'


def test_penguin_gate_first_push_cached_rerun_worse_model_refused_better_model_pushed(penguin_root, capsys):
    # 1. First run (a short training): nothing in production, blessed by policy and pushed.
    pipeline, first, store = run(PENGUIN, penguin_root, train_steps=20)
    assert first.state == 'COMPLETE', {k: n.error for k, n in first.nodes.items() if n.error}
    blessing = first['ModelValidator'].outputs['blessing']
    assert blessing.get('blessed') == 1 and blessing.get('baseline_model_id') == 0
    pushed = first['Pusher'].outputs['pushed_model']
    assert pushed.get('pushed') == 1
    model = first['Trainer'].outputs['model']
    onnx = first['Trainer.onnx'].outputs['onnx_model']
    assert 0 <= onnx.get('onnx_max_abs_diff') <= 1e-4 and onnx.get('model_id') == model.id
    v1 = pushed.get('pushed_version')
    # The version as TF Serving finds it (see tf_serving_version): the SavedModel at its root, ONNX beside it.
    assert tf_serving_version(os.path.join(penguin_root, 'serving')) == os.path.join(penguin_root, 'serving', v1)
    assert pushed.get('pushed_destination') == os.path.join(penguin_root, 'serving', v1)
    assert os.path.isfile(os.path.join(penguin_root, 'serving', v1, 'model.onnx'))
    summary = read_json(first['Evaluator'].outputs['evaluation'].uri, 'metrics.json')
    assert summary['baseline_model_id'] == 0 and summary['slices']['Overall']['candidate'][
        'sparse_categorical_accuracy'] > 0.9
    assert {'species=0', 'species=1', 'species=2'} <= set(summary['slices'])
    lines = outcome_lines(first)
    assert f'ModelValidator: BLESSED model #{model.id} against no baseline (first model)' in '\n'.join(lines)
    assert f"Pusher: pushed to {os.path.join(penguin_root, 'serving', v1)}" in lines

    # Every artifact of the run has a view: HTML for notebooks and reports, text for terminals.
    from sluice.ui.report import report_html
    from sluice.ui.visuals import render
    texts = {}
    for node in first.nodes.values():
        for artifact in node.outputs.values():
            view = render(artifact)
            assert view._repr_html_().startswith('<div class="sluice">')
            texts[artifact.type_name()] = str(view)
    assert 'No anomalies.' in texts['ExampleAnomalies']
    assert re.search(r'culmen_length_mm\s+train\s+numeric\s+\d+', texts['ExampleStatistics'])
    assert re.search(r'species\s+INT\s+required\s+\[1\]\s+\[0, 2\]', texts['Schema'])
    assert 'BLESSED model' in texts['ModelBlessing'] and 'Pushed as version' in texts['PushedModel']
    assert re.search(r'Overall\s+sparse_categorical_accuracy\s+0\.9', texts['ModelEvaluation'])
    assert 'ONNX vs SavedModel max abs difference' in texts['OnnxModel']
    assert 'its ONNX copy, if the Trainer made one, is an OnnxModel of its own' in texts['Model']
    page = report_html(store, first.run_id)
    assert '<script src' not in page and page.count('<svg xmlns="http://www.w3.org/2000/svg" width=') == 1  # the DAG
    for section in ('ExampleStatistics', 'ExampleAnomalies', 'ModelEvaluation', 'ModelBlessing', 'PushedModel'):
        assert f'<h3>{section} #' in page

    # 2. The same setup again: fully cached, nothing pushed twice.
    _, second, _ = run(PENGUIN, penguin_root, train_steps=20)
    assert states(store, second.run_id) == dict.fromkeys(pipeline.node_ids, 'CACHED')

    # 3. A clearly worse model (no training): measured against the production model, NOT_BLESSED.
    listing = destination_listing(penguin_root)
    _, worse, _ = run(PENGUIN, penguin_root, train_steps=0)
    assert worse.state == 'COMPLETE'
    blessing = worse['ModelValidator'].outputs['blessing']
    # The baseline is version v1 at the destination, measured from its SavedModel there.
    assert blessing.get('blessed') == 0 and blessing.get('baseline_version') == v1
    baseline = store.artifacts([blessing.get('baseline_model_id')])[0]
    assert baseline.uri == os.path.join(penguin_root, 'serving', v1) and baseline.type_name() == 'Model'
    reasons = read_json(blessing.uri, 'reasons.json')
    [check] = reasons['checks']
    assert check['metric'] == 'sparse_categorical_accuracy' and not check['passed']
    assert check['baseline'] > 0.9 and check['candidate'] < check['baseline']
    assert 'fails' in check['reason']
    assert os.path.isfile(os.path.join(blessing.uri, 'NOT_BLESSED'))
    assert worse['Pusher'].outputs['pushed_model'].get('pushed') == 0
    assert destination_listing(penguin_root) == listing  # production untouched

    # 4. A better model (longer training): blessed against the production model, a new version.
    _, better, _ = run(PENGUIN, penguin_root, train_steps=100)
    blessing = better['ModelValidator'].outputs['blessing']
    assert blessing.get('baseline_version') == v1 and blessing.get('baseline_model_id') == baseline.id
    assert blessing.get('blessed') == 1, read_json(blessing.uri, 'reasons.json')
    new = better['Pusher'].outputs['pushed_model']
    assert new.get('pushed') == 1 and int(new.get('pushed_version')) > int(v1)
    in_production = production(os.path.join(penguin_root, 'serving')).current
    assert in_production.number == int(new.get('pushed_version'))
    assert in_production.record['model']['artifact_id'] == better['Trainer'].outputs['model'].id
    assert in_production.record['model']['store_id'] == store_identity(store)
    assert in_production.record['baseline'] == {'version': int(v1), 'fingerprint': baseline.fingerprint}

    # The lineage of the pushed model, back to the CSV file it was trained on.
    from sluice.ui.cli import main
    capsys.readouterr()
    assert main(['lineage', str(new.id), '--metadata', pipeline.metadata]) == 0
    tree = capsys.readouterr().out
    assert tree.startswith(f'PushedModel #{new.id} ')
    for producer in ('Pusher', 'ModelValidator', 'Evaluator', 'Trainer', 'Transform', 'CsvExampleGen'):
        assert f'<- {producer} [{producer}] execution #' in tree
    assert 'file: ' + os.path.join(EXAMPLES, 'penguin', 'data', 'penguins.csv') in tree


@pytest.mark.parametrize('module, message', [
    (None, r'Module file .*/nope\.py does not exist; check the module_file parameter'),
    ('def preprocessing_fn(inputs):\n    return inputs\n',
     r'Module file .*/bad\.py has no function run_fn\(\); define it there'),
    ('def run_fn(fn_args):\n    raise RuntimeError("out of coffee at step " + str(fn_args.train_steps))\n',
     r'RuntimeError: out of coffee at step 100'),  # the pipeline's default train_steps
    ('def run_fn(fn_args):\n    pass\n', r'run_fn in .*/bad\.py returned without saving a SavedModel to '
                                        r'fn_args\.serving_model_dir'),
])
def test_broken_trainer_module_fails_the_trainer_and_pushes_nothing(penguin_root, tmp_path, module, message):
    path = tmp_path / ('nope.py' if module is None else 'bad.py')
    if module is not None:
        path.write_text(module)

    def use_bad_module(pipeline):
        pipeline.node('Trainer').parameters['module_file'] = str(path)

    listing = destination_listing(penguin_root)
    _, result, store = run(PENGUIN, penguin_root, tweak=use_bad_module)
    assert result['Trainer'].state == 'FAILED' and re.search(message, result['Trainer'].error)
    assert {k: v for k, v in result.node_states().items() if k in ('Evaluator', 'ModelValidator', 'Pusher')} == \
        dict.fromkeys(['Evaluator', 'ModelValidator', 'Pusher'], 'SKIPPED')
    [record] = [r for r in store.executions(result.run_id) if r.node_id == 'Trainer']
    assert record.state == 'FAILED' and record.outputs == {}
    assert destination_listing(penguin_root) == listing


def test_skewed_penguins_stop_before_training(skewed_penguin_run):
    # The session's run of the penguin pipeline on the skewed data (conftest.py), as its RunResult said.
    root, result = skewed_penguin_run
    store = MetadataStore(result['metadata'])
    assert result['state'] == 'FAILED'
    error = result['errors']['ExampleValidator']
    assert error.startswith('AnomaliesFound: the data does not match the schema:')
    assert "feature 'culmen_length_mm': Out-of-range values (Unexpectedly low values: -1<0" in error
    assert result['node_states'] == {
        'CsvExampleGen': 'COMPLETE', 'ImportSchemaGen': 'COMPLETE', 'StatisticsGen': 'COMPLETE',
        'ExampleValidator': 'FAILED', 'Transform': 'SKIPPED', 'Trainer': 'SKIPPED', 'Trainer.onnx': 'SKIPPED',
        'Evaluator': 'SKIPPED', 'ModelValidator': 'SKIPPED', 'Pusher': 'SKIPPED'}
    [record] = [r for r in store.executions(result['run_id']) if r.node_id == 'ExampleValidator']
    assert record.state == 'FAILED' and record.outputs == {} and record.properties['error_type'] == 'AnomaliesFound'
    assert not os.path.exists(root / 'serving')


def _onnx_inputs(session, records):
    """Parse raw tf.Examples into the ONNX model's inputs, missing values as documented."""
    import tensorflow as tf

    columns = {i.name: [] for i in session.get_inputs()}
    types = {i.name: i.type for i in session.get_inputs()}
    for record in records:
        feats = tf.train.Example.FromString(record).features.feature
        for name, values in columns.items():
            f = feats.get(name)
            kind = f.WhichOneof('kind') if f is not None else None
            v = list(getattr(f, kind).value) if kind else []
            if 'string' in types[name]:
                values.append([v[0].decode() if v else ''])
            elif 'int64' in types[name]:
                values.append([v[0] if v else np.iinfo(np.int64).min])
            else:
                values.append([v[0] if v else np.nan])
    return {name: np.array(v, dtype=object if 'string' in types[name] else
                           np.int64 if 'int64' in types[name] else np.float32) for name, v in columns.items()}


def test_taxi_pipeline_end_to_end_with_an_onnx_model_that_matches(taxi_cli):
    import onnx
    import tensorflow as tf

    from sluice.components.onnx_export import make_session

    # The session's `sluice run` of the taxi example (conftest.py's taxi_cli), read from its store.
    work, done = taxi_cli
    root = work / 'runs' / 'taxi'
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = re.search(r'^Run (\S+) COMPLETE', done.stdout, re.M).group(1)
    store = MetadataStore(f'sqlite:///{root}/metadata.db')
    executions = store.executions(run_id)
    assert store.run(run_id).state == 'COMPLETE' and len(executions) == 10, [(e.node_id, e.state) for e in executions]
    assert {e.state for e in executions} == {'COMPLETE'}, {e.node_id: e.error for e in executions if e.error}
    outputs = {e.node_id: {key: artifact for key, [artifact] in e.outputs.items()} for e in executions}
    examples = outputs['CsvExampleGen']['examples']
    assert sum(json.loads(examples.get('row_counts')).values()) == 15002
    model = outputs['Trainer']['model']
    assert 0 <= outputs['Trainer.onnx']['onnx_model'].get('onnx_max_abs_diff') <= 1e-4
    assert outputs['Pusher']['pushed_model'].get('pushed') == 1

    # Serve the ONNX model with onnxruntime (no TensorFlow in the model) and compare with the
    # SavedModel on eval rows, which have missing values, unseen companies and empty strings.
    files = sorted(glob.glob(os.path.join(examples.split_uri('eval'), '*.gz')))
    records = [bytes(r) for r in tf.data.TFRecordDataset(files, compression_type='GZIP').take(500)
               .as_numpy_iterator()]
    # Both as pushed: the version TF Serving would serve, loaded with TF's own loader, and the ONNX
    # model beside it; the same answers as the Trainer's own SavedModel.
    version = tf_serving_version(os.path.join(str(root), 'serving'))
    # The taxi model hashes OOV strings with TensorFlow's Fingerprint64: the exact op make_session registers
    # (in this process; the export ran in a process of its own), beside onnxruntime-extensions' ops.
    session = make_session(os.path.join(version, 'model.onnx'))
    assert 'SluiceStringToHashBucketFast' in {n.op_type for n in onnx.load(os.path.join(version, 'model.onnx')).graph.node}
    names = {i.name for i in session.get_inputs()}
    assert {'fare', 'trip_miles', 'company', 'payment_type', 'pickup_latitude'} <= names and 'tips' not in names
    onnx_out = session.run(None, _onnx_inputs(session, records))[0].reshape(-1)
    serving = tf.saved_model.load(version).signatures['serving_default']
    tf_out = serving(examples=tf.constant(records))['tip'].numpy().reshape(-1)
    assert np.max(np.abs(onnx_out - tf_out)) <= 1e-4
    trained = tf.saved_model.load(os.path.join(model.uri, 'Format-Serving')).signatures['serving_default']
    assert np.array_equal(trained(examples=tf.constant(records))['tip'].numpy().reshape(-1), tf_out)
    assert np.std(tf_out) > 0  # a real model, not a constant

    # sluice serve answers the same rows, given as a user gives them (JSON rows, missing values left out),
    # through the custom ops the taxi model needs (string hashing), from the destination.
    from sluice.components.onnx_export import dense_features
    from sluice.components.onnx_export.loading import open_model, sample_request
    description = [{'name': f.name, 'dtype': f.dtype, 'missing': f.missing}
                   for f in open_model(os.path.join(version, 'model.onnx')).features]
    request = sample_request(dense_features(records, description), description, rows=len(records))
    assert any(len(row) < len(description) for row in request['instances'])  # some rows miss some features
    with sluice_serve(os.path.join(str(root), 'serving')) as server:  # the shared run, read only
        status, body, _ = call(f'{server.url}/v1/models/taxi:predict', request)
    assert status == 200 and body['model_version'] == os.path.basename(version), body
    served = np.array(body['predictions'], dtype=np.float64).reshape(-1)
    assert np.max(np.abs(served - onnx_out)) <= 1e-6 and np.max(np.abs(served - tf_out)) <= 1e-4

    with changing(work.parent):  # the same pipeline again on the session's run, in this process: all cached
        pipeline, again, _ = run(TAXI, root)
    assert states(store, again.run_id) == dict.fromkeys(pipeline.node_ids, 'CACHED')


def test_taxi_with_an_inferred_schema_passes_its_own_validation(tmp_path):
    # The schema is inferred from train and relaxed for eval (companies seen only in eval, features missing in
    # some rows): the data it came from passes a blocking ExampleValidator and Transform. Run up to Transform.
    pipeline = load_pipeline(TAXI, root=str(tmp_path / 'root'), schema_file=None)
    result = LocalDagRunner(progress=False).run(pipeline, to_nodes=['Transform'])
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    assert set(result.nodes) == {'CsvExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator', 'Transform'}
    assert 'Trainer' not in MetadataStore(pipeline.metadata).run(result.run_id).latest()


@pytest.mark.parametrize('content, message', [
    ('species,culmen_length_mm\n0,0.5\n1\n', r'a\.csv line 3 has 1 fields but the header has 2'),
    ('', r'a\.csv is empty'),
])
def test_bad_input_fails_example_gen_and_stops_everything_after_it(tmp_path, content, message):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.csv').write_text(content)
    pipeline, result, store = run(PENGUIN, tmp_path / 'root', data=str(data))
    assert result['CsvExampleGen'].state == 'FAILED' and re.search(message, result['CsvExampleGen'].error)
    assert result['ImportSchemaGen'].state == 'COMPLETE'
    assert all(state == 'SKIPPED' for node, state in result.node_states().items()
               if node not in ('CsvExampleGen', 'ImportSchemaGen'))
    [record] = [r for r in store.executions(result.run_id) if r.node_id == 'CsvExampleGen']
    assert record.state == 'FAILED' and record.properties['error_type'] == 'DataError'
    assert not [a for a in store.mlmd.get_artifacts() if '/CsvExampleGen/' in a.uri]
    assert not os.listdir(os.path.join(pipeline.pipeline_root, 'CsvExampleGen', 'examples'))
