"""tf.Transform's analyzer cache (``Transform(cache_analyzers=True)``, TFX's ``analyzer_cache``): over a
growing window of spans, a run analyses only the span it has not seen; the transform it writes is
the one an analysis of every span from scratch writes; the cache is no part of the cache key."""
from __future__ import annotations

import json
import os

import numpy as np

from sluice import LocalDagRunner, Pipeline
from sluice.components import CsvExampleGen, ImportSchemaGen, LatestSpans, Transform
from sluice.metadata import MetadataStore

from test_spans import MODULE, PATTERN, PENGUIN, penguin_rows, write_span

SCHEMA = os.path.join(PENGUIN, 'schema', 'schema.pbtxt')


def make(root, data, cache: bool, span=None):
    gen = CsvExampleGen(input_base=str(data), pattern=PATTERN, span=span)
    schema = ImportSchemaGen(schema_file=SCHEMA)
    window = LatestSpans(gen, n=3)
    transform = Transform(examples=window, schema=schema.outputs['schema'], module_file=MODULE,
                          cache_analyzers=cache)
    return Pipeline(name='tcache', pipeline_root=str(root), components=[gen, schema, window, transform],
                    metadata=f'sqlite:///{root}/metadata.db', beam_pipeline_args=['--direct_num_workers=1'])


def cache_record(root, run_id):
    store = MetadataStore(f'sqlite:///{root}/metadata.db')
    [record] = [r for r in store.executions(run_id) if r.node_id == 'Transform']
    return record, store


def transformed(graph_uri, rows):
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(graph_uri)
    features = {k: tf.constant([[r[k]] for r in rows], dtype=tf.float32)
                for k in ('culmen_length_mm', 'culmen_depth_mm', 'flipper_length_mm', 'body_mass_g')}
    result = output.transform_features_layer()(features)
    return {k: np.asarray(v) for k, v in result.items() if v.dtype.is_floating}


def test_each_run_analyses_only_the_new_span_and_transforms_as_from_scratch(tmp_path):
    header, rows = penguin_rows()
    data = tmp_path / 'data'
    runner = LocalDagRunner()
    seen = []
    for span in (1, 2, 3):
        write_span(data, span, rows[span - 1::3], header)
        result = runner.run(make(tmp_path / 'cached', data, cache=True))
        assert result.state == 'COMPLETE', result.nodes
        record, store = cache_record(tmp_path / 'cached', result.run_id)
        [cache] = record.outputs['updated_analyzer_cache']
        keys = json.loads(cache.get('dataset_keys'))
        assert len(keys) == span and all(k.startswith('train-span') for k in keys)  # one dataset per span
        seen.append((keys, json.loads(cache.get('read_from_cache'))))
    # Run 2 read span 1 from run 1's cache; run 3 read spans 1 and 2 (span 1 carried forward by run 2).
    assert seen[0][1] == [] and seen[1][1] == seen[0][0] and seen[2][1] == seen[1][0]

    # The same spans analysed from scratch (one ExampleGen over the range of spans) give the same transform.
    gen = CsvExampleGen(input_base=str(data), pattern=PATTERN, span=(1, 3))
    schema = ImportSchemaGen(schema_file=SCHEMA)
    scratch = runner.run(Pipeline(
        name='scratch', pipeline_root=str(tmp_path / 'scratch'), metadata=f'sqlite:///{tmp_path}/scratch/metadata.db',
        components=[gen, schema, Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                                           module_file=MODULE)], beam_pipeline_args=['--direct_num_workers=1']))
    assert scratch.state == 'COMPLETE'
    sample = [{'culmen_length_mm': 40.0 + i, 'culmen_depth_mm': 17.0, 'flipper_length_mm': 190.0 + i,
               'body_mass_g': 3800.0} for i in range(4)]
    cached_graph = result['Transform'].outputs['transform_graph'].uri
    a, b = transformed(cached_graph, sample), transformed(scratch['Transform'].outputs['transform_graph'].uri, sample)
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)

    # A re-run is all cached: the newer analyzer cache of the last run is not part of the key.
    again = runner.run(make(tmp_path / 'cached', data, cache=True))
    assert again.node_states()['Transform'] == 'CACHED'


def test_changed_data_under_a_span_is_analysed_again(tmp_path):
    header, rows = penguin_rows()
    data = tmp_path / 'data'
    runner = LocalDagRunner()
    write_span(data, 1, rows[0::2], header)
    first = runner.run(make(tmp_path / 'root', data, cache=True))
    assert first.state == 'COMPLETE'
    (data / 'span-1' / 'part.csv').unlink()
    (data / 'span-1').rmdir()
    write_span(data, 1, rows[1::2], header)  # span 1 rewritten with other rows: its key changes
    second = runner.run(make(tmp_path / 'root', data, cache=True))
    record, _ = cache_record(tmp_path / 'root', second.run_id)
    [cache] = record.outputs['updated_analyzer_cache']
    assert json.loads(cache.get('read_from_cache')) == []
