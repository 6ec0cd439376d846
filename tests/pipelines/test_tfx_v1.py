"""TFX's public API on Sluice (``from sluice.tfx import v1 as tfx``): the four shapes of TFX's
getting-started tutorials written in TFX's style (tests/tfx_style/), each run through
``tfx.orchestration.LocalDagRunner`` and ``sluice run``, compared with the same pipeline written
for Sluice, cached, and resumed after a kill; then the mapping of TFX's arguments and the messages
for what is not offered."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import sluice.components as native
from sluice.components.component import WiringError
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, Pipeline, load_pipeline
from sluice.tfx import v1 as tfx
from sluice.ui.cli import main
from sluice.ui.cli.runs import outcome_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TFX_STYLE = os.path.join(REPO, 'tests', 'tfx_style')
sys.path.insert(0, TFX_STYLE)
import penguin_shapes as shapes  # noqa: E402

SERVING = 'serving'
BOOKKEEPING = {'sluice_lease', 'sluice_settlement'}


# -- helpers --------------------------------------------------------------------------------------
def pipeline_file(directory, shape: str, root: str, module_level: bool = False) -> str:
    """A pipeline file as a TFX user would keep it: create_pipeline() (or a module-level pipeline)."""
    body = (f'pipeline = create_{shape}({root!r})' if module_level
            else f'def create_pipeline():\n    return create_{shape}({root!r})')
    path = os.path.join(str(directory), f'{shape}_pipeline.py')
    with open(path, 'w') as f:
        f.write(f'import sys\nsys.path.insert(0, {TFX_STYLE!r})\nfrom penguin_shapes import create_{shape}\n\n{body}\n')
    return path


def states(store, run_id):
    out = {}
    for r in store.executions(run_id):
        out.setdefault(r.node_id, []).append(r.state)
    return out


def recorded(store, run_id):
    """(node id, execution type) of each execution of a run, and the contexts they are attributed to
    (the run's own context named RUN; Sluice's lease and settlement bookkeeping left out)."""
    types = {t.id: t.name for t in store.mlmd.get_context_types()}
    nodes, contexts = set(), set()
    for r in store.executions(run_id):
        nodes.add((r.node_id, r.component_type))
        for c in store.mlmd.get_contexts_by_execution(r.id):
            kind = types[c.type_id]
            if kind not in BOOKKEEPING:
                contexts.add((kind, 'RUN' if kind == 'pipeline_run' else c.name))
    return nodes, contexts


def newest_run(store, name):
    return max(store.runs(name), key=lambda r: r.create_time).run_id


# -- the same pipelines written for Sluice ----------------------------------------------------------
def _native_trainer(examples, **kwargs):
    return native.Trainer(module_file=shapes.MODULE, examples=examples, train_steps=shapes.TRAIN_STEPS,
                          eval_steps=shapes.EVAL_STEPS, export_onnx='if_possible', **kwargs)  # the TFX surface's


def _native(name, root, nodes):
    return Pipeline(name=name, pipeline_root=root, components=nodes, metadata=f'sqlite:///{root}/metadata.db',
                    beam_pipeline_args=['--direct_num_workers=1'])


def native_simple(root):
    gen = native.CsvExampleGen(input_base=shapes.DATA)
    trainer = _native_trainer(gen.outputs['examples'])
    pusher = native.Pusher(model=trainer.outputs['model'], push_destination=os.path.join(root, SERVING))
    return _native('penguin-simple', root, [gen, trainer, pusher])


def native_tfdv(root):
    gen = native.CsvExampleGen(input_base=shapes.DATA, split_ratios={'train': 3, 'eval': 1})
    stats = native.StatisticsGen(examples=gen.outputs['examples'])
    schema = native.SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    check = native.ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    trainer = _native_trainer(gen.outputs['examples'], schema=schema.outputs['schema'])
    pusher = native.Pusher(model=trainer.outputs['model'], push_destination=os.path.join(root, SERVING))
    return _native('penguin-tfdv', root, [gen, stats, schema, check, trainer, pusher])


def native_tfma(root):
    gen = native.CsvExampleGen(input_base=shapes.DATA)
    trainer = _native_trainer(gen.outputs['examples'])
    evaluator = native.Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                                 eval_config=shapes.eval_config())
    validator = native.ModelValidator(model=trainer.outputs['model'], evaluation=evaluator.outputs['evaluation'],
                                      no_baseline='bless')
    pusher = native.Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
                           push_destination=os.path.join(root, SERVING))
    return _native('penguin-tfma', root, [gen, trainer, evaluator, validator, pusher])


def native_tft(root):
    gen = native.CsvExampleGen(input_base=shapes.DATA)
    stats = native.StatisticsGen(examples=gen.outputs['examples'])
    schema = native.ImportSchemaGen(schema_file=os.path.join(shapes.SCHEMA_DIR, 'schema.pbtxt')).with_id(
        'schema_importer')
    check = native.ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    transform = native.Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                                 module_file=shapes.MODULE)
    trainer = _native_trainer(gen.outputs['examples'], transform_graph=transform.outputs['transform_graph'])
    pusher = native.Pusher(model=trainer.outputs['model'], push_destination=os.path.join(root, SERVING))
    return _native('penguin-tft', root, [gen, stats, schema, check, transform, trainer, pusher])


NATIVE = {'simple': native_simple, 'tfdv': native_tfdv, 'tfma': native_tfma, 'tft': native_tft}
NODES = {
    'simple': ['CsvExampleGen', 'Trainer', 'Trainer.onnx', 'Pusher'],
    'tfdv': ['CsvExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator', 'Trainer', 'Trainer.onnx', 'Pusher'],
    'tfma': ['CsvExampleGen', 'Trainer', 'Trainer.onnx', 'Evaluator', 'ModelValidator', 'Pusher'],
    'tft': ['CsvExampleGen', 'StatisticsGen', 'schema_importer', 'ExampleValidator', 'Transform', 'Trainer',
            'Trainer.onnx', 'Pusher'],
}
KILL_AT = {'simple': 'Pusher', 'tfdv': 'SchemaGen', 'tfma': 'ModelValidator', 'tft': 'schema_importer'}


# -- the four shapes, end to end ------------------------------------------------------------------
@pytest.mark.parametrize('shape', ['simple', 'tfdv', 'tfma', 'tft'])
def test_tutorial_shape_runs_caches_matches_native_and_resumes_after_a_kill(shape, tmp_path, capsys):
    root = str(tmp_path / 'root')
    path = pipeline_file(tmp_path, shape, root, module_level=(shape == 'simple'))
    pipeline = load_pipeline(path)
    assert isinstance(pipeline, tfx.dsl.Pipeline) and isinstance(pipeline, Pipeline)
    assert sorted(pipeline.node_ids) == sorted(NODES[shape])
    store = MetadataStore(pipeline.metadata)

    # 1. Through TFX's runner: every node executes.
    first = tfx.orchestration.LocalDagRunner(progress=False).run(pipeline)
    assert first.node_states() == {n: 'COMPLETE' for n in NODES[shape]}, first.node_states()
    pushed = first['Pusher'].outputs['pushed_model']
    assert pushed.get('pushed') == 1
    version_dir = os.path.join(root, SERVING, pushed.get('pushed_version'))
    assert os.path.isfile(os.path.join(version_dir, 'saved_model.pb'))  # where TF Serving looks
    assert pushed.get('pushed_destination') == version_dir  # as TFX's PushedModel says
    [outcome] = [line for line in outcome_lines(first) if line.startswith('Pusher:')]
    if shape == 'tfma':  # gated: the blessing the Evaluator's thresholds produced, on the first run by value bounds
        blessing = first['ModelValidator'].outputs['blessing']
        assert blessing.get('blessed') == 1 and os.path.isfile(os.path.join(blessing.uri, 'BLESSED'))
        with open(os.path.join(blessing.uri, 'reasons.json')) as f:
            reasons = json.load(f)
        assert [(c['metric'], c['passed']) for c in reasons['checks']][:1] == [('sparse_categorical_accuracy', True)]
        assert pipeline.node('Evaluator').parameters['push_destination'] == os.path.join(root, SERVING)
        assert outcome == f'Pusher: pushed to {version_dir}'
        assert pushed.get('gated') is None
    else:  # TFX's Pusher without a blessing: pushed, and the output says nothing gated it
        assert outcome == f'Pusher: pushed to {version_dir} (no blessing gated this push)'
        assert pushed.get('gated') == 0 and 'no blessing gated this push' in pushed.get('reason')
    if shape == 'tfdv':
        assert first['ExampleValidator'].outputs['anomalies'].get('has_anomalies') in (0, None)

    # 2. Through `sluice run` on the same file: everything cached.
    capsys.readouterr()
    assert main(['run', path]) == 0
    second = newest_run(store, pipeline.name)
    assert states(store, second) == {n: ['CACHED'] for n in NODES[shape]}

    # 3. The same pipeline written for Sluice, on the same store: the same nodes, execution types and
    #    contexts, and every node a cache hit of the TFX-style run (same parameters, code and inputs).
    native = LocalDagRunner(progress=False).run(NATIVE[shape](root))
    assert native.node_states() == {n: 'CACHED' for n in NODES[shape]}
    assert recorded(store, native.run_id) == recorded(store, first.run_id)
    nodes, contexts = recorded(store, first.run_id)
    assert {('pipeline', pipeline.name), ('pipeline_run', 'RUN')} | {
        ('node', f'{pipeline.name}.{n}') for n in NODES[shape]} == contexts
    assert {n for n, _ in nodes} == set(NODES[shape])

    # 4. Killed inside a run (`sluice run --no-cache NODE` dies as NODE starts), then resumed.
    node = KILL_AT[shape]
    env = {**os.environ, 'PYTHONPATH': REPO, 'SLUICE_KILL_AT': f'{node}:start'}
    killed = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', path, '--no-cache', node], env=env,
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    run_id = newest_run(store, pipeline.name)
    assert states(store, run_id)[node] == ['RUNNING']
    assert main(['resume', run_id, '--metadata', pipeline.metadata]) == 0
    after = states(store, run_id)
    assert after[node] == ['FAILED', 'COMPLETE']  # abandoned, then run again
    assert all(after[n] == ['CACHED'] for n in NODES[shape] if n != node)
    assert not [r for r in store.executions(run_id) if r.state == 'RUNNING']


def test_a_gated_pusher_does_not_push_what_the_thresholds_refuse(tmp_path):
    """The Evaluator's thresholds decide: a bound no model reaches gives NOT_BLESSED, nothing pushed."""
    root = str(tmp_path / 'root')
    result = tfx.orchestration.LocalDagRunner(progress=False).run(shapes.create_tfma(root, min_accuracy=1.01))
    blessing = result['ModelValidator'].outputs['blessing']
    assert blessing.get('blessed') == 0 and os.path.isfile(os.path.join(blessing.uri, 'NOT_BLESSED'))
    assert result['Pusher'].outputs['pushed_model'].get('pushed') == 0
    assert not os.path.exists(os.path.join(root, SERVING)) or not [
        v for v in os.listdir(os.path.join(root, SERVING)) if v.isdigit()]
    assert any(line.startswith('Pusher: not pushed: the model is NOT_BLESSED') for line in outcome_lines(result))


