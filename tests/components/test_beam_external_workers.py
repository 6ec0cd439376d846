"""Beam work outside the driver process: the components' Beam pipelines run on the portable runner
with ``--environment_type=EXTERNAL`` SDK workers, started as separate processes by Beam's worker pool
(``apache_beam.runners.worker.worker_pool_main``), the way SDK workers run beside Flink or Spark task
managers; the results equal DirectRunner's.

Covered: CsvExampleGen, StatisticsGen, SchemaGen and Transform (data), and the Evaluator (TFMA's Beam
pipeline, on the same trained model). SchemaGen and the Trainer run no Beam pipeline; the Trainer is
reused from the DirectRunner run (a cache hit), so both Evaluators measure the very same model.
"""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import pytest
from outputs import assert_same_columns, records
from outputs import transformed_columns as columns

from sluice.components import (
    CsvExampleGen,
    Evaluator,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)
from sluice import LocalDagRunner, Pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
BEAM_NODES = ['CsvExampleGen', 'StatisticsGen', 'SchemaGen', 'Transform', 'Evaluator']


def penguin_pipeline(root, beam_args):
    module = os.path.join(PENGUIN, 'penguin_module.py')
    gen = CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'), split_ratios={'train': 2, 'eval': 1})
    stats = StatisticsGen(examples=gen.outputs['examples'])
    schema = SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'], module_file=module)
    trainer = Trainer(module_file=module, examples=transform.outputs['transformed_examples'],
                      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
                      train_steps=20, eval_steps=2, export_onnx=False)
    evaluator = Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'],
                          eval_config={'label_key': 'species', 'metrics': ['SparseCategoricalAccuracy'],
                                       'slices': [[], ['species']]})
    return Pipeline('beam-external', str(root), [gen, stats, schema, transform, trainer, evaluator],
                    metadata=f'sqlite:///{root}/metadata.db', beam_pipeline_args=beam_args)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_listening(port, process, what, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f'{what} exited with status {process.returncode} before listening on {port}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f'{what} did not listen on port {port} within {seconds}s')


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """One pipeline root and store for both runs: the DirectRunner run first, then the EXTERNAL one."""
    return tmp_path_factory.mktemp('beam-external') / 'root'


@pytest.fixture(scope='module')
def reference(root):
    result = LocalDagRunner(progress=False).run(penguin_pipeline(root, ['--direct_num_workers=1']))
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    return result


@pytest.fixture(scope='module')
def external(root, reference, tmp_path_factory):
    """The same pipeline on the portable runner against a job service started here, with SDK workers
    from a worker pool in a process of its own. Returns the run's result and the pool's log."""
    logs = tmp_path_factory.mktemp('beam-external-logs')
    env = dict(os.environ)
    # The pool starts each worker as `python -c ...` found on PATH: make that this interpreter.
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    pool_port, job_port = free_port(), free_port()
    pool_log = open(logs / 'worker_pool.log', 'w')
    pool = subprocess.Popen([sys.executable, '-m', 'apache_beam.runners.worker.worker_pool_main',
                             f'--service_port={pool_port}'], stdout=pool_log, stderr=subprocess.STDOUT, env=env,
                            cwd=str(logs))
    service = subprocess.Popen([sys.executable, '-m', 'apache_beam.runners.portability.local_job_service_main',
                                f'--port={job_port}'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_listening(pool_port, pool, 'the Beam worker pool')
        wait_listening(job_port, service, 'the Beam job service')
        pipeline = penguin_pipeline(root, ['--runner=PortableRunner', f'--job_endpoint=localhost:{job_port}',
                                           '--environment_type=EXTERNAL',
                                           f'--environment_config=localhost:{pool_port}'])
        pipeline.no_cache = set(BEAM_NODES)  # execute these again; the Trainer stays a cache hit
        started = time.perf_counter()
        result = LocalDagRunner(progress=False).run(pipeline)
        seconds = time.perf_counter() - started
    finally:
        stop(service)
        stop(pool)
        pool_log.close()
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    print(f'EXTERNAL workers: {seconds:.1f}s for {", ".join(BEAM_NODES)}')
    return result, (logs / 'worker_pool.log').read_text()


def test_workers_ran_in_processes_of_their_own(external, reference):
    result, pool_log = external
    for node in BEAM_NODES:  # executed again (not reused), on the EXTERNAL environment
        assert result[node].state == 'COMPLETE' and result[node].execution_id != reference[node].execution_id, node
    assert result['Trainer'].state == 'CACHED'
    assert result['Trainer'].outputs['model'].id == reference['Trainer'].outputs['model'].id
    # The pool started the SDK workers as processes: one per Beam job at least (ExampleGen runs two,
    # StatisticsGen, Transform and the Evaluator one or more each).
    started = pool_log.count('Starting worker with command')
    assert started >= 5, pool_log[-3000:]


def test_data_components_equal_direct_runner(external, reference):
    result, _ = external
    from sluice.components.statistics_gen import load_statistics
    for split in ('train', 'eval'):
        assert sorted(records(result['CsvExampleGen'].outputs['examples'], split)) == \
            sorted(records(reference['CsvExampleGen'].outputs['examples'], split)), split
        [a] = load_statistics(result['StatisticsGen'].outputs['statistics'], split).datasets
        [b] = load_statistics(reference['StatisticsGen'].outputs['statistics'], split).datasets
        assert a.num_examples == b.num_examples > 0
        fa = {f.path.step[0]: f for f in a.features}
        fb = {f.path.step[0]: f for f in b.features}
        assert set(fa) == set(fb)
        for name, f in fb.items():
            if f.HasField('num_stats'):
                g = fa[name].num_stats
                assert g.common_stats.num_non_missing == f.num_stats.common_stats.num_non_missing, name
                assert g.mean == pytest.approx(f.num_stats.mean, rel=1e-6), name
                assert g.std_dev == pytest.approx(f.num_stats.std_dev, rel=1e-6), name
            if f.HasField('string_stats'):
                assert fa[name].string_stats.unique == f.string_stats.unique, name
        assert_same_columns(columns(result['Transform'].outputs['transformed_examples'], split),
                            columns(reference['Transform'].outputs['transformed_examples'], split))
    schema = os.path.join(result['SchemaGen'].outputs['schema'].uri, 'schema.pbtxt')
    ref_schema = os.path.join(reference['SchemaGen'].outputs['schema'].uri, 'schema.pbtxt')
    with open(schema) as f, open(ref_schema) as g:
        text = f.read()
        assert text == g.read() and 'culmen_length_mm' in text


def flat_metrics(value, prefix=''):
    """Every number in metrics.json with its path, leaving out what identifies the artifacts."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flat_metrics(v, f'{prefix}/{k}'))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(flat_metrics(v, f'{prefix}[{i}]'))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value
    return out


def test_evaluator_equals_direct_runner(external, reference):
    from sluice.components.evaluator import load_metrics_summary
    result, _ = external
    got = load_metrics_summary(result['Evaluator'].outputs['evaluation'])
    want = load_metrics_summary(reference['Evaluator'].outputs['evaluation'])
    g, w = flat_metrics(got['slices']), flat_metrics(want['slices'])  # per slice: the candidate's metrics
    assert '/Overall/candidate/sparse_categorical_accuracy' in w and any('species' in k for k in w), sorted(w)
    assert set(g) == set(w)
    for key, value in w.items():
        assert math.isclose(g[key], value, rel_tol=1e-6, abs_tol=1e-9), (key, g[key], value)
