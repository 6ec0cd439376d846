"""Benchmark: the whole taxi pipeline through Sluice vs a plain script making the same library calls.

    .venv/bin/python bench/taxi_vs_plain.py [--scales 1,10,100] [--repeat 3] [--train-steps 300]
                                            [--resume-scale 1] [--resume-repeat N] [--no-resume]

The data is pipelines/examples/taxi/data/taxi.csv resampled with replacement to 1x, 10x, 100x its
rows (fixed seed per size; written once under bench/out/ by ``_common.resample`` and reused).

Two sides, each a fresh `python -c` process of this interpreter, same environment, same data:

* Sluice: the example taxi pipeline (``load_pipeline`` + ``LocalDagRunner``, nothing cached, Beam
  DirectRunner with one worker, a SQLite store in a fresh root).
* plain: the same work written here with no framework around it: CSV to tf.Example on Beam (column
  types inferred over the whole file, missing cells left out, rows split 2:1 by a hash of the line),
  TFDV statistics and validation against the curated schema, tf.Transform
  (``AnalyzeAndTransformDataset`` / ``TransformDataset`` with ``output_record_batches=True``,
  encoded by tfx_bsl), the Keras model of the taxi module file fitted and saved as run_fn does,
  tf2onnx and onnxruntime, TFMA ``run_model_analysis``, a threshold check and a copy; like Sluice's
  executors, it has AutoGraph call Keras 2, tf.Transform and tfx_bsl as written (see tf_setup.py). The user code
  (``preprocessing_fn``, the Keras model and serving function) is the example's module file on both
  sides; nothing of Sluice is imported.

The sides alternate which goes first from one repeat to the next; the sizes take turns within a
repeat. Each process is timed from here (perf_counter, start to exit) and its process tree's resident
memory is sampled every 0.2 s (the process and its descendants, from /proc).
Inside, each side times its nodes with perf_counter around the same span (Sluice: the launcher's
duration, which includes driver, cache lookup and publish).

Each side also times its first imports of TensorFlow and its libraries (TFDV, tf.Transform, TFMA)
within each node, printed as "heavy imports": a process pays them once, in the first node that uses
them, and the two sides do not use them in the same node (Sluice's CsvExampleGen writes tf.Examples
without TensorFlow; the plain script builds them with TensorFlow's protos). A node that misses its
target with such imports in it says how much of its time they were.

ONNX is not the same work on both sides: Sluice exports the whole serving signature (tf.Example
parsing cut off, the tf.Transform graph and the Keras model) and checks it against the SavedModel
on up to 2,000 raw eval examples; the plain script converts the Keras model alone (tf2onnx
``from_keras``) and checks it on 2,000 transformed eval examples. On both sides it is timed as the node
``Trainer.onnx`` (Sluice's runs beside the Evaluator; the plain script's after the training, one thing
at a time, as a script is written), and the export and the check are also printed on their own.

Resume: the taxi pipeline (at --resume-scale) is SIGKILLed inside the Evaluator
(``SLUICE_KILL_AT=Evaluator:executor:1``) and resumed with ``sluice resume RUN_ID`` (a process);
its floor is a fresh process that imports what the re-run nodes need (TFMA) and runs just them
(TFMA on the run's eval split with the run's model, the threshold check, the copy). What re-ran is
read from ML-Metadata.

Prints per node and for the whole process: seconds of each side, the ratio Sluice / plain per
repeat, and the seconds Sluice added, each as median [min-max, n]; the peak memory of each process
tree and their ratio; and, for each target missed (1.05x time, 1.10x peak memory at 10x and more;
1.2x for the resume), where the added time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (REPO, TAXI_DIR, machine, median, ratios, resample, run_measured, run_python,  # noqa: E402
                     run_python_sampled, spread, turns)

TAXI = os.path.join(TAXI_DIR, 'taxi_pipeline.py')
SCHEMA = os.path.join(TAXI_DIR, 'schema', 'schema.pbtxt')
MODULE = os.path.join(TAXI_DIR, 'taxi_module.py')
TIME_TARGET, MEMORY_TARGET, RESUME_TARGET = 1.05, 1.10, 1.2
SMALL = 0.5  # seconds: a node this short on the plain side gets no ratio (added ms only)
# the libraries either side may import; each side reports which of them it had imported at its end
LIBRARIES = ['tensorflow', 'apache_beam', 'tfx_bsl', 'tensorflow_data_validation', 'tensorflow_transform',
             'tensorflow_model_analysis', 'tf2onnx', 'onnxruntime']

SLUICE = r'''
import json, sys, time
P = json.loads(sys.argv[1])
from sluice.components import onnx_export
spent = {'onnx_export': 0.0, 'onnx_check': 0.0}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return wrapper
onnx_export.export_onnx = timed('onnx_export', onnx_export.export_onnx)
onnx_export.max_abs_diff = timed('onnx_check', onnx_export.max_abs_diff)
import threading
from sluice.orchestration import launcher
imports = {}
def node_imports(modules, first=launcher.import_first):
    start = time.perf_counter()
    try:
        return first(modules)
    finally:  # each node runs in a thread named after it (sluice.orchestration.schedule)
        node = threading.current_thread().name.removeprefix('sluice-node-')
        imports[node] = imports.get(node, 0.0) + time.perf_counter() - start
launcher.import_first = node_imports
from sluice import LocalDagRunner, load_pipeline
pipeline = load_pipeline(P['taxi'], root=P['root'], data=P['data'], train_steps=P['steps'])
result = LocalDagRunner(progress=False).run(pipeline)
assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
print(json.dumps({'nodes': {k: n.duration for k, n in result.nodes.items()}, **spent, 'imports': imports,
                  'onnx_diff': result['Trainer.onnx'].outputs['onnx_model'].get('onnx_max_abs_diff'),
                  'imported': [m for m in P['libraries'] if m in sys.modules]}))
'''

PLAIN = r'''
import json, os, sys, time
P = json.loads(sys.argv[1])
os.environ['TF_USE_LEGACY_KERAS'] = '1'  # the module file saves with Keras 2 (save_format='tf')
took, spent, imports = {}, {}, {}


def graph_libraries_unconverted():
    """What a script that knows TensorFlow does for Keras 2, tf.Transform and tfx_bsl (code written to
    run as graph code): AutoGraph calls it as written, as TensorFlow already does for `keras`."""
    from tensorflow.python.autograph.core import config, config_lib
    config.CONVERSION_RULES = tuple(config_lib.DoNotConvert(p) for p in ('tf_keras', 'tensorflow_transform', 'tfx_bsl')) \
        + tuple(config.CONVERSION_RULES)


class step:
    def __init__(self, name, into=took):
        self.name, self.into = name, into

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.into[self.name] = self.into.get(self.name, 0.0) + time.perf_counter() - self.start


import csv, glob, hashlib, importlib.util, shutil
root = P['root']
os.makedirs(root, exist_ok=True)
SPLITS = ['train', 'eval']  # 2:1
BEAM_ARGS = ['--direct_num_workers=1', '--pickle_library=cloudpickle', f'--temp_location={root}/tmp/beam']
examples_dir, stats_dir = os.path.join(root, 'examples'), os.path.join(root, 'statistics')
graph_dir, transformed_dir = os.path.join(root, 'transform_graph'), os.path.join(root, 'transformed')
serving_dir, run_dir = os.path.join(root, 'model', 'serving'), os.path.join(root, 'model_run')


def split_dir(base, split):
    return os.path.join(base, f'Split-{split}')


def load_module(path):
    spec = importlib.util.spec_from_file_location('taxi_user_module', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RANK = {None: 0, 'int': 1, 'float': 2, 'string': 3}


def kind_of(text):
    for kind, parse in (('int', int), ('float', float)):
        try:
            parse(text)
            return kind
        except ValueError:
            pass
    return 'string'


with step('CsvExampleGen'):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    with step('CsvExampleGen', imports):  # imports TensorFlow whole
        from tensorflow.core.example import example_pb2

    [csv_path] = glob.glob(os.path.join(P['data'], '*.csv'))
    with open(csv_path, newline='') as f:
        header = next(csv.reader(f))

    class Kinds(beam.CombineFn):
        def create_accumulator(self):
            return [None] * len(header)

        def add_input(self, acc, values):
            for i, value in enumerate(values):
                if value != '' and acc[i] != 'string':
                    kind = kind_of(value)
                    if RANK[kind] > RANK[acc[i]]:
                        acc[i] = kind
            return acc

        def merge_accumulators(self, accs):
            accs = list(accs)
            return [max((a[i] for a in accs), key=RANK.get) for i in range(len(header))]

        def extract_output(self, acc):
            return acc

    def encode(values, kinds):
        example = example_pb2.Example()
        for name, kind, value in zip(header, kinds, values):
            if value == '':
                continue
            feature = example.features.feature[name]
            if kind == 'int':
                feature.int64_list.value.append(int(value))
            elif kind == 'float':
                feature.float_list.value.append(float(value))
            else:
                feature.bytes_list.value.append(value.encode('utf-8'))
        return example.SerializeToString()

    def split_of(record, n):
        line = record[0]
        return 0 if int.from_bytes(hashlib.sha256(line.encode()).digest()[:8], 'big') % 3 < 2 else 1

    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as p:
        rows = (p | 'Read' >> beam.io.ReadFromText(csv_path, skip_header_lines=1)
                | 'Parse' >> beam.Map(lambda line: (line, next(csv.reader([line])))))
        kinds = rows | 'Values' >> beam.Map(lambda r: r[1]) | 'Kinds' >> beam.CombineGlobally(Kinds())
        encoded = rows | 'Encode' >> beam.Map(lambda r, k: (r[0], encode(r[1], k)), k=beam.pvalue.AsSingleton(kinds))
        parts = encoded | 'Split' >> beam.Partition(split_of, len(SPLITS))
        for i, split in enumerate(SPLITS):
            _ = (parts[i] | f'Drop[{split}]' >> beam.Map(lambda r: r[1])
                 | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                     os.path.join(split_dir(examples_dir, split), 'data_tfrecord'), file_name_suffix='.gz',
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP))

with step('StatisticsGen'):
    with step('StatisticsGen', imports):
        import tensorflow_data_validation as tfdv
        from tfx_bsl.public import tfxio

    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as p:
        for split in SPLITS:
            os.makedirs(split_dir(stats_dir, split))
            source = tfxio.TFExampleRecord(file_pattern=os.path.join(split_dir(examples_dir, split), '*'),
                                           telemetry_descriptors=['plain'])
            _ = (p | f'Read[{split}]' >> source.BeamSource()
                 | f'Stats[{split}]' >> tfdv.GenerateStatistics(tfdv.StatsOptions(num_top_values=20,
                                                                                  num_histogram_buckets=10))
                 | f'Write[{split}]' >> tfdv.WriteStatisticsToBinaryFile(
                     os.path.join(split_dir(stats_dir, split), 'FeatureStats.pb')))

with step('ImportSchemaGen'):
    schema = tfdv.load_schema_text(P['schema'])

with step('ExampleValidator'):
    for split in SPLITS:
        stats = tfdv.load_stats_binary(os.path.join(split_dir(stats_dir, split), 'FeatureStats.pb'))
        anomalies = tfdv.validate_statistics(stats, schema)
        assert not anomalies.anomaly_info, (split, anomalies)

with step('Transform'):
    graph_libraries_unconverted()  # where Sluice's Transform executor does the same
    with step('Transform', imports):
        import tensorflow_transform as tft
        import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    module = load_module(P['module'])
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), os.path.join(graph_dir, 'metadata'))

    def source(split):
        return tfxio.TFExampleRecord(file_pattern=os.path.join(split_dir(examples_dir, split), '*'), schema=schema,
                                     telemetry_descriptors=['plain'])

    def write(split, dataset):
        _ = (dataset | f'Encode[{split}]' >> tft_beam.EncodeTransformedDataset()
             | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                 os.path.join(split_dir(transformed_dir, split), 'transformed_examples'), file_name_suffix='.gz',
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP))

    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as p, tft_beam.Context(temp_dir=f'{root}/tmp/tft'):
        train = source('train')
        transformed, transform_fn = ((p | 'Read[train]' >> train.BeamSource(), train.TensorAdapterConfig())
                                     | tft_beam.AnalyzeAndTransformDataset(module.preprocessing_fn,
                                                                           output_record_batches=True))
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        write('train', transformed)
        evaluation = source('eval')
        write('eval', ((p | 'Read[eval]' >> evaluation.BeamSource(), evaluation.TensorAdapterConfig()), transform_fn)
              | tft_beam.TransformDataset(output_record_batches=True))

with step('Trainer'):
    import numpy as np
    import tensorflow as tf

    # what the module's run_fn does, without fn_args
    tf.keras.utils.set_random_seed(42)
    output = tft.TFTransformOutput(graph_dir)

    def dataset(split, batch_size, **options):
        pattern = [os.path.join(split_dir(transformed_dir, split), '*')]
        return tfxio.TFExampleRecord(file_pattern=pattern, schema=output.transformed_metadata.schema).TensorFlowDataset(
            tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=module.LABEL, **options))

    model = module._model(output, 3e-3)
    model.fit(dataset('train', module.BATCH_SIZE, shuffle_seed=7).repeat(), steps_per_epoch=P['steps'],
              validation_data=dataset('eval', module.BATCH_SIZE, shuffle_seed=7).repeat(), validation_steps=10,
              verbose=0, callbacks=[tf.keras.callbacks.TensorBoard(log_dir=run_dir)])
    model.save(serving_dir, save_format='tf', signatures={'serving_default': module._serving_fn(model, output)})

with step('Trainer.onnx'):
    with step('onnx_export', spent):
        import tf2onnx
        onnx_path = os.path.join(root, 'model', 'model.onnx')
        signature = [tf.TensorSpec([None], x.dtype, name=x.name) for x in model.inputs]
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=onnx_path)
    with step('onnx_check', spent):
        import onnxruntime as ort
        features, _ = next(iter(dataset('eval', 2000, shuffle=False, num_epochs=1)))
        session = ort.InferenceSession(onnx_path)
        names = [i.name for i in session.get_inputs()]
        by_name = {x.name: features[x.name].numpy() for x in model.inputs}
        [got] = session.run(None, {n: by_name[n] for n in names})
        expected = model({x.name: features[x.name] for x in model.inputs}).numpy()
        onnx_diff = float(np.max(np.abs(got.reshape(expected.shape) - expected)))

with step('Evaluator'):
    with step('Evaluator', imports):
        import tensorflow_model_analysis as tfma

    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name='candidate', signature_name='serving_default', label_key='tips')],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='MeanAbsoluteError'),
                                                 tfma.MetricConfig(class_name='MeanSquaredError')])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['payment_type'])])
    shared = tfma.default_eval_shared_model(eval_saved_model_path=serving_dir, eval_config=config,
                                           model_name='candidate', rubber_stamp=True)
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=config,
                            data_location=os.path.join(split_dir(examples_dir, 'eval'), '*'), file_format='tfrecords',
                            output_path=os.path.join(root, 'evaluation'), pipeline_options=PipelineOptions(BEAM_ARGS))
    overall = [m for m in tfma.load_metrics(os.path.join(root, 'evaluation'))
               if not m.slice_key.single_slice_keys]
    mae = [kv.value.double_value.value for kv in overall[0].metric_keys_and_values
           if kv.key.name == 'mean_absolute_error'][0]

with step('ModelValidator'):
    blessed = mae <= 1.0
    with open(os.path.join(root, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
        f.write(json.dumps({'mean_absolute_error': mae}))

with step('Pusher'):
    if blessed:
        shutil.copytree(serving_dir, os.path.join(root, 'serving', '.staging'))
        os.rename(os.path.join(root, 'serving', '.staging'), os.path.join(root, 'serving', '1'))
print(json.dumps({'nodes': took, **spent, 'imports': imports, 'onnx_diff': onnx_diff, 'mae': mae,
                  'imported': [m for m in P['libraries'] if m in sys.modules]}))
'''

# The floor of the resume: what the re-run nodes (Evaluator, ModelValidator, Pusher) need, in a
# fresh process, and nothing else.
FLOOR = r'''
import json, os, shutil, sys
P = json.loads(sys.argv[1])
os.environ['TF_USE_LEGACY_KERAS'] = '1'
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions
config = tfma.EvalConfig(
    model_specs=[tfma.ModelSpec(name='candidate', signature_name='serving_default', label_key='tips')],
    metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='MeanAbsoluteError'),
                                             tfma.MetricConfig(class_name='MeanSquaredError')])],
    slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['payment_type'])])
shared = tfma.default_eval_shared_model(eval_saved_model_path=P['serving'], eval_config=config,
                                       model_name='candidate', rubber_stamp=True)
out = os.path.join(P['root'], 'evaluation')
tfma.run_model_analysis(eval_shared_model=shared, eval_config=config, data_location=P['eval_pattern'],
                        file_format='tfrecords', output_path=out,
                        pipeline_options=PipelineOptions(['--direct_num_workers=1', '--pickle_library=cloudpickle',
                                                          f"--temp_location={P['root']}/tmp"]))
overall = [m for m in tfma.load_metrics(out) if not m.slice_key.single_slice_keys]
mae = [kv.value.double_value.value for kv in overall[0].metric_keys_and_values
       if kv.key.name == 'mean_absolute_error'][0]
if mae <= 1.0:
    shutil.copytree(P['serving'], os.path.join(P['root'], 'serving', '.staging'))
    os.rename(os.path.join(P['root'], 'serving', '.staging'), os.path.join(P['root'], 'serving', '1'))
print(json.dumps({'mae': mae}))
'''

RESUME_PIPELINE = '''
from sluice.examples.taxi.taxi_pipeline import create_pipeline as _taxi


def create_pipeline():
    return _taxi(root='runs/taxi', data={data!r}, train_steps={steps!r})
'''


def one_side(side: str, data: str, steps: int) -> dict:
    """One side ('sluice' or 'plain') in a fresh process and root: wall seconds, peak memory (MB) and
    CPU seconds of its process tree, and what the process reports (per node seconds, ONNX, imports)."""
    root = tempfile.mkdtemp(prefix=f'sluice-vs-plain-{side}-')
    try:
        params = {'taxi': TAXI, 'root': root if side == 'sluice' else os.path.join(root, 'plain'), 'data': data,
                  'steps': steps, 'schema': SCHEMA, 'module': MODULE, 'libraries': LIBRARIES}
        m = run_measured(['-c', SLUICE if side == 'sluice' else PLAIN, json.dumps(params)], cwd=REPO)
        found = json.loads(m.proc.stdout.strip().splitlines()[-1])
        return {'seconds': m.seconds, 'peak': m.peak / 2**20, 'cpu': m.cpu, **found}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure_pair(data: str, steps: int, repeat_index: int) -> dict[str, dict]:
    """One repeat of both sides on the same data; which goes first alternates with ``repeat_index``."""
    return {side: one_side(side, data, steps) for side in turns(['sluice', 'plain'], repeat_index)}


def report_scale(times: int, rows: int, reps: list[dict], steps: int) -> list[str]:
    """Prints one size's table; returns the targets it missed, each with where the time goes."""
    sl, pl = [r['sluice'] for r in reps], [r['plain'] for r in reps]
    n = len(reps)
    print(f'\n{times}x: {rows:,} rows, train_steps={steps}, {n} repeat(s)')
    print(f'  {"node":<22}{"plain s":>28}{"sluice s":>28}{"sluice / plain":>28}{"added s":>28}')
    missed, checked = [], times >= 10
    for node in sl[0]['nodes']:
        a, b = [s['nodes'][node] for s in sl], [p['nodes'][node] for p in pl]
        added = [x - y for x, y in zip(a, b)]
        ratio = spread(ratios(a, b), '.3f') if median(b) >= SMALL else '(too short)'
        print(f'  {node:<22}{spread(b, ".2f"):>28}{spread(a, ".2f"):>28}{ratio:>28}{spread(added, "+.2f"):>28}')
        if checked and median(b) >= SMALL and median(ratios(a, b)) > TIME_TARGET:
            missed.append((node, median(ratios(a, b)), median(added)))
    apart = not any(s['onnx_export'] or s['onnx_check'] for s in sl)  # Trainer.onnx ran in its own process
    for key, label in (('onnx_export', '  of which ONNX export'), ('onnx_check', '  of which ONNX check')):
        a, b = [s[key] for s in sl], [p[key] for p in pl]
        if apart:
            print(f'  {label:<22}{spread(b, ".2f"):>28}{"(own process, not timed)":>28}')
            continue
        print(f'  {label:<22}{spread(b, ".2f"):>28}{spread(a, ".2f"):>28}{"(not the same work)":>28}'
              f'{spread([x - y for x, y in zip(a, b)], "+.2f"):>28}')
    for side, group in (('plain', pl), ('sluice', sl)):  # where each side first imports TensorFlow and its libraries
        by_node = {k: median([r['imports'].get(k, 0.0) for r in group]) for k in sl[0]['nodes']}
        shown = ', '.join(f'{k} {v:.2f} s' for k, v in by_node.items() if v >= 0.05)
        print(f'  heavy imports, {side}: {shown or "(none timed)"}')
    outside = {side: [r['seconds'] - sum(r['nodes'].values()) for r in group]
               for side, group in (('sluice', sl), ('plain', pl))}
    # wall minus the nodes' sum: Sluice's is lower by the time nodes ran at once (Trainer.onnx beside the Evaluator)
    print(f'  {"wall - sum of nodes":<22}{spread(outside["plain"], ".2f"):>28}{spread(outside["sluice"], ".2f"):>28}'
          f'{"":>28}{spread([x - y for x, y in zip(outside["sluice"], outside["plain"])], "+.2f"):>28}')
    a, b = [s['seconds'] for s in sl], [p['seconds'] for p in pl]
    print(f'  {"whole process":<22}{spread(b, ".2f"):>28}{spread(a, ".2f"):>28}{spread(ratios(a, b), ".3f"):>28}'
          f'{spread([x - y for x, y in zip(a, b)], "+.2f"):>28}')
    whole = median(ratios(a, b))
    if checked and whole > TIME_TARGET:
        missed.append(('whole process', whole, median([x - y for x, y in zip(a, b)])))
    print(f'  {"  CPU s / wall s":<22}{spread(ratios([p["cpu"] for p in pl], b), ".2f"):>28}'
          f'{spread(ratios([s["cpu"] for s in sl], a), ".2f"):>28}')
    ma, mb = [s['peak'] for s in sl], [p['peak'] for p in pl]
    print(f'  {"peak RSS MB":<22}{spread(mb, ",.0f"):>28}{spread(ma, ",.0f"):>28}{spread(ratios(ma, mb), ".3f"):>28}'
          f'{spread([x - y for x, y in zip(ma, mb)], "+,.0f"):>28}')
    print(f'  ONNX vs reference max abs diff: plain {spread([p["onnx_diff"] for p in pl], ".1e")} (Keras model), '
          f'sluice {spread([s["onnx_diff"] for s in sl], ".1e")} (serving signature)')
    out = []
    for node, ratio, added in missed:
        where = ''
        if node == 'Trainer.onnx':
            sluice_side = ('in a process of its own, its imports included' if apart else
                           f'{median([s["onnx_export"] + s["onnx_check"] for s in sl]):.1f} s of export and check')
            where = (f' (Sluice exports the whole serving signature and checks it on raw rows, {sluice_side}; '
                     f'the plain script converts the Keras model only, {median([p["onnx_export"] + p["onnx_check"] for p in pl]):.1f} s: '
                     'not the same work)')
        elif node in sl[0]['nodes'] and abs(moved := median(
                [s['imports'].get(node, 0.0) - p['imports'].get(node, 0.0) for s, p in zip(sl, pl)])) >= 0.1:
            rest = median(ratios([s['nodes'][node] - s['imports'].get(node, 0.0) for s in sl],
                                 [p['nodes'][node] - p['imports'].get(node, 0.0) for p in pl]))
            where = (f' (of which {moved:+.1f} s the first imports of TensorFlow and its libraries, which the plain '
                     f'script makes in another node; without them {rest:.3f}x)')
        elif node == 'whole process':
            per_node = sorted(((median([s['nodes'][k] - p['nodes'][k] for s, p in zip(sl, pl)]), k)
                               for k in sl[0]['nodes']), reverse=True)
            parts = [f'{k} {v:+.1f} s' for v, k in per_node if abs(v) >= 0.3]
            parts.append(f'wall - sum of nodes {median([x - y for x, y in zip(outside["sluice"], outside["plain"])]):+.1f} s')
            where = ' (' + ', '.join(parts) + ')'
        out.append(f'{times}x {node}: {ratio:.3f}x, {added:+.1f} s{where}')
    if checked and median(ratios(ma, mb)) > MEMORY_TARGET:
        out.append(f'{times}x peak memory: {median(ratios(ma, mb)):.3f}x ({median(ma):,.0f} MB vs {median(mb):,.0f} MB)')
    return out