def test_input_config_span_patterns_and_static_ranges_read_the_spans_asked_for(tmp_path):
    with open(os.path.join(shapes.DATA, 'penguins.csv')) as f:
        header, *rows = f.read().splitlines()
    for span, part in ((1, rows[:60]), (2, rows[60:120])):
        os.makedirs(tmp_path / 'data' / f'span-{span}')
        (tmp_path / 'data' / f'span-{span}' / 'penguins.csv').write_text('\n'.join([header, *part]) + '\n')
    spans = tfx.proto.Input(splits=[tfx.proto.Input.Split(name='single_split', pattern='span-{SPAN}/*.csv')])
    newest = tfx.components.CsvExampleGen(input_base=str(tmp_path / 'data'), input_config=spans)
    both = tfx.components.CsvExampleGen(
        input_base=str(tmp_path / 'data'), input_config=spans,
        range_config=tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=1,
                                                                              end_span_number=2))).with_id('both')
    pipeline = tfx.dsl.Pipeline(pipeline_name='spans', pipeline_root=str(tmp_path / 'root'), components=[newest, both])
    result = tfx.orchestration.LocalDagRunner(progress=False).run(pipeline)
    one, two = result['CsvExampleGen'].outputs['examples'], result['both'].outputs['examples']
    assert (one.get('span'), json.loads(one.get('spans'))) == (2, [2])
    assert (two.get('span'), json.loads(two.get('spans'))) == (2, [1, 2])
    assert sum(json.loads(two.get('row_counts')).values()) == 120


