"""Reading and comparing what data components wrote, for tests that compare two runs of the same
components (another Beam runner, another way of driving the nodes)."""
from __future__ import annotations

import glob
import os

import numpy as np


def records(artifact, split):
    """The serialized records of one split of an Examples artifact."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(artifact.uri, f'Split-{split}', '*.gz')))
    return [bytes(r) for r in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator()]


def transformed_columns(artifact, split):
    """One split of transformed examples as columns (one value per feature), rows in a canonical order."""
    import tensorflow as tf
    rows = []
    for r in records(artifact, split):
        feats = tf.train.Example.FromString(r).features.feature
        rows.append({k: getattr(f, f.WhichOneof('kind')).value[0] for k, f in feats.items()})
    rows.sort(key=lambda d: tuple(sorted(d.items())))
    return {k: np.array([d[k] for d in rows]) for k in rows[0]}


def assert_same_columns(got, want, exact_kinds='iuSO'):
    """Ids, vocabulary entries and strings identical; floats equal to a relative 1e-6."""
    assert set(got) == set(want)
    for name in want:
        if want[name].dtype.kind in exact_kinds:
            assert np.array_equal(got[name], want[name]), name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def assert_same_penguin_outputs(by_node, ref):
    """Two runs of the penguin example with the same parameters, each a dict node id -> its COMPLETE
    execution record (from its own store): the same nodes and outputs, the same examples byte for
    byte, the same statistics, schema and transformed values, and a model trained and judged the
    same (seeded training; metrics up to float summation order)."""
    import pytest

    from sluice.components.evaluator import load_metrics_summary
    from sluice.components.statistics_gen import load_statistics

    assert {n: sorted(r.outputs) for n, r in ref.items()} == {n: sorted(r.outputs) for n, r in by_node.items()}

    def output(records_of, node, key):
        [artifact] = records_of[node].outputs[key]
        return artifact
    for split in ('train', 'eval'):
        assert sorted(records(output(by_node, 'CsvExampleGen', 'examples'), split)) == \
            sorted(records(output(ref, 'CsvExampleGen', 'examples'), split))
        assert load_statistics(output(by_node, 'StatisticsGen', 'statistics'), split) == \
            load_statistics(output(ref, 'StatisticsGen', 'statistics'), split)
        assert_same_columns(transformed_columns(output(by_node, 'Transform', 'transformed_examples'), split),
                            transformed_columns(output(ref, 'Transform', 'transformed_examples'), split))
    schemas = [os.path.join(output(x, 'ImportSchemaGen', 'schema').uri, 'schema.pbtxt') for x in (by_node, ref)]
    with open(schemas[0]) as a, open(schemas[1]) as b:
        assert a.read() == b.read()
    metrics = [load_metrics_summary(output(x, 'Evaluator', 'evaluation')) for x in (by_node, ref)]
    for summary in metrics:  # each store's own ids and each run's own destination; no baseline (a first push)
        assert summary.pop('push_destination').endswith('/serving') and summary['baseline_model'] is None
        assert summary.pop('candidate_model_id') > 0 and summary['slices']
    slices = [summary.pop('slices') for summary in metrics]
    assert metrics[0] == metrics[1]
    flat = [{(name, metric): value for name, s in x.items() for metric, value in s['candidate'].items()} for x in slices]
    assert len(flat[0]) >= 8 and flat[0] == pytest.approx(flat[1], rel=1e-5)  # 4 slices, loss and accuracy
    assert [output(x, 'ModelValidator', 'blessing').get('blessed') for x in (by_node, ref)] == [1, 1]
