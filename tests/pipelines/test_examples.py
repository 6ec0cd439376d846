"""End to end on the real stack and the real data: the penguin and Chicago taxi pipelines."""
from __future__ import annotations

import os
import shutil

import pytest

from metadata import MetadataStore
from pipelines import LocalDagRunner, load_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, 'pipelines', 'examples')
PENGUIN = os.path.join(EXAMPLES, 'penguin', 'penguin_pipeline.py')
TAXI = os.path.join(EXAMPLES, 'taxi', 'taxi_pipeline.py')


def run(path, root, **kwargs):
    pipeline = load_pipeline(path, root=str(root), **kwargs)
    result = LocalDagRunner(progress=False).run(pipeline)
    return pipeline, result, MetadataStore(pipeline.metadata)


def states(store, run_id):
    return {r.node_id: r.state for r in store.executions(run_id)}


def test_penguin_data_pipeline_then_cached_then_data_edit(tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(os.path.join(EXAMPLES, 'penguin', 'data'), data)
    pipeline, first, store = run(PENGUIN, tmp_path / 'root', data=str(data))
    assert first.state == 'COMPLETE', first.nodes
    assert set(states(store, first.run_id).values()) == {'COMPLETE'}
    anomalies = first['ExampleValidator'].outputs['anomalies']
    assert anomalies.get('has_anomalies') == 0 and anomalies.state == 'LIVE'

    _, second, _ = run(PENGUIN, tmp_path / 'root', data=str(data))
    assert states(store, second.run_id) == dict.fromkeys(pipeline.node_ids, 'CACHED')

    with open(data / 'penguins.csv', 'a') as f:
        f.write('1,0.5,0.5,0.5,0.5\n')  # one more penguin
    _, third, _ = run(PENGUIN, tmp_path / 'root', data=str(data))
    assert states(store, third.run_id) == {'CsvExampleGen': 'COMPLETE', 'StatisticsGen': 'COMPLETE',
                                           'ImportSchemaGen': 'CACHED', 'ExampleValidator': 'COMPLETE'}


def test_skewed_penguins_fail_validation_and_nothing_is_published(tmp_path):
    _, result, store = run(PENGUIN, tmp_path / 'root', data=os.path.join(EXAMPLES, 'penguin', 'skewed'))
    assert result.state == 'FAILED'
    assert result['ExampleValidator'].state == 'FAILED'
    error = result['ExampleValidator'].error
    assert error.startswith('AnomaliesFound: the data does not match the schema:')
    assert "feature 'culmen_length_mm': Out-of-range values (Unexpectedly low values: -1<0" in error
    [record] = [r for r in store.executions(result.run_id) if r.node_id == 'ExampleValidator']
    assert record.state == 'FAILED' and record.outputs == {} and record.properties['error_type'] == 'AnomaliesFound'
    assert not [a for a in store.mlmd.get_artifacts() if '/ExampleValidator/' in a.uri]


def test_taxi_data_pipeline_with_curated_schema_and_anomalies_with_an_inferred_one(tmp_path):
    pipeline, result, store = run(TAXI, tmp_path / 'root')
    assert result.state == 'COMPLETE', result.nodes
    examples = result['CsvExampleGen'].outputs['examples']
    import json
    assert sum(json.loads(examples.get('row_counts')).values()) == 15002
    types = json.loads(examples.get('column_types'))
    assert types['company'] == 'string' and types['fare'] == 'float' and types['trip_start_hour'] == 'int'
    assert result['ExampleValidator'].outputs['anomalies'].get('has_anomalies') == 0

    _, again, _ = run(TAXI, tmp_path / 'root')
    assert states(store, again.run_id) == dict.fromkeys(pipeline.node_ids, 'CACHED')

    # With a schema inferred from the train split alone, the eval split shows real anomalies:
    # companies never seen in train, and a column that is empty in every eval row.
    _, inferred, _ = run(TAXI, tmp_path / 'root2', schema_file=None)
    assert inferred['ExampleValidator'].state == 'FAILED'
    assert "split 'eval': feature 'company': Unexpected string values" in inferred['ExampleValidator'].error


@pytest.mark.parametrize('content, message', [
    ('species,culmen_length_mm\n0,0.5\n1\n', r'a\.csv line 3 has 1 fields but the header has 2'),
    ('', r'a\.csv is empty'),
])
def test_bad_input_fails_example_gen_and_stops_everything_after_it(tmp_path, content, message):
    import re
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.csv').write_text(content)
    pipeline, result, store = run(PENGUIN, tmp_path / 'root', data=str(data))
    assert result['CsvExampleGen'].state == 'FAILED' and re.search(message, result['CsvExampleGen'].error)
    assert result.node_states() == {'CsvExampleGen': 'FAILED', 'ImportSchemaGen': 'COMPLETE',
                                    'StatisticsGen': 'SKIPPED', 'ExampleValidator': 'SKIPPED'}
    [record] = [r for r in store.executions(result.run_id) if r.node_id == 'CsvExampleGen']
    assert record.state == 'FAILED' and record.properties['error_type'] == 'DataError'
    assert not [a for a in store.mlmd.get_artifacts() if '/CsvExampleGen/' in a.uri]
    assert not os.listdir(os.path.join(pipeline.pipeline_root, 'CsvExampleGen', 'examples'))