# -- the mapping of TFX's arguments (no runs) -----------------------------------------------------
def test_example_gen_configs_map_to_pattern_split_ratios_and_spans(tmp_path):
    gen = tfx.components.CsvExampleGen(
        input_base=str(tmp_path),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name='single_split', pattern='span-{SPAN}/*.csv')]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name='train', hash_buckets=4), tfx.proto.SplitConfig.Split(name='eval',
                                                                                               hash_buckets=1)])),
        range_config=tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=2,
                                                                              end_span_number=2)))
    assert type(gen) is native.CsvExampleGen
    assert gen.parameters['pattern'] == 'span-{SPAN}/*.csv'
    assert gen.parameters['split_ratios'] == {'train': 4, 'eval': 1}
    assert gen.parameters['span'] == 2
    ranged = tfx.components.CsvExampleGen(
        input_base=str(tmp_path), input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(pattern='d{SPAN}/*')]),
        range_config=tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=1, end_span_number=3)))
    assert ranged.parameters['span'] == (1, 3)
    plain = tfx.components.CsvExampleGen(input_base=str(tmp_path))  # TFX's defaults are Sluice's (train 2 : eval 1)
    assert plain.parameters == native.CsvExampleGen(input_base=str(tmp_path)).parameters


def test_trainer_transform_evaluator_pusher_arguments_map_to_sluice_parameters(tmp_path):
    gen = tfx.components.CsvExampleGen(input_base=str(tmp_path))
    trainer = tfx.components.Trainer(module_file='m.py', examples=gen.outputs['examples'],
                                     train_args=tfx.proto.TrainArgs(num_steps=30, splits=['train']),
                                     eval_args=tfx.proto.EvalArgs(num_steps=4, splits=['eval']),
                                     custom_config={'seed': 1}, export_onnx=False)
    assert type(trainer) is native.Trainer
    p = trainer.parameters
    assert (p['train_steps'], p['eval_steps'], p['train_split'], p['eval_split']) == (30, 4, 'train', 'eval')
    assert p['custom_config'] == {'seed': 1} and trainer.export_onnx is False and trainer.onnx_exporter is None
    assert p['module_file'] == os.path.abspath('m.py')
    exporter = tfx.components.Trainer(module_file='m.py', examples=gen.outputs['examples']).onnx_exporter
    assert exporter.parameters['export_onnx'] == 'if_possible'  # TFX exports no ONNX: made where it converts, else
    # the reason recorded
    schema = tfx.dsl.Importer(source_uri=shapes.SCHEMA_DIR, artifact_type=tfx.types.standard_artifacts.Schema)
    assert type(schema) is native.ImportSchemaGen
    assert schema.parameters['schema_file'] == os.path.join(shapes.SCHEMA_DIR, 'schema.pbtxt')
    assert schema.outputs['result'] is schema.outputs['schema']
    transform = tfx.components.Transform(examples=gen.outputs['examples'], schema=schema.outputs['result'],
                                         module_file='m.py', splits_config=tfx.proto.SplitsConfig(analyze=['eval']))
    assert transform.parameters['analyze_split'] == 'eval'
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], push_destination=tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(base_directory='out')))
    assert pusher.parameters['push_destination'] == os.path.abspath('out') and pusher.inputs['blessing'] is None


