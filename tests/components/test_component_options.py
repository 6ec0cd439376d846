"""Options TFX's components have and Sluice's take too: Transform's ``custom_config`` reaches
``preprocessing_fn(inputs, custom_config)`` (TFX's contract), is part of the cache key, and a
``preprocessing_fn`` that does not declare it fails the node clearly; ``exclude_splits`` of
StatisticsGen and ExampleValidator."""
from __future__ import annotations

import glob
import json
import os
import textwrap

import pytest

from sluice import LocalDagRunner, Pipeline
from sluice.components import (CsvExampleGen, ExampleValidator, ImportSchemaGen, StatisticsGen, Transform,
                               WiringError)
from sluice.tfx import v1 as tfx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')

MODULE = textwrap.dedent('''
    def preprocessing_fn(inputs, custom_config):
        return {'mass': inputs['body_mass_g'] * custom_config['scale'], 'species': inputs['species']}
''')


def _pipeline(tmp_path, module: str, custom_config: dict) -> Pipeline:
    module_file = tmp_path / 'module.py'
    module_file.write_text(module)
    gen = CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'))
    schema = ImportSchemaGen(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'))
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                          module_file=str(module_file), custom_config=custom_config)
    return Pipeline(name='config', pipeline_root=str(tmp_path / 'root'), components=[gen, schema, transform],
                    beam_pipeline_args=['--direct_num_workers=1'])


def _values(examples, split: str, feature: str) -> list[float]:
    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(os.path.join(examples.split_uri(split), '*.gz'))):
        for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
            example = tf.train.Example.FromString(record.numpy())
            out.extend(example.features.feature[feature].float_list.value)
    return out


def test_custom_config_reaches_preprocessing_fn_and_keys_the_cache(tmp_path):
    runner = LocalDagRunner(progress=False)
    one = runner.run(_pipeline(tmp_path, MODULE, {'scale': 1.0}))
    assert one.state == 'COMPLETE', {k: n.error for k, n in one.nodes.items() if n.error}
    ten = runner.run(_pipeline(tmp_path, MODULE, {'scale': 10.0}))
    assert ten.node_states()['Transform'] == 'COMPLETE'  # another config: executed again, not reused
    raw = _values(one['Transform'].outputs['transformed_examples'], 'train', 'mass')
    scaled = _values(ten['Transform'].outputs['transformed_examples'], 'train', 'mass')
    assert len(raw) == len(scaled) > 100
    assert all(abs(b - 10 * a) < 1e-5 for a, b in zip(raw, scaled))
    again = runner.run(_pipeline(tmp_path, MODULE, {'scale': 10.0}))
    assert again.node_states()['Transform'] == 'CACHED'
    # The TFX surface passes it through.
    gen = tfx.components.CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'))
    schema = tfx.components.ImportSchemaGen(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'))
    surface = tfx.components.Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                                       module_file=str(tmp_path / 'module.py'), custom_config={'scale': 2.0})
    assert surface.parameters['custom_config'] == {'scale': 2.0}


def test_custom_config_for_a_preprocessing_fn_without_it_fails_the_node_naming_both(tmp_path):
    plain = "def preprocessing_fn(inputs):\n    return {'mass': inputs['body_mass_g']}\n"
    result = LocalDagRunner(progress=False).run(_pipeline(tmp_path, plain, {'scale': 2.0}))
    node = result['Transform']
    assert node.state == 'FAILED' and not node.outputs
    assert (f"Transform was given custom_config={{'scale': 2.0}}, but preprocessing_fn in {tmp_path / 'module.py'} "
            'takes no custom_config parameter; declare it: def preprocessing_fn(inputs, custom_config).') in node.error


def test_exclude_splits_leaves_splits_out_of_statistics_and_validation(tmp_path):
    gen = CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'))
    stats = tfx.components.StatisticsGen(examples=gen.outputs['examples'], exclude_splits=['eval'])
    schema = ImportSchemaGen(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'))
    check = tfx.components.ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'],
                                            exclude_splits=['eval', 'test'])  # a split it lacks is ignored
    none_left = StatisticsGen(examples=gen.outputs['examples'], exclude_splits=['train', 'eval']).with_id('nothing')
    result = LocalDagRunner(progress=False).run(Pipeline(
        name='splits', pipeline_root=str(tmp_path / 'root'), components=[gen, stats, schema, check, none_left],
        beam_pipeline_args=['--direct_num_workers=1']))
    statistics = result['StatisticsGen'].outputs['statistics']
    assert statistics.split_names == ['train']
    assert os.path.isdir(statistics.split_uri('train')) and not os.path.exists(statistics.split_uri('eval'))
    assert result['ExampleValidator'].state == 'COMPLETE'
    assert result['ExampleValidator'].outputs['anomalies'].split_names == ['train']
    assert isinstance(check, ExampleValidator) and check.parameters['exclude_splits'] == ['eval', 'test']
    assert result['nothing'].state == 'FAILED' and not result['nothing'].outputs
    assert "exclude_splits=['train', 'eval'] leaves none of the splits of Examples(" in result['nothing'].error
    assert '(train, eval); exclude fewer.' in result['nothing'].error


