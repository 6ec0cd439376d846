"""The data components on other Beam runners give the single-process results: DirectRunner with
several processes (Sluice's warm pool of worker processes: sluice.components.beam_pool), and Beam's
portable runner (the path Flink and Spark clusters use) against a job service started here, with the
SDK harness in this process (LOOPBACK).

The penguin example's data components, compared with the session's run of that example
(conftest.py's penguin_run). The taxi example's 15,000 rows made this file take twice as long for
the same comparisons; bench/beam_workers.py runs the pool on the taxi data, at 1x to 100x."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from outputs import assert_same_columns, records, transformed_columns

from sluice.components import CsvExampleGen, ImportSchemaGen, StatisticsGen, Transform
from sluice import LocalDagRunner, Pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin')


def run_data_components(root, beam_args):
    """The penguin example's data components, with the parameters conftest.py's penguin_run gives them."""
    gen = CsvExampleGen(input_base=os.path.join(PENGUIN, 'data'), split_ratios={'train': 2, 'eval': 1})
    stats = StatisticsGen(examples=gen.outputs['examples'])
    schema = ImportSchemaGen(schema_file=os.path.join(PENGUIN, 'schema', 'schema.pbtxt'))
    transform = Transform(examples=gen.outputs['examples'], schema=schema.outputs['schema'],
                          module_file=os.path.join(PENGUIN, 'penguin_module.py'))
    pipeline = Pipeline('beam-runners', str(root), [gen, stats, schema, transform], metadata=f'sqlite:///{root}/m.db',
                        beam_pipeline_args=beam_args)
    started = time.perf_counter()
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
    return result, time.perf_counter() - started


@pytest.fixture(scope='module')
def reference(penguin_run):
    """The single-process results: these nodes' outputs in the session's run of the penguin example
    (conftest.py's penguin_run: the same components and parameters, ``--direct_num_workers=1``), read
    from its store."""
    from sluice.metadata import MetadataStore

    _, info = penguin_run
    store = MetadataStore(info['metadata'], create=False)
    nodes = ('CsvExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'Transform')
    executions = {e.node_id: e for e in store.executions(info['run_id']) if e.node_id in nodes}
    assert {n: e.state for n, e in executions.items()} == dict.fromkeys(nodes, 'COMPLETE')
    return {n: {key: artifact for key, [artifact] in e.outputs.items()} for n, e in executions.items()}


def assert_same_results(result, reference):
    ref = reference
    for split in ('train', 'eval'):
        # ExampleGen: byte for byte the same examples in the same splits.
        assert sorted(records(result['CsvExampleGen'].outputs['examples'], split)) == \
            sorted(records(ref['CsvExampleGen']['examples'], split))
        # StatisticsGen: the same counts and the same means (up to summation order).
        from sluice.components.statistics_gen import load_statistics
        [a] = load_statistics(result['StatisticsGen'].outputs['statistics'], split).datasets
        [b] = load_statistics(ref['StatisticsGen']['statistics'], split).datasets
        assert a.num_examples == b.num_examples
        for fa, fb in zip(sorted(a.features, key=lambda f: f.path.step[0]), sorted(b.features, key=lambda f: f.path.step[0])):
            if fa.HasField('num_stats'):
                assert fa.num_stats.common_stats.num_non_missing == fb.num_stats.common_stats.num_non_missing
                assert fa.num_stats.mean == pytest.approx(fb.num_stats.mean, rel=1e-9)
        # Transform: z-scores equal up to float32 rounding (runners sum in different orders, so the
        # mean and variance differ in their last bits); the label as it was.
        assert_same_columns(transformed_columns(result['Transform'].outputs['transformed_examples'], split),
                            transformed_columns(ref['Transform']['transformed_examples'], split))


def test_multi_process_direct_runner_gives_the_same_results(tmp_path, reference, monkeypatch):
    from sluice.components import beam_pool

    monkeypatch.setenv(beam_pool.MIN_ROWS_ENV, '0')  # the penguins' 344 rows would run in this process
    beam_pool.shutdown()  # this process's pool, as a `sluice run` starts it
    try:
        result, seconds = run_data_components(tmp_path / 'root', ['--direct_running_mode=multi_processing',
                                                                   '--direct_num_workers=2'])
        pool = beam_pool.current_pool()
        # Two worker processes at a time ran the Beam pipelines of all three data nodes (two harnesses
        # per pipeline: one on each): the two forked first for CsvExampleGen, then two forked after the
        # zygote imported the libraries StatisticsGen and Transform list, forked once for both.
        assert pool is not None and pool.started == 4 and pool.served >= 2 * 3 and pool.served % 2 == 0, \
            (pool and (pool.started, pool.served))
        assert len(pool.workers) == 2 and not any(w.cold for w in pool.workers) and pool.replaced == []
        assert all(w.process.poll() is None for w in pool.workers)
        with open(f'/proc/{pool.workers[0].process.pid}/environ', 'rb') as f:  # the cores shared by 2 workers
            assert b'TF_NUM_INTRAOP_THREADS=' + str(max(1, len(os.sched_getaffinity(0)) // 2)).encode() in \
                f.read().split(b'\0') or 'TF_NUM_INTRAOP_THREADS' in os.environ
    finally:
        beam_pool.shutdown()
    assert_same_results(result, reference)
    print(f'two processes {seconds:.1f}s')


def test_portable_runner_against_a_local_job_service(tmp_path, reference):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    service = subprocess.Popen([sys.executable, '-m', 'apache_beam.runners.portability.local_job_service_main',
                                f'--port={port}'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # wait for the job service to listen
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        result, _ = run_data_components(tmp_path / 'root', ['--runner=PortableRunner',
                                                            f'--job_endpoint=localhost:{port}',
                                                            '--environment_type=LOOPBACK'])
        assert_same_results(result, reference)
    finally:
        service.terminate()
        service.wait(timeout=30)