def test_evaluator_with_thresholds_brings_its_model_validator_and_the_resolver_is_no_node(tmp_path):
    gen = tfx.components.CsvExampleGen(input_base=str(tmp_path))
    trainer = tfx.components.Trainer(module_file='m.py', examples=gen.outputs['examples'])
    resolver = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                                model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
                                model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)
                                ).with_id('latest_blessed_model_resolver')
    evaluator = tfx.components.Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                                         baseline_model=resolver.outputs['model'], eval_config=shapes.eval_config()
                                         ).with_id('evaluate')
    pusher = tfx.components.Pusher(model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
                                   push_destination=str(tmp_path / 'serving'))
    assert type(evaluator) is native.Evaluator and evaluator.outputs['blessing'].producer.component_type == \
        'ModelValidator'
    pipeline = tfx.dsl.Pipeline(pipeline_name='p', pipeline_root=str(tmp_path / 'root'),
                                components=[gen, trainer, resolver, evaluator, pusher])
    assert pipeline.node_ids == ['CsvExampleGen', 'Trainer', 'Trainer.onnx', 'evaluate', 'evaluate_validator',
                                 'Pusher']
    assert pipeline.enable_cache is False  # TFX's default
    assert pipeline.node('evaluate').parameters['push_destination'] == str(tmp_path / 'serving')
    assert pipeline.node('evaluate_validator').parameters['no_baseline'] == 'bless'  # TFX's rubber stamp
    passthrough = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
                                   examples=gen.outputs['examples'])
    assert passthrough.outputs['examples'] is gen.outputs['examples']
    window = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.SpanRangeStrategy,
                              config={'range_config': tfx.proto.RangeConfig(
                                  rolling_range=tfx.proto.RollingRange(num_spans=3))},
                              examples=gen.outputs['examples'])
    assert type(window) is native.LatestSpans and window.parameters['n'] == 3