def _split_files(base, rows_by_dir: dict[str, int], header='a,b\n') -> None:
    for directory, n in rows_by_dir.items():
        (base / directory).mkdir(parents=True)
        (base / directory / 'rows.csv').write_text(header + ''.join(f'{i},{directory}\n' for i in range(n)))


def _split_values(examples, split: str) -> set[str]:
    import tensorflow as tf

    out = set()
    for path in glob.glob(os.path.join(examples.split_uri(split), '*.gz')):
        for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
            out.update(v.decode() for v in tf.train.Example.FromString(record.numpy()).features.feature['b']
                       .bytes_list.value)
    return out


def test_data_split_already_is_read_split_by_split_through_the_tfx_surface(tmp_path):
    base = tmp_path / 'data'
    _split_files(base, {'span-1/train': 9, 'span-1/eval': 4, 'span-2/train': 7, 'span-2/eval': 3})
    gen = tfx.components.CsvExampleGen(input_base=str(base), input_config=tfx.proto.Input(splits=[
        tfx.proto.Input.Split(name='train', pattern='span-{SPAN}/train/*.csv'),
        tfx.proto.Input.Split(name='eval', pattern='span-{SPAN}/eval/*.csv')]))
    assert gen.parameters['input_splits'] == {'train': 'span-{SPAN}/train/*.csv', 'eval': 'span-{SPAN}/eval/*.csv'}
    result = LocalDagRunner(progress=False).run(Pipeline(name='presplit', pipeline_root=str(tmp_path / 'root'),
                                                         components=[gen], beam_pipeline_args=['--direct_num_workers=1']))
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    examples = result['CsvExampleGen'].outputs['examples']
    assert examples.split_names == ['train', 'eval'] and examples.get('span') == 2  # the newest span
    counts = examples.get('row_counts')
    assert (json.loads(counts) if isinstance(counts, str) else counts) == {'train': 7, 'eval': 3}
    assert _split_values(examples, 'train') == {'span-2/train'}  # every row where its file put it
    assert _split_values(examples, 'eval') == {'span-2/eval'}


def test_input_splits_that_overlap_or_select_other_spans_fail_naming_the_files(tmp_path):
    base = tmp_path / 'data'
    _split_files(base, {'span-1/train': 3, 'span-1/eval': 2, 'span-2/train': 3})
    overlap = CsvExampleGen(input_base=str(base), input_splits={'train': 'span-1/*/*.csv', 'eval': 'span-1/eval/*.csv'})
    spans = CsvExampleGen(input_base=str(base), input_splits={'train': 'span-{SPAN}/train/*.csv',
                                                              'eval': 'span-{SPAN}/eval/*.csv'}).with_id('spans')
    result = LocalDagRunner(progress=False).run(Pipeline(name='bad', pipeline_root=str(tmp_path / 'root'),
                                                         components=[overlap, spans]))
    assert result['CsvExampleGen'].state == 'FAILED' and not result['CsvExampleGen'].outputs
    assert (f"{base / 'span-1' / 'eval' / 'rows.csv'} matches the patterns of split train (span-1/*/*.csv) and of "
            'split eval (span-1/eval/*.csv); a file belongs to one split: make the patterns exclusive.'
            in result['CsvExampleGen'].error)
    assert result['spans'].state == 'FAILED'
    assert ('split eval (span-{SPAN}/eval/*.csv) selects span 1 (1 files) but split train (span-{SPAN}/train/*.csv) '
            'selects span 2 (1 files)' in result['spans'].error)
    with pytest.raises(WiringError, match='reads each split from its own pattern; pass neither pattern= nor '
                                          'split_ratios= with it'):
        CsvExampleGen(input_base=str(base), input_splits={'train': 'a/*'}, split_ratios={'train': 1})
