"""Spans end to end on the real stack: CsvExampleGen with {SPAN}, a rolling window (LatestSpans) that
Transform and the Trainer read, the Evaluator on the newest span, and ExampleValidator comparing each
span with the previous one from ML-Metadata, without wiring.

The input directory grows as the module goes: span 1, then span 2 (second run), then span 3 (third),
then a run pinned to span 2 (all cached), then a shifted span 4 (blocked), then a span 5 without a
column (blocked). The runs share one store and happen once (module fixture); each test checks one
aspect of them. The first and third runs build only the data half of the pipeline (ExampleGen to the
window), to keep the module short.
"""
from __future__ import annotations

import csv
import json
import os
import re

import pytest

from sluice.components import (CsvExampleGen, DataError, Evaluator, ExampleValidator, LatestSpans, SchemaGen,
                        StatisticsGen, Trainer, Transform, WiringError)
from sluice.components.example_gen.base import ExampleGenDriver
from sluice.components.example_gen.spans import select_files
from sluice.components.driver import PipelineInfo
from sluice.metadata import MetadataStore
from sluice import LocalDagRunner, Pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
MODULE = os.path.join(PENGUIN, 'penguin_module.py')
PATTERN = 'span-{SPAN}/*.csv'
THRESHOLDS = {'body_mass_g': 0.3, 'culmen_length_mm': {'jensen_shannon_divergence': 0.3}}


def penguin_rows():
    with open(os.path.join(PENGUIN, 'data', 'penguins.csv')) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_span(data, span, rows, header, drop=None):
    directory = data / f'span-{span}'
    directory.mkdir(parents=True)
    keep = [i for i, h in enumerate(header) if h != drop]
    with open(directory / 'part.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow([header[i] for i in keep])
        w.writerows([[r[i] for i in keep] for r in rows])


def make_pipeline(root, data, span=None, n=2, model=True):
    """``model=False``: the data half only (ExampleGen to the window), to keep the test short."""
    gen = CsvExampleGen(input_base=str(data), pattern=PATTERN, span=span)
    stats = StatisticsGen(examples=gen.outputs['examples'])
    schema = SchemaGen(statistics=stats.outputs['statistics'])
    check = ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'],
                             drift_thresholds=THRESHOLDS)
    window = LatestSpans(gen, n=n)
    transform = Transform(examples=window, schema=schema.outputs['schema'], module_file=MODULE)
    transform.add_upstream_node(check)
    trainer = Trainer(module_file=MODULE, examples=transform.outputs['transformed_examples'],
                      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
                      train_steps=5, eval_steps=1, export_onnx=False)
    # The Evaluator measures on the newest span: the ExampleGen's own output, not the window.
    evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                          eval_config={'label_key': 'species', 'metrics': ['SparseCategoricalAccuracy'],
                                       'slices': [[]]})
    return Pipeline(name='spans', pipeline_root=str(root),
                    components=[gen, stats, schema, check, window] + ([transform, trainer, evaluator] if model else []),
                    metadata=f'sqlite:///{root}/metadata.db', beam_pipeline_args=['--direct_num_workers=1'])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('spans')
    data, root = tmp / 'data', tmp / 'root'
    header, rows = penguin_rows()
    # Three spans of the same distribution (rows interleaved: the file is sorted by species).
    parts = {span: rows[span - 1::3] for span in (1, 2, 3)}
    out = {}
    write_span(data, 1, parts[1], header)
    out['first'] = LocalDagRunner(progress=False).run(make_pipeline(root, data, model=False))
    write_span(data, 2, parts[2], header)
    out['second'] = LocalDagRunner(progress=False).run(make_pipeline(root, data))
    write_span(data, 3, parts[3], header)
    out['third'] = LocalDagRunner(progress=False).run(make_pipeline(root, data, model=False))
    out['pinned'] = LocalDagRunner(progress=False).run(make_pipeline(root, data, span=2))
    # Span 4: body mass shifted by +0.5 (the data is scaled to [0, 1]).
    mass = header.index('body_mass_g')
    shifted = [r[:mass] + [str(float(r[mass]) + 0.5)] + r[mass + 1:] for r in parts[1]]
    write_span(data, 4, shifted, header)
    out['shifted'] = LocalDagRunner(progress=False).run(make_pipeline(root, data))
    # Span 5: the same rows as span 2, without the culmen_depth_mm column.
    write_span(data, 5, parts[2], header, drop='culmen_depth_mm')
    out['vanished'] = LocalDagRunner(progress=False).run(make_pipeline(root, data))
    return out, MetadataStore(f'sqlite:///{root}/metadata.db'), data, root


def ok(result):
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}


def test_each_run_ingests_the_newest_span_and_records_span_and_version(runs):
    out, _, _, _ = runs
    for name, span in (('first', 1), ('second', 2), ('third', 3)):
        ok(out[name])
        gen = out[name]['CsvExampleGen']
        assert gen.state == 'COMPLETE'
        examples = gen.outputs['examples']
        assert (examples.get('span'), examples.get('version'), json.loads(examples.get('spans'))) == (span, 0, [span])
        assert examples.get('pattern') == PATTERN
    counts = json.loads(out['second']['CsvExampleGen'].outputs['examples'].get('row_counts'))
    assert sum(counts.values()) == len(penguin_rows()[1][1::3])