def test_stores_and_module_file_surface(tmp_path):
    from google.protobuf import json_format, text_format
    from ml_metadata.proto import metadata_store_pb2

    mysql = tfx.orchestration.metadata.mysql_metadata_connection_config(
        host='db', port=3306, database='mlmd', username='u', password='p@ss')
    assert isinstance(mysql, metadata_store_pb2.ConnectionConfig) and mysql.mysql.password == 'p@ss'
    assert tfx.orchestration.metadata.ConnectionConfigType is metadata_store_pb2.ConnectionConfig
    gen = tfx.components.CsvExampleGen(input_base=os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'data'))
    pipeline = tfx.dsl.Pipeline(pipeline_name='p', pipeline_root=str(tmp_path), components=[gen],
                                metadata_connection_config=mysql)
    assert pipeline.metadata == 'mysql://u:p%40ss@db:3306/mlmd'
    # TFX's form of a SQLite store: a real ML-Metadata message, readable with protobuf's own formats.
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / 'sub' / 'm.db'))
    assert text_format.Parse(text_format.MessageToString(config), metadata_store_pb2.ConnectionConfig()) == config
    assert json_format.MessageToDict(config)['sqlite']['filenameUri'] == str(tmp_path / 'sub' / 'm.db')
    pipeline = tfx.dsl.Pipeline(pipeline_name='p', pipeline_root=str(tmp_path / 'root'), components=[gen],
                                metadata_connection_config=config, beam_pipeline_args=['--direct_num_workers=1'])
    assert pipeline.metadata == f"sqlite:///{tmp_path / 'sub' / 'm.db'}"
    tfx.orchestration.LocalDagRunner(progress=False).run(pipeline)
    # TFX's inspection handle reads what the run recorded, with ML-Metadata's own API.
    with tfx.orchestration.metadata.Metadata(config) as m:
        [examples] = m.store.get_artifacts_by_type('Examples')
        assert examples.uri.startswith(str(tmp_path / 'root'))
    with pytest.raises(WiringError, match='takes what tfx.orchestration.metadata.sqlite_metadata_connection_config'):
        tfx.dsl.Pipeline(pipeline_name='p', pipeline_root=str(tmp_path), components=[gen], metadata_connection_config=3)
    assert tfx.components.FnArgs is native.FnArgs and tfx.components.TrainerFnArgs is native.FnArgs
    assert tfx.components.DataAccessor is native.DataAccessor
    assert tfx.types.standard_artifacts.Model is native.Model
    from sluice.tfx.v1.components import FnArgs  # the import lines of TFX's module files work as imports too
    assert FnArgs is native.FnArgs
    code = ('import sys; from sluice.tfx import v1 as tfx; '
            'print(sorted(m for m in ("tensorflow", "tensorflow_model_analysis", "apache_beam") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': REPO}, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == '[]', out.stderr[-2000:]


