"""StatisticsGen, SchemaGen, ImportSchemaGen and ExampleValidator executors on real data (no store)."""
from __future__ import annotations

import os

import pytest

from sluice.components import AnomaliesFound, CsvExampleGen, ExampleValidator, SchemaGen, StatisticsGen, WiringError
from sluice.components.example_gen.csv_input import CsvExampleGenExecutor
from sluice.components.example_validator import ANOMALIES_FILE, ExampleValidatorExecutor
from sluice.components.schema_gen import ImportSchemaGenExecutor, SchemaGenExecutor, load_schema
from sluice.components.statistics_gen import StatisticsGenExecutor, load_statistics
from sluice.metadata import ExampleAnomalies, Examples, ExampleStatistics, Schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')


def _dir(tmp, name):
    path = tmp / name
    path.mkdir(exist_ok=True)
    return str(path)


def make_stats(tmp, input_base, name):
    examples = Examples(uri=_dir(tmp, f'{name}-examples'))
    CsvExampleGenExecutor().run(input_base=input_base, split_ratios={'train': 2, 'eval': 1}, examples=examples)
    stats = ExampleStatistics(uri=_dir(tmp, f'{name}-stats'))
    StatisticsGenExecutor().run(examples=examples, statistics=stats, num_top_values=20, num_histogram_buckets=10)
    return examples, stats