def test_the_window_holds_the_latest_spans_and_the_trainer_reads_it(runs):
    out, store, _, _ = runs
    expected = {'first': [1], 'second': [1, 2], 'third': [2, 3]}  # n=2
    header, rows = penguin_rows()
    for name, spans in expected.items():
        window = out[name]['LatestSpans']
        assert window.state == 'COMPLETE'
        examples = window.outputs['examples']
        assert json.loads(examples.get('spans')) == spans and examples.get('span') == spans[-1]
        # Every span's files are in the window, linked (same inode) from the ExampleGen outputs.
        record = store.execution(window.execution_id)
        members = {max(json.loads(a.get('spans'))): a for group in record.inputs.values() for a in group}
        assert sorted(members) == spans and sorted(record.inputs) == ['source'] + [f'span_{s}' for s in spans[:-1]]
        linked = sorted(os.listdir(examples.split_uri('train')))
        assert [f for f in linked if '-span' not in f] == []
        for span, member in members.items():
            for name_ in os.listdir(member.split_uri('train')):
                original = os.path.join(member.split_uri('train'), name_)
                copy = os.path.join(examples.split_uri('train'), name_.replace('-', f'-span{span}-', 1))
                assert os.path.samefile(original, copy)
        rows_in = sum(json.loads(examples.get('row_counts')).values())
        assert rows_in == sum(len(rows[s - 1::3]) for s in spans)
        if name != 'second':
            continue  # data half only
        # Transform read the window; the Trainer trained on what Transform wrote from it.
        transform = store.execution(out[name]['Transform'].execution_id)
        assert transform.inputs['examples'][0].id == examples.id
        assert out[name]['Trainer'].state == 'COMPLETE'


def test_the_evaluator_measures_on_the_newest_span_only(runs):
    out, store, _, _ = runs
    evaluation = store.execution(out['second']['Evaluator'].execution_id)
    [examples] = evaluation.inputs['examples']
    assert examples.id == out['second']['CsvExampleGen'].outputs['examples'].id
    assert json.loads(examples.get('spans')) == [2]
    trained_on = store.execution(out['second']['Transform'].execution_id).inputs['examples'][0]
    assert json.loads(trained_on.get('spans')) == [1, 2]


def test_drift_is_checked_against_the_previous_span_without_wiring(runs, capsys):
    out, store, _, _ = runs
    first = out['first']['ExampleValidator'].outputs['anomalies']
    assert first.get('drift') == 'skipped: no earlier span than span 1 in the store to compare with'
    assert first.get('has_anomalies') == 0
    for name, span, previous in (('second', 2, 1), ('third', 3, 2)):
        node = out[name]['ExampleValidator']
        anomalies = node.outputs['anomalies']
        previous_run = out['first' if previous == 1 else 'second'].run_id
        assert anomalies.get('drift') == f'span {span} vs span {previous} (run {previous_run})'
        assert anomalies.get('has_anomalies') == 0
        record = store.execution(node.execution_id)
        [baseline] = record.inputs['baseline_statistics']
        assert baseline.id == out['first' if previous == 1 else 'second']['StatisticsGen'].outputs['statistics'].id
        assert record.properties['compared_with_span'] == previous


def test_a_shifted_span_blocks_naming_feature_distance_and_threshold(runs):
    out, _, _, _ = runs
    result = out['shifted']
    node = result['ExampleValidator']
    assert node.state == 'FAILED'
    assert re.search(r"AnomaliesFound: the data does not match the schema:\n  split 'train': feature 'body_mass_g': "
                     r'High approximate Jensen-Shannon divergence between current and previous \(The approximate '
                     r'Jensen-Shannon divergence between current and previous is 0\.\d+ \(up to six significant '
                     r'digits\), above the threshold 0\.3\.\)', node.error), node.error
    assert 'Compared with the previous span: span 4 vs span 3 (run ' in node.error
    assert "feature 'culmen_length_mm'" not in node.error  # not shifted
    for later in ('Transform', 'Trainer', 'Evaluator'):
        assert result[later].state == 'SKIPPED'


def test_a_column_that_vanishes_in_a_new_span_blocks(runs):
    out, _, _, _ = runs
    node = out['vanished']['ExampleValidator']
    assert node.state == 'FAILED'
    assert re.search(r"split 'train': feature 'culmen_depth_mm': Column vanished \(present in \d+ of \d+ examples of "
                     r'span 4, in none of the \d+ examples of span 5\)', node.error), node.error
    assert out['vanished']['Trainer'].state == 'SKIPPED'