def test_infra_validator_maps_tfx_specs_and_the_pusher_takes_the_model_it_checked(tmp_path):
    gen = tfx.components.CsvExampleGen(input_base=str(tmp_path))
    trainer = tfx.components.Trainer(module_file='m.py', examples=gen.outputs['examples'])
    spec = tfx.proto.ServingSpec(tensorflow_serving=tfx.proto.TensorFlowServing(tags=['2.8.2']),
                                 local_docker=tfx.proto.LocalDockerConfig(host_ip_address='localhost'))
    infra = tfx.components.InfraValidator(
        model=trainer.outputs['model'], examples=gen.outputs['examples'], serving_spec=spec,
        request_spec=tfx.proto.RequestSpec(tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(),
                                           num_examples=3, make_warmup=True),
        validation_spec=tfx.proto.ValidationSpec(max_loading_time_seconds=90))
    assert isinstance(infra, native.InfraValidator)
    assert infra.parameters['time_limit_seconds'] == 90.0 and infra.parameters['num_examples'] == 3
    assert infra.inputs['examples'] is gen.outputs['examples'] and infra.parameters['split_name'] == ''
    load_only = tfx.components.InfraValidator(model=trainer.outputs['model'], serving_spec=spec,
                                              examples=gen.outputs['examples'])
    assert load_only.parameters['time_limit_seconds'] == 300.0  # TFX's default loading limit when unset
    assert load_only.inputs.get('examples') is None  # no request_spec: TFX only loads the model
    # TFX's make_warmup wiring: the Pusher has no model input of its own; it pushes the one checked.
    pusher = tfx.components.Pusher(model_blessing=None, infra_blessing=infra.outputs['blessing'],
                                   push_destination=tfx.proto.PushDestination(
                                       filesystem=tfx.proto.PushDestination.Filesystem(base_directory='out')))
    assert pusher.inputs['model'] is trainer.outputs['model'] and pusher.inputs['infra_blessing'].producer is infra
    with pytest.raises(WiringError, match=r"^tfx.components.InfraValidator needs serving_spec=tfx.proto.ServingSpec"):
        tfx.components.InfraValidator(model=trainer.outputs['model'])
    with pytest.raises(WiringError, match=r'^tfx.components.InfraValidator\(request_spec=...\) takes a '
                                          r'tfx.proto.RequestSpec; got dict.$'):
        tfx.components.InfraValidator(model=trainer.outputs['model'], serving_spec=spec, request_spec={})
    _raises(lambda: tfx.components.InfraValidator(model=trainer.outputs['model'], serving_spec=tfx.proto.ServingSpec(
        tensorflow_serving=tfx.proto.TensorFlowServing(), kubernetes=tfx.proto.KubernetesConfig())),
        'tfx.components.InfraValidator(serving_spec=ServingSpec(kubernetes=...)) is not offered by Sluice: Sluice '
        'checks the model in sluice serve on the machine running the node; give local_docker=tfx.proto.'
        'LocalDockerConfig() (or nothing) for that check')
    _raises(lambda: tfx.components.InfraValidator(model=trainer.outputs['model'], serving_spec=spec,
                                                  validation_spec=tfx.proto.ValidationSpec(num_tries=5)),
            'tfx.components.InfraValidator(validation_spec=ValidationSpec(num_tries=5)) is not offered by Sluice: '
            'Sluice checks once; let the node be tried again with .with_retry(Retry(attempts=N))')
    _raises(lambda: tfx.proto.PodOverrides,
            "tfx.proto.PodOverrides is not offered by Sluice: Sluice's InfraValidator checks the model in its own "
            "server (sluice serve, ONNX Runtime) on this machine, not in TF Serving in a container: give "
            "tfx.proto.ServingSpec(tensorflow_serving=..., local_docker=...) without pod settings (README, 'Serving')")