def resume_once(data: str, steps: int, kill_at: str, floor_first: bool) -> dict:
    sys.path.insert(0, REPO)
    from sluice.metadata import MetadataStore

    directory = tempfile.mkdtemp(prefix='sluice-vs-plain-resume-')
    try:
        pipeline_file = os.path.join(directory, 'taxi_bench_pipeline.py')
        with open(pipeline_file, 'w') as f:
            f.write(RESUME_PIPELINE.format(data=data, steps=steps))
        _, killed = run_python(['-m', 'sluice.ui.cli', 'run', pipeline_file], cwd=directory,
                               env={'SLUICE_KILL_AT': kill_at}, check=False)
        if killed.returncode != -9:
            sys.exit(f'the run was not SIGKILLed (status {killed.returncode}):\n{killed.stderr[-2000:]}')
        store = MetadataStore(f'sqlite:///{directory}/runs/taxi/metadata.db')
        [run] = store.runs('taxi')
        before = {r.id for r in store.executions(run.run_id)}
        serving = os.path.join(store.node_outputs(run.run_id, 'Trainer')['model'][0].uri, 'Format-Serving')
        examples = store.node_outputs(run.run_id, 'CsvExampleGen')['examples'][0]
        floor_root = os.path.join(directory, 'floor')
        params = {'serving': serving, 'eval_pattern': os.path.join(examples.split_uri('eval'), '*'), 'root': floor_root}

        def floor():
            return run_python_sampled(['-c', FLOOR, json.dumps(params)], cwd=directory)

        def resume():
            started = time.time()
            return started, run_python_sampled(['-m', 'sluice.ui.cli', 'resume', run.run_id], cwd=directory)

        if floor_first:
            floor_s, _, floor_peak = floor()
            started, (resume_s, _, resume_peak) = resume()
        else:
            started, (resume_s, _, resume_peak) = resume()
            floor_s, _, floor_peak = floor()
        new = [r for r in store.executions(run.run_id) if r.id not in before]
        rerun = {r.node_id: r.update_time - r.create_time for r in new if r.state == 'COMPLETE'}
        if any(r.create_time < started - 0.01 for r in new) or not rerun:
            sys.exit(f'the resume recorded no new COMPLETE execution after it started: {new}')
        return {'resume': resume_s, 'floor': floor_s, 'resume_peak': resume_peak / 2**20,
                'floor_peak': floor_peak / 2**20, 'rerun': rerun,
                'reused': [n for n in run.node_ids if n not in rerun], 'order': run.node_ids}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--scales', default='1,10,100', help='comma-separated multiples of the rows, e.g. 1,10')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--train-steps', type=int, default=300)
    parser.add_argument('--resume-scale', type=int, default=1)
    parser.add_argument('--resume-repeat', type=int, default=None, help='default: --repeat')
    parser.add_argument('--kill-at', default='Evaluator:executor:1', help='SLUICE_KILL_AT for the killed run')
    parser.add_argument('--no-resume', action='store_true')
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(',') if s.strip()]
    started = time.perf_counter()
    header = f'taxi pipeline, Sluice vs plain script, DirectRunner one worker; {machine()}'
    data = {t: resample(t) for t in sorted(set(scales + ([] if args.no_resume else [args.resume_scale])))}
    reps: dict[int, list[dict]] = {t: [] for t in scales}
    for i in range(args.repeat):
        for times in scales:
            reps[times].append(measure_pair(data[times][0], args.train_steps, i))
    os.makedirs(os.path.join(REPO, 'bench', 'out'), exist_ok=True)
    with open(os.path.join(REPO, 'bench', 'out', f'taxi_vs_plain-{time.strftime("%Y%m%d-%H%M%S")}.json'), 'w') as f:
        json.dump({str(t): v for t, v in reps.items()}, f)  # the raw measurements, kept out of git
    print(header)
    print('each figure: median [min-max, n] over the repeats; ratios and differences per repeat (pairs)')
    missed = []
    for times in scales:
        missed += report_scale(times, data[times][1], reps[times], args.train_steps)

    if not args.no_resume:
        n = args.resume_repeat or args.repeat
        res = [resume_once(data[args.resume_scale][0], args.train_steps, args.kill_at, floor_first=i % 2 == 1)
               for i in range(n)]
        r, f = [x['resume'] for x in res], [x['floor'] for x in res]
        print(f'\nresume after SIGKILL at {args.kill_at}, {args.resume_scale}x ({data[args.resume_scale][1]:,} rows), '
              f'{n} repeat(s), whole processes')
        rerun_nodes = ', '.join(sorted(res[0]['rerun'], key=res[0]['order'].index))
        print(f'  re-ran (new COMPLETE execution, from ML-Metadata): {rerun_nodes}; '
              f'reused: {", ".join(res[0]["reused"])}')
        if any(set(x['rerun']) != set(res[0]['rerun']) for x in res):
            print(f'  (the re-run nodes differed between repeats: {[sorted(x["rerun"]) for x in res]})')
        print(f'  {"sluice resume RUN_ID:":<44}{spread(r, ".2f", " s")}, peak RSS {spread([x["resume_peak"] for x in res], ",.0f", " MB")}')
        print(f'  {"floor (fresh process, TFMA + check + copy):":<44}{spread(f, ".2f", " s")}, peak RSS '
              f'{spread([x["floor_peak"] for x in res], ",.0f", " MB")}')
        print(f'  {"resume / floor (per repeat):":<44}{spread(ratios(r, f), ".3f")}')
        in_nodes = [sum(x['rerun'].values()) for x in res]
        nodes = sorted(res[0]['rerun'], key=res[0]['order'].index)
        each = ', '.join(f'{k} {spread([x["rerun"][k] for x in res], ".2f")}' for k in nodes)
        print(f'  {"  re-run nodes inside the resume:":<44}{spread(in_nodes, ".2f", " s")} ({each})')
        print(f'  {"  resume outside those nodes:":<44}{spread([a - b for a, b in zip(r, in_nodes)], ".2f", " s")} '
              '(start-up, pipeline load, plan, abandoned-execution cleanup, exit)')
        if median(ratios(r, f)) > RESUME_TARGET:
            missed.append(f'resume: {median(ratios(r, f)):.3f}x its floor, {median([a - b for a, b in zip(r, f)]):+.1f} s')

    print('\ntargets (10x and up: every node of 0.5 s or more and the whole process within '
          f'{TIME_TARGET}x, peak memory within {MEMORY_TARGET}x; resume within {RESUME_TARGET}x of its floor):')
    for line in missed or ['all met']:
        print(f'  MISSED {line}' if missed else f'  {line}')
    print(f'(bench took {(time.perf_counter() - started) / 60:.1f} min)')


if __name__ == '__main__':
    main()