def test_the_cache_is_per_span(runs):
    out, store, _, _ = runs
    # A run pinned to span 2 after span 3 arrived: every node reused, the window is spans 1-2 again.
    pinned = out['pinned']
    ok(pinned)
    assert set(pinned.node_states().values()) == {'CACHED'}, pinned.node_states()
    assert pinned['CsvExampleGen'].outputs['examples'].id == out['second']['CsvExampleGen'].outputs['examples'].id
    assert pinned['LatestSpans'].outputs['examples'].id == out['second']['LatestSpans'].outputs['examples'].id
    # Each new span ran ExampleGen again, and only for that span's files.
    third = store.execution(out['third']['CsvExampleGen'].execution_id)
    assert [os.path.basename(os.path.dirname(f)) for f in json.loads(third.properties['input_files'])] == ['span-3']
    keys = {out[n]['CsvExampleGen'].cache_key for n in ('first', 'second', 'third')}
    assert len(keys) == 3 and out['pinned']['CsvExampleGen'].cache_key == out['second']['CsvExampleGen'].cache_key


def test_a_span_that_does_not_exist_fails_example_gen_listing_the_spans(runs):
    _, store, data, root = runs
    result = LocalDagRunner(progress=False).run(make_pipeline(root, data, span=9, model=False))
    node = result['CsvExampleGen']
    assert node.state == 'FAILED' and result['LatestSpans'].state == 'SKIPPED'
    assert re.search(r"DataError: CsvExampleGen: span 9 does not exist in .*/data \(pattern 'span-\{SPAN\}/\*\.csv'\); "
                     r'the spans there are 1, 2, 3, 4, 5\.', node.error), node.error
    assert store.execution(node.execution_id).properties['error_type'] == 'DataError'


def test_span_selection_and_its_errors(runs, tmp_path):
    _, _, data, _ = runs
    sel = select_files(str(data), PATTERN, None, None, 'CsvExampleGen')
    assert (sel.span, sel.spans) == (5, [5])
    assert select_files(str(data), PATTERN, (2, 3), None, 'CsvExampleGen').spans == [2, 3]
    with pytest.raises(DataError, match=r"CsvExampleGen: span 7 does not exist in .*/data \(pattern 'span-\{SPAN\}/\*\.csv'\); "
                                        r'the spans there are 1, 2, 3, 4, 5\.'):
        select_files(str(data), PATTERN, 7, None, 'CsvExampleGen')
    with pytest.raises(DataError, match=r'no span from 8 to 9 exists in .*the spans there are 1, 2, 3, 4, 5\.'):
        select_files(str(data), PATTERN, (8, 9), None, 'CsvExampleGen')
    with pytest.raises(DataError, match=r"CsvExampleGen: no file in .*/data matches the pattern 'day-\{SPAN\}\.csv' "
                                        r'\(\{SPAN\} and \{VERSION\} stand for digits\)'):
        select_files(str(data), 'day-{SPAN}.csv', None, None, 'CsvExampleGen')


def test_versions_widths_and_the_driver_key_the_selection(tmp_path):
    data = tmp_path / 'data'
    for span, version in ((1, 0), (1, 1), (2, 0), (10, 0)):
        d = data / f'{span:02d}' / f'v{version}'
        d.mkdir(parents=True)
        (d / 'a.csv').write_text(f'x\n{span}{version}\n')
    (data / 'xx' / 'v0').mkdir(parents=True)  # not digits: ignored
    (data / 'xx' / 'v0' / 'a.csv').write_text('x\n1\n')
    pattern = '{SPAN:2}/v{VERSION}/*.csv'
    newest = select_files(str(data), pattern, None, None, 'CsvExampleGen')
    assert (newest.span, newest.version) == (10, 0)
    one = select_files(str(data), pattern, 1, None, 'CsvExampleGen')
    assert (one.version, [os.path.relpath(f, data) for f in one.files]) == (1, ['01/v1/a.csv'])
    assert select_files(str(data), pattern, 1, 0, 'CsvExampleGen').files[0].endswith('01/v0/a.csv')
    with pytest.raises(DataError, match=r'span 2 has no version 3 .*; its versions are 0\.'):
        select_files(str(data), pattern, 2, 3, 'CsvExampleGen')
    # span=None that resolves to span 10 and span=10 have the same cache key; span=2 another.
    store = MetadataStore(None)
    info = PipelineInfo('p', str(tmp_path / 'root'), 'r1')

    def key(**kwargs):
        gen = CsvExampleGen(input_base=str(data), pattern=pattern, **kwargs)
        return ExampleGenDriver(gen, store, info).cache_key({})

    assert key() == key(span=10) != key(span=2)
    with pytest.raises(WiringError, match=r"CsvExampleGen\(span=2\) selects a span, but the pattern '\*\.csv' has "
                                          r'no \{SPAN\}'):
        CsvExampleGen(input_base=str(data), span=2)
    with pytest.raises(WiringError, match=r"pattern 'v\{VERSION\}/\*\.csv' has \{VERSION\} but no \{SPAN\}"):
        CsvExampleGen(input_base=str(data), pattern='v{VERSION}/*.csv')
    with pytest.raises(WiringError, match=r'span must be a span number, a range \(lo, hi\)'):
        CsvExampleGen(input_base=str(data), pattern=pattern, span=(3, 1))
