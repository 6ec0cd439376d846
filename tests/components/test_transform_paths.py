"""Transform on tf.Transform's Arrow record-batch path writes what the instance-dict path writes.

For the penguin and the taxi examples, the Transform component (record batches, each split read
once, tf.Examples encoded by tfx_bsl) runs in the session's `sluice run` of the example, which other
test files read too (conftest.py's penguin_cli_run and taxi_cli); the test then computes the same
transform itself with plain tf.Transform calls on the instance-dict path (AnalyzeDataset, TransformDataset
without ``output_record_batches``, ``ExampleProtoCoder``) and compares the two, example by example
and value by value. It also reads the output the way a TFX module file does
(``tft.TFTransformOutput`` and tfx_bsl's ``TensorFlowDataset``). That the Trainer trains on it end to
end is covered by tests/pipelines/test_examples.py.
"""
from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re
import sys

import numpy as np
import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, 'pipelines', 'examples')
CASES = {  # example -> (module file, label)
    'penguin': ('penguin_module.py', 'species'),
    'taxi': ('taxi_module.py', 'tips'),
}
INSTANCE_DICT_WARNING = 'You are outputting instance dicts'
FLOAT_RTOL = 1e-5   # relative, float32 values computed by the same graph on both paths
FLOAT_ATOL = 1e-6   # only for values that are zero up to float32 rounding (z-scores of the mean)


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logged_during(fn):
    handler = _Messages()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        result = fn()
    finally:
        root.removeHandler(handler)
    return result, handler.messages


def instance_dict_path(examples, schema_file: str, module_file: str, out: str, tmp: str) -> str:
    """The transform computed with tf.Transform's instance dicts (the path Transform used before):
    analyze the train split, transform each split to instance dicts, encode them with
    ExampleProtoCoder. Returns the directory of the transform graph; examples under out/Split-*."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.public import tfxio

    name = f'transform_paths_reference_{os.path.basename(module_file)[:-3]}'
    spec = importlib.util.spec_from_file_location(name, module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickled by reference, like any imported module
    spec.loader.exec_module(module)
    with open(schema_file) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    graph_dir = os.path.join(out, 'transform_graph')

    def source(split):
        return tfxio.TFExampleRecord(file_pattern=os.path.join(examples.split_uri(split), '*'), schema=schema)

    with beam.Pipeline(argv=['--direct_num_workers=1', '--pickle_library=cloudpickle']) as p, tft_beam.Context(temp_dir=tmp):
        train = source('train')
        transform_fn = ((p | 'ReadAnalyze' >> train.BeamSource(), train.TensorAdapterConfig())
                        | 'Analyze' >> tft_beam.AnalyzeDataset(module.preprocessing_fn))
        _ = transform_fn | 'WriteTransformFn' >> tft_beam.WriteTransformFn(graph_dir)
        for split in examples.split_names:
            data = source(split)
            dicts, metadata = (((p | f'Read[{split}]' >> data.BeamSource(), data.TensorAdapterConfig()),
                                transform_fn) | f'Transform[{split}]' >> tft_beam.TransformDataset())
            coder = tft.coders.ExampleProtoCoder(metadata.schema)
            _ = (dicts | f'Encode[{split}]' >> beam.Map(coder.encode)
                 | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                     os.path.join(out, f'Split-{split}', 'transformed_examples'), file_name_suffix='.gz'))
    return graph_dir


def read_examples(directory: str) -> list[dict]:
    """Each tf.Example under ``directory`` as {feature: (kind, values)}."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(directory, 'transformed_examples-*.gz')))
    assert files, f'no transformed_examples-*.gz under {directory}'
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator():
        features = tf.train.Example.FromString(record).features.feature
        rows.append({name: (f.WhichOneof('kind'), tuple(getattr(f, f.WhichOneof('kind')).value)
                            if f.WhichOneof('kind') else ())
                     for name, f in features.items()})
    return sorted(rows, key=lambda row: sorted(row.items()))


def assert_same_examples(got: list[dict], want: list[dict], where: str) -> None:
    assert len(got) == len(want), f'{where}: {len(got)} examples, the instance-dict path wrote {len(want)}'
    for i, (g, w) in enumerate(zip(got, want)):
        assert sorted(g) == sorted(w), f'{where}, example {i}: features {sorted(g)} vs {sorted(w)}'
        for name, (kind, values) in w.items():
            got_kind, got_values = g[name]
            assert got_kind == kind, f'{where}, example {i}, {name}: {got_kind} vs {kind}'
            assert len(got_values) == len(values), f'{where}, example {i}, {name}: {got_values} vs {values}'
            if kind == 'float_list':
                np.testing.assert_allclose(got_values, values, rtol=FLOAT_RTOL, atol=FLOAT_ATOL,
                                           err_msg=f'{where}, example {i}, {name}')
            else:
                assert got_values == values, f'{where}, example {i}, {name}: {got_values} vs {values}'


def read_cli_run(root, stdout, metadata):
    """The ExampleGen and Transform of a session's `sluice run` of an example (its root, what it
    printed, its store's URL): their outputs read from its store, and the messages its run log holds
    (every library's, INFO and up)."""
    from sluice.metadata import MetadataStore

    run_id = re.search(r'^Run (\S+) COMPLETE', stdout, re.M).group(1)
    store = MetadataStore(metadata, create=False)
    outputs = {n: store.node_outputs(run_id, n) for n in ('CsvExampleGen', 'Transform')}
    messages = (root / '.sluice-logs' / f'{run_id}.log').read_text().splitlines()
    return ({key: artifact for key, [artifact] in outputs['CsvExampleGen'].items()},
            {key: artifact for key, [artifact] in outputs['Transform'].items()}, messages)