# -- what is not offered: named, with the Sluice way ------------------------------------------------
def _raises(call, message):
    with pytest.raises(tfx.NotOffered) as info:
        call()
    assert str(info.value) == message
    return info.value


def test_what_is_not_offered_fails_at_import_or_construction_naming_it_and_the_sluice_way(tmp_path):
    _raises(lambda: tfx.proto.FeatureComparator,
            'tfx.proto.FeatureComparator is not offered by Sluice: use ExampleValidator(drift_thresholds={...}) for '
            'drift between splits or spans')
    with pytest.raises(ImportError, match='^tfx.dsl.ExecutionMode is not offered by Sluice: Sluice runs pipelines '
                                          'synchronously$'):
        from sluice.tfx.v1.dsl import ExecutionMode  # noqa: F401
    _raises(lambda: tfx.orchestration.experimental,
            "tfx.orchestration.experimental is not offered by Sluice: Sluice's other ways of running are "
            "pipelines.BeamDagRunner, `sluice export airflow` and `sluice export kfp` (README, 'Runners')")
    with pytest.raises(AttributeError, match="has no attribute 'Trainr'. Did you mean 'Trainer'?"):
        tfx.components.Trainr  # noqa: B018

    gen = tfx.components.CsvExampleGen(input_base=str(tmp_path))
    _raises(lambda: tfx.components.CsvExampleGen(input_base=str(tmp_path), output_config=tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(partition_feature_name='day'))),
        "tfx.components.CsvExampleGen(output_config=...partition_feature_name='day') is not offered by Sluice: "
        'Sluice splits by a hash of each row (SplitConfig.Split(name, hash_buckets))')
    with pytest.raises(WiringError, match=r'^tfx.components.CsvExampleGen: input_config has 2 splits, so the data '
                                          r'is split already; give no output_config \(as in TFX\).$'):
        tfx.components.CsvExampleGen(input_base=str(tmp_path), input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name='train', pattern='train/*'), tfx.proto.Input.Split(name='eval', pattern='eval/*')]),
            output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
                tfx.proto.SplitConfig.Split(name='train', hash_buckets=1)])))
    _raises(lambda: tfx.components.CsvExampleGen(input_base=str(tmp_path), range_config=tfx.proto.RangeConfig(
        rolling_range=tfx.proto.RollingRange(num_spans=2))),
        'tfx.components.CsvExampleGen(range_config=RangeConfig(rolling_range=...)) is not offered by Sluice: an '
        'ExampleGen reads one span or a static range (as in TFX); a rolling window of the newest spans is '
        'tfx.dsl.Resolver(strategy_class=SpanRangeStrategy, ...), i.e. components.LatestSpans(example_gen, n=N)')
    _raises(lambda: tfx.components.Trainer(run_fn='module.run_fn', examples=gen.outputs['examples']),
            'tfx.components.Trainer(run_fn=...) is not offered by Sluice: give module_file=, the file that defines '
            'run_fn')
    _raises(lambda: tfx.components.Transform(examples=gen.outputs['examples'], schema=None, module_file='m.py',
                                             splits_config=tfx.proto.SplitsConfig(transform=['train'])),
            'tfx.components.Transform(splits_config=SplitsConfig(transform=[...])) is not offered by Sluice: Sluice '
            'transforms every split')
    trainer = tfx.components.Trainer(module_file='m.py', examples=gen.outputs['examples'])
    no_thresholds = tfx.components.Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                                             eval_config={'label_key': 'species', 'metrics': ['AUC']})
    _raises(lambda: tfx.components.Pusher(model=trainer.outputs['model'], push_destination='out',
                                          model_blessing=no_thresholds.outputs['blessing']),
            "tfx.components.Pusher(model_blessing=Evaluator (its eval_config has no thresholds).outputs['blessing']) "
            'is not offered by Sluice: as in TFX, an Evaluator without thresholds never blesses a model; put '
            'thresholds in the tfma.EvalConfig (MetricConfig(threshold=...), MetricsSpec(thresholds=...) or '
            'per_slice_thresholds)')
    _raises(lambda: tfx.components.Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                                             baseline_model=trainer.outputs['model'], eval_config=shapes.eval_config()),
            "tfx.components.Evaluator(baseline_model=Trainer.outputs['model']) is not offered by Sluice: the baseline "
            "is the model in production at the Pusher's destination; give baseline_model=tfx.dsl.Resolver("
            "strategy_class=LatestBlessedModelStrategy, ...).outputs['model'] or nothing")
    _raises(lambda: tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
                                     model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)),
            'tfx.dsl.Resolver(strategy_class=LatestArtifactStrategy, model=tfx.dsl.Channel(type=Model)) (the newest '
            "artifact of an earlier run) is not offered by Sluice: a Sluice node reads this run's outputs: pass a "
            "component's output (component.outputs['key']); the Evaluator's baseline is the model in production (a "
            'LatestBlessedModelStrategy resolver); to warm-start, Trainer(..., warm_start_from=PUSH_DESTINATION) '
            'starts from the model in production; a window of spans is components.LatestSpans')
    _raises(lambda: tfx.dsl.Importer(source_uri=str(tmp_path), artifact_type=tfx.types.standard_artifacts.Model),
            'tfx.dsl.Importer(artifact_type=Model) is not offered by Sluice: put a model in production by hand with '
            '`sluice promote MODEL_ID DEST --reason TEXT`, or copy a SavedModel into a new version directory of the '
            'destination')
    _raises(lambda: tfx.dsl.Pipeline(pipeline_name='p', pipeline_root=str(tmp_path), components=[gen],
                                     platform_config=object()),
            'tfx.dsl.Pipeline(platform_config=...) is not offered by Sluice: Sluice runs nodes on this machine; the '
            'data work runs on Beam (beam_pipeline_args=[...], README "Beyond one machine")')
    with pytest.raises(ValueError, match='Protocol message TrainArgs has no "num_step" field'):
        tfx.proto.TrainArgs(num_step=3)


