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