def read_taxi_cli(taxi_cli):
    """The same components in the session's `sluice run` of the taxi example (conftest.py's taxi_cli:
    the same ExampleGen, ImportSchemaGen and Transform, ``--direct_num_workers=1``)."""
    work, done = taxi_cli
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    root = work / 'runs' / 'taxi'
    return read_cli_run(root, done.stdout, f'sqlite:///{root}/metadata.db')


def read_penguin_cli(penguin_cli_run):
    """The same components in the session's `sluice run` of the penguin example (conftest.py's
    penguin_cli_run: its ExampleGen, ImportSchemaGen of the curated schema and Transform of the
    example's module file, ``--direct_num_workers=1``)."""
    where, done = penguin_cli_run
    assert done['status'] == 0, done['stdout'][-3000:]
    return read_cli_run(where / 'runs' / 'penguin', done['stdout'], done['metadata'])


@pytest.fixture(scope='module', params=sorted(CASES))
def case(request, tmp_path_factory):
    name = request.param
    module_file = os.path.join(EXAMPLES, name, CASES[name][0])
    schema_file = os.path.join(EXAMPLES, name, 'schema', 'schema.pbtxt')
    if name == 'taxi':
        gen, transform, new_messages = read_taxi_cli(request.getfixturevalue('taxi_cli'))
    else:
        gen, transform, new_messages = read_penguin_cli(request.getfixturevalue('penguin_cli_run'))
    examples = gen['examples']
    ref_dir = str(tmp_path_factory.mktemp(f'{name}-instance-dicts'))
    ref_graph, ref_messages = _logged_during(lambda: instance_dict_path(
        examples, schema_file, module_file, ref_dir, os.path.join(ref_dir, 'tmp')))
    return {'name': name, 'label': CASES[name][1], 'examples': examples, 'schema_file': schema_file,
            'graph': transform['transform_graph'], 'transformed': transform['transformed_examples'],
            'ref_dir': ref_dir, 'ref_graph': ref_graph,
            'new_messages': new_messages, 'ref_messages': ref_messages}


def test_same_transformed_values_as_the_instance_dict_path(case):
    import json

    transformed, examples = case['transformed'], case['examples']
    assert transformed.split_names == examples.split_names
    counts = examples.get('row_counts')
    counts = json.loads(counts) if isinstance(counts, str) else counts
    for split in transformed.split_names:
        got = read_examples(transformed.split_uri(split))
        want = read_examples(os.path.join(case['ref_dir'], f'Split-{split}'))
        assert len(got) == counts[split], f'{split}: {len(got)} transformed examples of {counts[split]} rows'
        assert_same_examples(got, want, f"{case['name']} {split}")


def test_same_transform_graph_as_the_instance_dict_path(case):
    import tensorflow_transform as tft

    got, want = tft.TFTransformOutput(case['graph'].uri), tft.TFTransformOutput(case['ref_graph'])
    assert got.transformed_feature_spec() == want.transformed_feature_spec()
    # As in TFX, the graph directory also holds the raw data's metadata (the schema's feature spec).
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils
    with open(case['schema_file']) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert got.raw_feature_spec() == schema_utils.schema_as_feature_spec(schema).feature_spec
    assets_dir = os.path.join(case['ref_graph'], 'transform_fn', 'assets')
    assets = sorted(os.listdir(assets_dir)) if os.path.isdir(assets_dir) else []
    assert len(assets) == {'penguin': 0, 'taxi': 2}[case['name']]  # taxi: payment_type and company
    for asset in assets:  # vocabularies
        assert got.vocabulary_by_name(asset) == want.vocabulary_by_name(asset), asset


def test_runs_on_record_batches_and_keeps_the_artifact_properties(case):
    # tf.Transform warns on every run of the instance-dict path; the control shows the check sees it.
    assert any(INSTANCE_DICT_WARNING in m for m in case['ref_messages'])
    assert not any(INSTANCE_DICT_WARNING in m for m in case['new_messages'])
    transformed, examples = case['transformed'], case['examples']
    assert transformed.get('span') == (examples.get('span') or 0)
    assert transformed.get('version') == (examples.get('version') or 0)
    for split in transformed.split_names:
        assert glob.glob(os.path.join(transformed.split_uri(split), 'transformed_examples-*.gz'))


def test_readable_as_a_tfx_module_file_reads_it(case):
    """What run_fn does in a TFX module file: TFTransformOutput + tfx_bsl's TensorFlowDataset."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx_bsl.public import tfxio

    output = tft.TFTransformOutput(case['graph'].uri)
    pattern = os.path.join(case['transformed'].split_uri('train'), '*')
    dataset = tfxio.TFExampleRecord(file_pattern=[pattern], schema=output.transformed_metadata.schema) \
        .TensorFlowDataset(tfxio.TensorFlowDatasetOptions(batch_size=32, label_key=case['label'], num_epochs=1))
    features, label = next(iter(dataset))
    assert sorted(features) == sorted(set(output.transformed_feature_spec()) - {case['label']})
    assert label.shape[0] == 32
    for name, value in features.items():
        assert isinstance(value, tf.Tensor) and value.shape[0] == 32, name