def test_a_failed_run_raises_as_tfx_runner_does_and_names_the_resume_command(tmp_path):
    gen = tfx.components.CsvExampleGen(input_base=str(tmp_path / 'missing'))
    pipeline = tfx.dsl.Pipeline(pipeline_name='broken', pipeline_root=str(tmp_path / 'root'), components=[gen])
    with pytest.raises(tfx.orchestration.RunFailed) as info:
        tfx.orchestration.LocalDagRunner(progress=False).run(pipeline)
    run_id = info.value.result.run_id
    assert str(info.value).startswith(f"Run {run_id} of pipeline 'broken' failed (CsvExampleGen: ")
    assert str(info.value).endswith(f'continue the same run with: sluice resume {run_id} --metadata {pipeline.metadata}')


def test_module_file_in_tfx_style_imports_through_the_one_line_change():
    with open(os.path.join(TFX_STYLE, 'penguin_trainer.py')) as f:
        source = f.read()
    assert 'from sluice.tfx import v1 as tfx' in source
    assert not re.search(r'^\s*(from tfx[ .]|import tfx\b)', source, re.M)  # nothing imported from TFX itself
    assert 'def run_fn(fn_args: tfx.components.FnArgs)' in source  # (the module runs in every shape above)
    # TFX's DataAccessor has a third field, None for a Trainer given no DataView (Sluice has none).
    accessor = tfx.components.DataAccessor(tf_dataset_factory=len, record_batch_factory=len)
    assert accessor.data_view_decode_fn is None and accessor.tf_dataset_factory is len
