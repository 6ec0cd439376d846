"""ExampleDiff on real examples: two CSV files made into Examples by CsvExampleGen, paired by an id
column, compared by TFDV's skew detector on Beam. The expected counts are worked out here from the
rows themselves; the TFX surface's ExampleDiff makes the same node."""
from __future__ import annotations

import glob
import json
import os

import pytest

from sluice import LocalDagRunner, Pipeline
from sluice.components import CsvExampleGen, ExampleDiff, WiringError
from sluice.components.example_diff import load_example_diff
from sluice.tfx import v1 as tfx

HEADER = 'trip_id,fare,company\n'
BASE = [(i, round(5 + i * 0.5, 2), 'abc'[i % 3]) for i in range(1, 21)]


def _csv(path, rows):
    path.mkdir(parents=True)
    (path / 'rows.csv').write_text(HEADER + ''.join(f'{i},{fare},{company}\n' for i, fare, company in rows))


def _pipeline(tmp_path, **diff_args):
    test = [r for r in BASE if r[0] != 20]  # trip 20 only in the baseline
    test = [(i, fare + 1 if i in (3, 7) else fare, 'z' if i == 5 else company) for i, fare, company in test]
    test.append((99, 1.0, 'a'))  # only in the test side
    _csv(tmp_path / 'base', BASE)
    _csv(tmp_path / 'test', test)
    one_split = {'all': 1}  # each side one split, so that every trip can find its pair
    base = CsvExampleGen(input_base=str(tmp_path / 'base'), split_ratios=one_split).with_id('base')
    served = CsvExampleGen(input_base=str(tmp_path / 'test'), split_ratios=one_split).with_id('served')
    diff = ExampleDiff(examples=served.outputs['examples'], baseline_examples=base.outputs['examples'],
                       identifier_features=['trip_id'], **diff_args)
    return Pipeline(name='diff', pipeline_root=str(tmp_path / 'root'), components=[base, served, diff],
                    beam_pipeline_args=['--direct_num_workers=1'])


def test_paired_examples_are_compared_feature_by_feature(tmp_path):
    result = LocalDagRunner(progress=False).run(_pipeline(tmp_path, skew_sample_size=5, confusion_features=['company']))
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    diff = result['ExampleDiff'].outputs['example_diff']
    assert json.loads(diff.get('split_pairs')) == [['all', 'all']]
    assert json.loads(diff.get('skewed_features')) == ['company', 'fare']
    found = load_example_diff(diff, 'all', 'all')
    match = found['match_stats']
    # 20 baseline trips, 20 test trips (19 shared + trip 99): 19 pairs, one id on each side alone.
    assert (int(match['base_with_id_count']), int(match['test_with_id_count'])) == (20, 20)
    assert int(match['matching_pairs_count']) == 19
    assert (int(match['ids_missing_in_base_count']), int(match['ids_missing_in_test_count'])) == (1, 1)
    features = {f['feature_name']: f for f in found['features']}
    assert set(features) == {'fare', 'company'}  # the identifier itself is not compared
    assert int(features['fare']['mismatch_count']) == 2 and int(features['fare']['match_count']) == 17
    assert int(features['company']['mismatch_count']) == 1 and int(features['company']['match_count']) == 18
    # TFDV's own records are there beside the summary, as TFX's ExampleDiff writes them.
    where = os.path.join(diff.uri, 'SplitPair-all_all')
    for prefix in ('skew_stats', 'match_stats', 'sample_pairs', 'confusion'):
        assert glob.glob(os.path.join(where, prefix + '*-of-*')), prefix
    # A re-run with nothing changed reuses it.
    again = LocalDagRunner(progress=False).run(_pipeline_again(tmp_path))
    assert again.node_states()['ExampleDiff'] == 'CACHED'


def _pipeline_again(tmp_path):
    base = CsvExampleGen(input_base=str(tmp_path / 'base'), split_ratios={'all': 1}).with_id('base')
    served = CsvExampleGen(input_base=str(tmp_path / 'test'), split_ratios={'all': 1}).with_id('served')
    diff = ExampleDiff(examples=served.outputs['examples'], baseline_examples=base.outputs['examples'],
                       identifier_features=['trip_id'], skew_sample_size=5, confusion_features=['company'])
    return Pipeline(name='diff', pipeline_root=str(tmp_path / 'root'), components=[base, served, diff],
                    beam_pipeline_args=['--direct_num_workers=1'])


def test_a_split_pair_that_does_not_exist_fails_the_node_naming_the_splits(tmp_path):
    result = LocalDagRunner(progress=False).run(_pipeline(tmp_path, split_pairs=[['all', 'eval']]))
    assert result.node_states()['ExampleDiff'] == 'FAILED'
    assert ("split_pairs all/eval not found: examples has splits ['all'], baseline_examples has ['all']"
            in result['ExampleDiff'].error)


def test_wiring_errors_and_the_tfx_surface(tmp_path):
    gen = CsvExampleGen(input_base=str(tmp_path))
    with pytest.raises(WiringError, match='identifier_features needs at least one feature'):
        ExampleDiff(examples=gen.outputs['examples'], baseline_examples=gen.outputs['examples'], identifier_features=[])
    node = tfx.components.ExampleDiff(
        examples=gen.outputs['examples'], baseline_examples=gen.outputs['examples'],
        config=tfx.proto.ExampleDiffConfig(paired_example_skew=tfx.proto.PairedExampleSkew(
            identifier_features=['trip_id'], skew_sample_size=3, ignore_features=['note'], float_round_ndigits=2,
            confusion_config=[tfx.proto.PairedExampleSkew.ConfusionConfig(feature_name='company')])),
        include_split_pairs=[('train', 'train')])
    assert isinstance(node, ExampleDiff)
    assert {k: node.parameters[k] for k in ('identifier_features', 'skew_sample_size', 'ignore_features',
                                            'float_round_ndigits', 'confusion_features', 'split_pairs')} == {
        'identifier_features': ['trip_id'], 'skew_sample_size': 3, 'ignore_features': ['note'],
        'float_round_ndigits': 2, 'confusion_features': ['company'], 'split_pairs': [['train', 'train']]}
    assert tfx.types.standard_artifacts.ExamplesDiff is node.OUTPUTS['example_diff'].type
    with pytest.raises(WiringError, match=r'^tfx.components.ExampleDiff needs config=tfx.proto.ExampleDiffConfig'):
        tfx.components.ExampleDiff(examples=gen.outputs['examples'], baseline_examples=gen.outputs['examples'])