@pytest.fixture(scope='module')
def penguins(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('penguins')
    clean = make_stats(tmp, os.path.join(PENGUIN, 'data'), 'clean')
    skewed = make_stats(tmp, os.path.join(PENGUIN, 'skewed'), 'skewed')
    return tmp, clean, skewed


def test_statistics_per_split_match_the_rows_written(penguins):
    _, (examples, stats), _ = penguins
    import json
    counts = json.loads(examples.get('row_counts'))
    assert stats.split_names == ['train', 'eval']
    for split in ('train', 'eval'):
        assert os.path.isfile(os.path.join(stats.uri, f'Split-{split}', 'FeatureStats.pb'))
        [dataset] = load_statistics(stats, split).datasets
        assert dataset.num_examples == counts[split]
        assert sorted(f.path.step[0] for f in dataset.features) == [
            'body_mass_g', 'culmen_depth_mm', 'culmen_length_mm', 'flipper_length_mm', 'species']
    assert counts['train'] + counts['eval'] == 334


def test_schema_gen_infers_from_train_and_import_schema_gen_checks_the_file(penguins, tmp_path):
    from tensorflow_metadata.proto.v0 import schema_pb2

    _, (_, stats), _ = penguins
    schema = Schema(uri=_dir(tmp_path, 'schema'))
    SchemaGenExecutor().run(statistics=stats, schema=schema, infer_feature_shape=True, split='train')
    proto = load_schema(schema)
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in proto.feature}
    assert types == {'species': 'INT', 'culmen_length_mm': 'FLOAT', 'culmen_depth_mm': 'FLOAT',
                     'flipper_length_mm': 'FLOAT', 'body_mass_g': 'FLOAT'}
    assert all(f.shape.dim[0].size == 1 for f in proto.feature)  # infer_feature_shape
    with pytest.raises(ValueError, match=r"infers the schema from split 'training', but the statistics have only "
                                         r'train, eval; pass split=\.\.\. to choose one'):
        SchemaGenExecutor().run(statistics=stats, schema=schema, infer_feature_shape=True, split='training')

    bad = tmp_path / 'bad.pbtxt'
    bad.write_text('feature { name: "x" type: NOT_A_TYPE }\n')
    with pytest.raises(ValueError, match=r'Schema file .*/bad\.pbtxt does not parse as a tensorflow_metadata Schema '
                                         r'in text format: .*NOT_A_TYPE.*Fix it, or regenerate it with SchemaGen'):
        ImportSchemaGenExecutor().run(schema_file=str(bad), schema=Schema(uri=_dir(tmp_path, 'imported')))
    curated = Schema(uri=_dir(tmp_path, 'curated'))
    ImportSchemaGenExecutor().run(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'), schema=curated)
    assert [f.name for f in load_schema(curated).feature] == [f.name for f in proto.feature]


def _curated(tmp_path):
    schema = Schema(uri=_dir(tmp_path, 'curated'))
    ImportSchemaGenExecutor().run(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'), schema=schema)
    return schema


def test_clean_data_has_no_anomalies(penguins, tmp_path, capsys):
    _, (_, stats), _ = penguins
    out = ExampleAnomalies(uri=_dir(tmp_path, 'anomalies'))
    ExampleValidatorExecutor().run(statistics=stats, schema=_curated(tmp_path), baseline_statistics=None,
                                   anomalies=out, fail_on_anomalies=True, drift_thresholds={})
    assert out.get('has_anomalies') == 0 and out.split_names == ['train', 'eval']
    assert "ExampleValidator: split 'train': no anomalies" in capsys.readouterr().out


def test_skewed_data_fails_against_the_clean_schema(penguins, tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    _, _, (_, skewed) = penguins
    with pytest.raises(AnomaliesFound, match=r"(?s)the data does not match the schema:\n  split '(train|eval)': "
                                             r"feature 'culmen_length_mm': Out-of-range values \(Unexpectedly low "
                                             r'values: -1<0.*set fail_on_anomalies=False to go on anyway'):
        ExampleValidatorExecutor().run(statistics=skewed, schema=_curated(tmp_path), baseline_statistics=None,
                                       anomalies=ExampleAnomalies(uri=_dir(tmp_path, 'a1')), fail_on_anomalies=True,
                                       drift_thresholds={})
    out = ExampleAnomalies(uri=_dir(tmp_path, 'a2'))
    ExampleValidatorExecutor().run(statistics=skewed, schema=_curated(tmp_path), baseline_statistics=None,
                                   anomalies=out, fail_on_anomalies=False, drift_thresholds={})
    assert out.get('has_anomalies') == 1
    found = {}
    for split in out.split_names:
        with open(os.path.join(out.split_uri(split), ANOMALIES_FILE), 'rb') as f:
            found[split] = set(anomalies_pb2.Anomalies.FromString(f.read()).anomaly_info)
    assert set().union(*found.values()) == {'culmen_length_mm'}


def test_drift_against_a_baseline(tmp_path):
    base_dir, new_dir = tmp_path / 'base', tmp_path / 'new'
    base_dir.mkdir()
    new_dir.mkdir()
    (base_dir / 'd.csv').write_text('color,size\n' + ''.join(f'{"red" if i % 2 else "blue"},{i % 10}\n' for i in range(400)))
    (new_dir / 'd.csv').write_text('color,size\n' + ''.join(f'{"red" if i % 10 else "blue"},{i % 10}\n' for i in range(400)))
    _, base = make_stats(tmp_path, str(base_dir), 'base')
    _, new = make_stats(tmp_path, str(new_dir), 'new')
    schema = Schema(uri=_dir(tmp_path, 'schema'))
    SchemaGenExecutor().run(statistics=base, schema=schema, infer_feature_shape=True, split='train')
    out = ExampleAnomalies(uri=_dir(tmp_path, 'drift'))
    ExampleValidatorExecutor().run(statistics=new, schema=schema, baseline_statistics=base, anomalies=out,
                                   fail_on_anomalies=False, drift_thresholds={'color': {'infinity_norm': 0.1}})
    summary = out.get('summary')
    assert out.get('has_anomalies') == 1 and 'color' in summary and 'High Linfty distance' in summary
    # The same data against itself does not drift.
    same = ExampleAnomalies(uri=_dir(tmp_path, 'same'))
    ExampleValidatorExecutor().run(statistics=base, schema=schema, baseline_statistics=base, anomalies=same,
                                   fail_on_anomalies=True, drift_thresholds={'color': {'infinity_norm': 0.1}})
    assert same.get('has_anomalies') == 0
    with pytest.raises(ValueError, match=r"drift_thresholds names feature 'colour', which is not in the schema"):
        ExampleValidatorExecutor().run(statistics=new, schema=schema, baseline_statistics=base,
                                       anomalies=ExampleAnomalies(uri=_dir(tmp_path, 'x')), fail_on_anomalies=False,
                                       drift_thresholds={'colour': {'infinity_norm': 0.1}})
    # Nothing to compare with (no baseline wired, no earlier span): the drift check is skipped, and says so.
    skipped = ExampleAnomalies(uri=_dir(tmp_path, 'y'))
    ExampleValidatorExecutor().run(statistics=new, schema=schema, baseline_statistics=None, anomalies=skipped,
                                   fail_on_anomalies=True, drift_thresholds={'color': {'infinity_norm': 0.1}})
    assert skipped.get('drift') == 'skipped: no baseline_statistics wired and no earlier span to compare with'
    assert skipped.get('has_anomalies') == 0
    # A bare number: L-infinity for a categorical (string) feature, as TFDV defines it.
    bare = ExampleAnomalies(uri=_dir(tmp_path, 'bare'))
    ExampleValidatorExecutor().run(statistics=new, schema=schema, baseline_statistics=base, anomalies=bare,
                                   fail_on_anomalies=False, drift_thresholds={'color': 0.1})
    assert 'High Linfty distance' in bare.get('summary')


@pytest.mark.parametrize('thresholds, message', [
    ({'color': {'linf': 0.1}}, r"thresholds of feature 'color' must be a number in \[0, 1\] or a dict with "
                               r"'infinity_norm'"),
    ({'color': 1.5}, r"the threshold of feature 'color' must be a number in \[0, 1\]; got 1\.5"),
    ({'color': {'infinity_norm': 2}}, r'color\.infinity_norm must be a number in \[0, 1\]; got 2'),
])
def test_drift_thresholds_are_checked_at_construction(thresholds, message):
    from sluice.components import CsvExampleGen, ImportSchemaGen, StatisticsGen

    stats = StatisticsGen(examples=CsvExampleGen(input_base='/d').outputs['examples'])
    schema = ImportSchemaGen(schema_file='/s.pbtxt')
    with pytest.raises(WiringError, match=r'^ExampleValidator\(drift_thresholds=\.\.\.\): ' + message):
        ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'],
                         drift_thresholds=thresholds)


# -- SchemaGen: an inferred schema accepts its own data; real problems still block ------------------
TAXI = os.path.join(REPO, 'pipelines', 'examples', 'taxi')


@pytest.fixture(scope='module')
def taxi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('taxi')
    examples, stats = make_stats(tmp, os.path.join(TAXI, 'data'), 'taxi')
    return tmp, examples, stats


def test_taxi_with_defaults_passes_validation_and_transform(taxi, capsys):
    """The issue's first run: SchemaGen with its defaults, ExampleValidator blocking, Transform with
    infer_feature_shape=True, on the taxi data's own eval split."""
    import glob

    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from sluice.components.transform import TransformExecutor
    from sluice.metadata import TransformGraph

    tmp, examples, stats = taxi
    # What plain inference from the train split does: it rejects the eval split.
    plain = tfdv.infer_schema(load_statistics(stats, 'train'), infer_feature_shape=True)
    rejected = tfdv.validate_statistics(load_statistics(stats, 'eval'), plain).anomaly_info
    assert {'company', 'pickup_census_tract', 'pickup_latitude'} <= set(rejected)

    schema = Schema(uri=_dir(tmp, 'schema'))
    defaults = SchemaGen(statistics=StatisticsGen(examples=CsvExampleGen(input_base='/d').outputs['examples'])
                         .outputs['statistics']).parameters
    assert defaults == {'infer_feature_shape': True, 'split': 'train'}
    SchemaGenExecutor().run(statistics=stats, schema=schema, **defaults)
    proto = load_schema(schema)
    feature = {f.name: f for f in proto.feature}
    eval_only = set(rejected['company'].description.split(': ', 1)[1].split(' (<1%)')[0:1])
    assert eval_only and all(v in {d for dom in proto.string_domain for d in dom.value} for v in eval_only)
    census = feature['pickup_census_tract']  # in one train row, in no eval row: kept, optional
    assert census.lifecycle_stage != schema_pb2.DEPRECATED and census.presence.min_count == 0
    assert not feature['pickup_latitude'].HasField('shape')  # missing in a few eval rows
    assert feature['pickup_latitude'].presence.min_fraction == 0.49
    assert feature['fare'].shape.dim[0].size == 1 and feature['fare'].presence.min_fraction == 1
    assert schema.get('rejects_own_data') is None

    anomalies = ExampleAnomalies(uri=_dir(tmp, 'anomalies'))
    ExampleValidatorExecutor().run(statistics=stats, schema=schema, baseline_statistics=None, anomalies=anomalies,
                                   fail_on_anomalies=True, drift_thresholds={})
    assert anomalies.get('has_anomalies') == 0
    assert "split 'eval': no anomalies" in capsys.readouterr().out

    graph, out = TransformGraph(uri=_dir(tmp, 'graph')), Examples(uri=_dir(tmp, 'transformed'))
    TransformExecutor(beam_pipeline_args=['--direct_num_workers=1']).run(
        examples=examples, schema=schema, module_file=os.path.join(TAXI, 'taxi_module.py'), analyze_split='train',
        transform_graph=graph, transformed_examples=out)
    for split in ('train', 'eval'):
        assert glob.glob(os.path.join(out.split_uri(split), 'transformed_examples-*.gz'))


def _without(stats, feature_name):
    """The same statistics with one feature gone from every example (as TFDV reports a dropped column)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    features = out.datasets[0].features
    keep = [f for f in features if f.path.step[0] != feature_name]
    del features[:]
    features.extend(keep)
    return out


def test_an_inferred_schema_still_blocks_a_vanished_column(penguins, tmp_path):
    import tensorflow_data_validation as tfdv

    from sluice.components.example_validator import describe

    tmp, (_, clean), _ = penguins
    schema = Schema(uri=_dir(tmp_path, 'inferred'))
    SchemaGenExecutor().run(statistics=clean, schema=schema, infer_feature_shape=True, split='train')
    inferred = load_schema(schema)
    for split in ('train', 'eval'):  # accepts its own data
        assert describe(tfdv.validate_statistics(load_statistics(clean, split), inferred)) == []
    # A new span whose culmen_depth_mm column is gone.
    gone = describe(tfdv.validate_statistics(_without(load_statistics(clean, 'eval'), 'culmen_depth_mm'), inferred))
    assert gone == ["feature 'culmen_depth_mm': Column dropped (Column is completely missing)"]
    # One missing from most examples, where it was in all of them, blocks too (min_fraction 1).
    partly = load_statistics(clean, 'eval')
    [depth] = [f for f in partly.datasets[0].features if f.path.step[0] == 'culmen_depth_mm']
    depth.num_stats.common_stats.num_missing = partly.datasets[0].num_examples - 10
    depth.num_stats.common_stats.num_non_missing = 10
    assert any(line.startswith("feature 'culmen_depth_mm': ") and 'minimum fraction = 1' in line
               for line in describe(tfdv.validate_statistics(partly, inferred)))


def test_a_value_out_of_a_curated_range_blocks(tmp_path):
    with open(os.path.join(PENGUIN, 'data', 'penguins.csv')) as f:
        rows = f.read().splitlines()
    header, body = rows[0], rows[1:]
    body[5] = ','.join(body[5].split(',')[:4] + ['1.7'])  # body_mass_g is scaled to [0, 1]
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'p.csv').write_text('\n'.join([header] + body) + '\n')
    _, stats = make_stats(tmp_path, str(data), 'range')
    with pytest.raises(AnomaliesFound, match=r"split '(train|eval)': feature 'body_mass_g': Out-of-range values "
                                             r'\(Unexpectedly high value: 1\.7>1'):
        ExampleValidatorExecutor().run(statistics=stats, schema=_curated(tmp_path), baseline_statistics=None,
                                       anomalies=ExampleAnomalies(uri=_dir(tmp_path, 'a')), fail_on_anomalies=True,
                                       drift_thresholds={})
