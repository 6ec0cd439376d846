"""The warm pool of Beam worker processes (sluice.components.beam_pool): several runs of one process
share its workers, a worker never runs a helper as it was before an edit, and the workers end with
the process that started them, even when it is killed. Real Beam pipelines on real worker processes;
the work done in a worker reports that worker's pid."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

PIPELINE = '''\
import glob
import os

from sluice import Pipeline
from sluice.components import Artifact, Component, Executor, Output


class Tags(Artifact):
    """Text files written by a Beam pipeline."""


def tag(x):
    import pool_helper  # imported by name inside the worker: what a long-lived worker could keep stale
    return f'{{pool_helper.tag(x)}}@{{os.getpid()}}'


class TagExecutor(Executor):
    def run(self, *, tags: Tags) -> None:
        import apache_beam as beam
        with self.beam_pipeline() as p:
            _ = p | beam.Create(['x']) | beam.Map(tag) | beam.io.WriteToText(os.path.join(tags.uri, 'part'))


class Tag(Component):
    tags = Output(Tags)
    executor = TagExecutor


def create_pipeline():
    return Pipeline('pool', {root!r}, [Tag()], metadata={url!r},
                    beam_pipeline_args=['--direct_running_mode=multi_processing', '--direct_num_workers=1'])
'''

DRIVER = '''\
import glob, json, os, sys, time
from sluice import LocalDagRunner, load_pipeline
from sluice.components import beam_pool

path, versions, hold = sys.argv[1], sys.argv[2], sys.argv[3] == 'hold'
helper = os.path.join(os.path.dirname(path), 'pool_helper.py')
out = []
for version in versions:  # as `sluice watch` does: edit, load the pipeline file again, run
    if version != '=':
        with open(helper, 'w') as f:
            f.write(f"def tag(x):\\n    return x + '-{{version}}'\\n")
    pipeline = load_pipeline(path)
    pipeline.no_cache = {{'Tag'}}
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.state == 'COMPLETE', {{k: n.error for k, n in result.nodes.items()}}
    [part] = glob.glob(os.path.join(result['Tag'].outputs['tags'].uri, 'part*'))
    out.append(open(part).read().strip())
pool = beam_pool.current_pool()
print(json.dumps({{'out': out, 'driver': os.getpid(), 'started': pool.started, 'served': pool.served,
                  'replaced': pool.replaced, 'pids': [w.process.pid for w in pool.workers],
                  'zygote': pool.zygote.process.pid}}), flush=True)
if hold:
    time.sleep(600)
'''


def start(tmp_path, versions, hold=False):
    (tmp_path / 'tagging.py').write_text(PIPELINE.format(root=str(tmp_path / 'root'),
                                                         url=f"sqlite:///{tmp_path / 'm.db'}"))
    (tmp_path / 'driver.py').write_text(DRIVER.format())
    return subprocess.Popen([sys.executable, str(tmp_path / 'driver.py'), str(tmp_path / 'tagging.py'), versions,
                             'hold' if hold else 'once'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)


def report(process):
    line = process.stdout.readline()
    assert line, process.stderr.read()[-4000:]
    return json.loads(line)


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_runs_share_the_workers_and_an_edited_helper_is_never_run_stale(tmp_path):
    process = start(tmp_path, 'AB=')
    got = report(process)
    assert process.wait(timeout=60) == 0
    process.communicate()
    (first, first_pid), (second, second_pid), (third, third_pid) = (o.split('@') for o in got['out'])
    # Each run's Beam work ran in a worker process, not in the driver ...
    assert got['driver'] not in {int(first_pid), int(second_pid), int(third_pid)}
    # ... with the helper as it was on disk at that run: after the edit, not the version the worker had
    # imported; the worker holding it was replaced, and the next run reused the new one as it was.
    assert (first, second, third) == ('x-A', 'x-B', 'x-B')
    assert first_pid != second_pid == third_pid and got['pids'] == [int(third_pid)]
    assert len(got['replaced']) == 1 and 'pool_helper' in got['replaced'][0], got['replaced']
    assert got['started'] == 2 and got['served'] == 3


def test_the_workers_end_when_their_process_is_killed(tmp_path):
    process = start(tmp_path, 'A', hold=True)
    try:
        got = report(process)
        pids = got['pids'] + [got['zygote']]
        assert got['pids'] and all(alive(pid) for pid in pids)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)  # the workers and the zygote that forked them


CONCURRENT = '''\
import os
import time

from sluice import Pipeline
from sluice.components import Artifact, Component, Executor, Input, Output

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pool_helper.py')
AFTER_RAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'after-edit-ran')


class Tags(Artifact):
    """Text files written by a Beam pipeline."""


# The helper is imported by name at run time (a plugin, say): not part of the code the driver tracks for
# this file's cache key, so the driver does not refuse the second node after the edit; only the worker
# can notice it.
def helper():
    import importlib
    return importlib.import_module('pool_helper')


def tag_then_edit(x):
    pool_helper = helper()
    value = f'{{pool_helper.tag(x)}}@{{os.getpid()}}'
    with open(HELPER, 'w') as f:  # edited while this worker still runs this pipeline
        f.write("def tag(x):\\n    return x + '-B'\\n")
    deadline = time.monotonic() + 120  # still running when the other node's pipeline has run its function
    while not os.path.exists(AFTER_RAN):
        assert time.monotonic() < deadline, "the other node's pipeline never ran"
        time.sleep(0.05)
    return value


def tag(x):
    value = f'{{helper().tag(x)}}@{{os.getpid()}}'
    open(AFTER_RAN, 'w').close()
    return value


def write_tags(executor, tags, fn):
    import apache_beam as beam
    with executor.beam_pipeline() as p:
        _ = p | beam.Create(['x']) | beam.Map(fn) | beam.io.WriteToText(os.path.join(tags.uri, 'part'))


class EditingExecutor(Executor):
    def run(self, *, tags: Tags) -> None:
        write_tags(self, tags, tag_then_edit)


class Editing(Component):
    tags = Output(Tags)
    executor = EditingExecutor


class WaitForEditExecutor(Executor):
    def run(self, *, tags: Tags) -> None:
        deadline = time.monotonic() + 120
        while "'-B'" not in open(HELPER).read():
            assert time.monotonic() < deadline, 'the helper was never edited'
            time.sleep(0.05)


class WaitForEdit(Component):
    tags = Output(Tags)
    executor = WaitForEditExecutor


class AfterEditExecutor(Executor):
    def run(self, *, after: Tags, tags: Tags) -> None:
        write_tags(self, tags, tag)


class AfterEdit(Component):
    after = Input(Tags)
    tags = Output(Tags)
    executor = AfterEditExecutor


def create_pipeline():
    wait = WaitForEdit()
    return Pipeline('pool-concurrent', {root!r}, [Editing(), wait, AfterEdit(after=wait.outputs['tags'])],
                    metadata={url!r},
                    beam_pipeline_args=['--direct_running_mode=multi_processing', '--direct_num_workers=1'])
'''

CONCURRENT_DRIVER = '''\
import glob, json, os, sys
from sluice import LocalDagRunner, load_pipeline
from sluice.components import beam_pool

with open(os.path.join(os.path.dirname(sys.argv[1]), 'pool_helper.py'), 'w') as f:
    f.write("def tag(x):\\n    return x + '-A'\\n")
result = LocalDagRunner(progress=False, parallel=2).run(load_pipeline(sys.argv[1]))
out = {}
for node in ('Editing', 'AfterEdit'):
    n = result[node]
    parts = glob.glob(os.path.join(n.outputs['tags'].uri, 'part*')) if n.state == 'COMPLETE' else []
    out[node] = [n.state, n.error[-500:], open(parts[0]).read().strip() if parts else '']
pool = beam_pool.current_pool()
print(json.dumps({'nodes': out, 'started': pool.started, 'replaced': pool.replaced}), flush=True)
'''


def test_a_worker_replaced_while_it_runs_another_nodes_pipeline_finishes_that_pipeline_first(tmp_path):
    """Two nodes at once on a pool of one worker: the first node's Beam function imports the helper,
    edits it, and waits until the second node's Beam function has run. The second node's pipeline
    must not run the old helper, and replacing the worker must not cut the first node's pipeline
    short (it is still running then, by construction)."""
    (tmp_path / 'two_nodes.py').write_text(CONCURRENT.format(root=str(tmp_path / 'root'),
                                                              url=f"sqlite:///{tmp_path / 'm.db'}"))
    (tmp_path / 'driver.py').write_text(CONCURRENT_DRIVER)
    done = subprocess.run([sys.executable, str(tmp_path / 'driver.py'), str(tmp_path / 'two_nodes.py')],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    (editing_state, editing_error, editing), (after_state, after_error, after) = (
        got['nodes']['Editing'], got['nodes']['AfterEdit'])
    assert editing_state == 'COMPLETE', editing_error
    assert after_state == 'COMPLETE', after_error
    assert editing.startswith('x-A@') and after.startswith('x-B@')
    assert editing.split('@')[1] != after.split('@')[1]  # the edited helper ran in a new worker
    assert got['started'] == 2 and len(got['replaced']) == 1 and 'pool_helper' in got['replaced'][0]


def test_workers_start_together_and_one_that_fails_to_start_stops_the_others(monkeypatch):
    """The pool's workers are started at once; when one exits before listening, the error says so
    with its status, and the ones that did start are stopped, not left running."""
    import pytest

    from sluice.components import beam_pool

    started = []
    real = beam_pool._Worker.popen

    def popen():
        if len(started) == 1:  # the second worker dies at once
            process = subprocess.Popen([sys.executable, '-c', 'import sys; print("no Beam here"); sys.exit(3)'],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        else:
            process = real()
        started.append((time.monotonic(), process))
        return process

    monkeypatch.setattr(beam_pool._Worker, 'popen', staticmethod(popen))
    with pytest.raises(RuntimeError, match='A Beam worker process of the warm pool exited with status 3 before '
                                           'listening'):
        beam_pool._Worker.spawn_many(3)
    assert len(started) == 3 and started[2][0] - started[0][0] < 1.0  # all started before any listened
    assert [p.poll() is not None for _, p in started] == [True, True, True]  # none left running


def test_the_workers_share_a_stages_input_by_bytes_not_by_turns():
    """The runner deals a stage's input out in the chunks the workers of the stage before sent: Beam
    gave them out in turn, so chunks of 10, 3, 10 and 3 kB left one worker 20 and the other 6. With the
    pool's runner each worker gets 13, every chunk once; fewer chunks than workers are still split
    element by element, as Beam does."""
    from apache_beam.coders import BytesCoder
    from apache_beam.coders.coder_impl import create_OutputStream
    from apache_beam.runners.portability.fn_api_runner import execution

    from sluice.components import beam_pool

    beam_pool.WarmPoolRunner  # noqa: B018 - building the runner's class sets the partition
    chunks = [b'a' * 10_000, b'b' * 3_000, b'c' * 10_000, b'd' * 3_000]
    buffer = execution.ListBuffer(None)
    for chunk in chunks:
        buffer.append(chunk)
    assert [sum(map(len, chunks[k::2])) for k in range(2)] == [20_000, 6_000]  # Beam's turns
    parts = buffer.partition(2)
    assert [sum(map(len, part)) for part in parts] == [13_000, 13_000]
    assert sorted(chunk for part in parts for chunk in part) == sorted(chunks)
    assert buffer.partition(1) == [chunks]

    coder = BytesCoder().get_impl()
    stream = create_OutputStream()
    for element in (b'w', b'x', b'y', b'z'):
        coder.encode_to_stream(element, stream, True)
    one = execution.ListBuffer(coder)
    one.append(stream.get())
    halves = one.partition(2)
    assert len(halves) == 2 and all(len(part) == 1 and len(part[0]) == 4 for part in halves)  # two elements each


def test_an_input_of_few_rows_runs_in_this_process_and_a_large_one_on_the_pool(tmp_path, monkeypatch, caplog):
    """Asked for worker processes, a Beam pipeline that reads fewer than beam_pool.MIN_ROWS rows runs in
    the driver's process (the pool would cost more than it saves); the rows are CsvExampleGen's
    estimate from its files, and for a node fed Examples the row counts recorded on them. With
    SLUICE_POOL_MIN_ROWS below those rows, the same run uses the pool."""
    import os

    from sluice import LocalDagRunner, Pipeline
    from sluice.components import Artifact, Component, CsvExampleGen, Executor, Input, Output, beam_pool
    from sluice.components.example_gen.csv_input import estimated_rows
    from sluice.metadata.artifact import Examples

    class Mode(Artifact):
        """How a Beam pipeline of this node would run."""

    class ModeExecutor(Executor):
        def run(self, *, examples: Examples, mode: Mode) -> None:
            from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
            options = self.beam_options()
            with open(os.path.join(mode.uri, 'mode.json'), 'w') as f:
                json.dump({'rows': self.input_rows, 'runner': options.view_as(StandardOptions).runner,
                           'mode': options.view_as(DirectOptions).direct_running_mode}, f)

    class ReportMode(Component):
        examples = Input(Examples)
        mode = Output(Mode)
        executor = ModeExecutor

    data = tmp_path / 'data'
    data.mkdir()
    (data / 'rows.csv').write_text('k,v\n' + ''.join(f'{i},{i % 7}\n' for i in range(300)))
    assert estimated_rows([str(data / 'rows.csv')]) == 301  # header included

    def run(name):
        gen = CsvExampleGen(input_base=str(data), split_ratios={'train': 2, 'eval': 1})
        node = ReportMode(examples=gen.outputs['examples'])
        beam_pool.shutdown()
        result = LocalDagRunner(progress=False).run(Pipeline(name, str(tmp_path / name), [gen, node],
            beam_pipeline_args=['--direct_running_mode=multi_processing', '--direct_num_workers=1']))
        assert result.state == 'COMPLETE', {k: n.error for k, n in result.nodes.items() if n.error}
        pool = beam_pool.current_pool()
        with open(os.path.join(result['ReportMode'].outputs['mode'].uri, 'mode.json')) as f:
            return json.load(f), pool and pool.served

    monkeypatch.delenv(beam_pool.MIN_ROWS_ENV, raising=False)
    try:
        caplog.set_level('INFO', logger=beam_pool.__name__)
        assert run('small') == ({'rows': 300, 'runner': None, 'mode': 'in_memory'}, None)  # no pool started
        said = [r.getMessage() for r in caplog.records if r.name == beam_pool.__name__]
        assert 'A Beam pipeline of 301 rows runs in this process rather than on the worker processes asked for ' \
               '(it has fewer than 100000 rows: SLUICE_POOL_MIN_ROWS)' in said  # CsvExampleGen's estimate, its header line included
        assert any(m.startswith('A Beam pipeline of 300 rows runs in this process') for m in said)
        monkeypatch.setenv(beam_pool.MIN_ROWS_ENV, '250')
        mode, served = run('large')
        assert mode == {'rows': 300, 'runner': beam_pool.RUNNER, 'mode': 'multi_processing'}
        assert served == 2  # CsvExampleGen's two Beam pipelines ran on the pool's one worker
    finally:
        beam_pool.shutdown()


def parent_of(pid):
    with open(f'/proc/{pid}/stat') as f:
        return int(f.read().split(')')[-1].split()[1])


def maps_hold(pid, name):
    with open(f'/proc/{pid}/maps') as f:
        return name in f.read()


def probe_libraries(_):  # shipped by value (cloudpickle): the worker imports no test module
    """In a worker: whether tf.Transform's Beam module is there and whole, and this process's pid."""
    import os
    import sys
    module = sys.modules.get('tensorflow_transform.beam')
    return f'{module is not None and hasattr(module, "AnalyzeAndTransformDataset")}@{os.getpid()}'


def run_probe(tmp_path, name, imports=()):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from sluice.components import beam_pool

    options = beam_pool.rewrite_options(PipelineOptions([
        '--direct_running_mode=multi_processing', '--direct_num_workers=1', '--pickle_library=cloudpickle']),
        None, imports)
    with beam.Pipeline(options=options) as p:
        _ = (p | beam.Create([0]) | beam.Map(probe_libraries)
             | beam.io.WriteToText(str(tmp_path / name), shard_name_template=''))
    verdict, pid = (tmp_path / name).read_text().strip().split('@')
    return verdict == 'True', int(pid)


def test_workers_are_forked_by_a_zygote_that_imports_the_libraries_once_and_a_pipeline_needing_them_gets_a_warm_one(
        tmp_path):
    """The pool's workers are forked by one process, the zygote. The first worker is forked before the
    zygote imports TensorFlow and the data libraries (the first pipeline, often CsvExampleGen's, needs
    none of them); it imports them when asked (as a node listing them starts in this process), and a
    pipeline whose node lists them runs on a worker forked after that import, with tf.Transform whole
    on arrival; the worker forked before is retired."""
    import os

    from sluice.components import beam_pool
    from sluice.components.libraries import TF, TFT

    beam_pool.shutdown()
    try:
        first = run_probe(tmp_path, 'first')  # no imports listed: the cold worker forked at once
        pool = beam_pool.current_pool()
        zygote = pool.zygote.process.pid
        cold = pool.workers[0]
        assert cold.cold and parent_of(first[1]) == zygote and first[1] != os.getpid()
        assert not maps_hold(zygote, 'libtensorflow')  # not while the first pipelines run
        beam_pool.warm_up()  # what the launcher calls as a node listing them starts: the zygote imports
        deadline = time.monotonic() + 120
        while not maps_hold(zygote, 'libtensorflow') and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run_probe(tmp_path, 'second', imports=(TF, TFT))
        assert parent_of(second[1]) == zygote
        with open(f'/proc/{second[1]}/environ', 'rb') as f:  # TensorFlow's pools: the cores shared among the workers
            environ = dict(v.split(b'=', 1) for v in f.read().split(b'\0') if b'=' in v)
        if 'TF_NUM_INTRAOP_THREADS' not in os.environ:
            assert environ[b'TF_NUM_INTRAOP_THREADS'] == str(len(os.sched_getaffinity(0))).encode()  # one worker
        third = run_probe(tmp_path, 'third')
        assert pool.started == 2 and pool.replaced == [] and pool.served == 3 and not pool.workers[0].cold
        assert maps_hold(zygote, 'libtensorflow')  # the zygote imported TensorFlow, once for its workers
        cold.process.wait(timeout=20)  # the cold worker retired and ended
    finally:
        beam_pool.shutdown()
    assert first[0] is False
    assert second[0] is True and second[1] != first[1]
    assert third == second  # the warm worker serves every later pipeline




def test_when_the_zygote_cannot_fork_workers_start_as_processes_of_their_own(tmp_path, monkeypatch, caplog):
    """A zygote that fails (here: every fork refused) is started once more, then the pool starts its
    workers as processes of its own, which import what a pipeline's node lists before running it."""
    import os
    import subprocess

    from sluice.components import beam_pool
    from sluice.components.libraries import TF, TFT

    def refuse(self, warm):
        raise RuntimeError('stale module sluice.x (/x.py) changed since this process imported it')

    monkeypatch.setattr(beam_pool._Zygote, 'fork', refuse)
    caplog.set_level('INFO', logger=beam_pool.__name__)
    beam_pool.shutdown()
    try:
        verdict, pid = run_probe(tmp_path, 'spawned', imports=(TF, TFT))
        pool = beam_pool.current_pool()
        assert isinstance(pool.workers[0].process, subprocess.Popen) and pool.zygote is None
        assert parent_of(pid) == os.getpid() and verdict is True
    finally:
        beam_pool.shutdown()
    said = [r.getMessage() for r in caplog.records if r.name == beam_pool.__name__]
    assert said == [
        'Beam worker pool: the zygote could not fork a worker (stale module sluice.x (/x.py) changed since this '
        'process imported it); starting another',
        'Beam worker pool: the zygote could not fork a worker (stale module sluice.x (/x.py) changed since this '
        'process imported it); workers start as processes of their own']


def test_the_zygote_starts_as_a_node_that_asks_for_worker_processes_starts_and_the_pool_takes_it(tmp_path,
                                                                                                   monkeypatch):
    """``prestart`` (the launcher calls it before an executor runs) starts the zygote when the Beam
    arguments ask DirectRunner for worker processes, so that it has imported Beam when the first
    pipeline asks for workers; not for other arguments, nor for an input known to be small."""
    from sluice.components import beam_pool

    assert beam_pool._asked_workers(['--direct_running_mode=multi_processing', '--direct_num_workers=3']) == 3
    assert beam_pool._asked_workers(['--save_main_session', '--direct_running_mode', 'multi_processing',
                                     '--direct_num_workers', '2']) == 2
    assert beam_pool._asked_workers(['--direct_num_workers=2']) is None  # in_memory: no processes
    assert beam_pool._asked_workers(['--runner=FlinkRunner', '--direct_running_mode=multi_processing']) is None
    monkeypatch.setenv(beam_pool.OFF_ENV, '0')
    assert beam_pool._asked_workers(['--direct_running_mode=multi_processing']) is None
    monkeypatch.delenv(beam_pool.OFF_ENV)
    monkeypatch.delenv(beam_pool.MIN_ROWS_ENV, raising=False)

    args = ['--direct_running_mode=multi_processing', '--direct_num_workers=1']
    beam_pool.shutdown()
    try:
        beam_pool.prestart(args, rows=500)  # known to be small: it will run in this process
        assert beam_pool._EARLY is None
        beam_pool.prestart(args)
        early = beam_pool._EARLY
        assert early is not None and early.process.poll() is None
        beam_pool.prestart(args)  # once
        assert beam_pool._EARLY is early
        verdict, pid = run_probe(tmp_path, 'after-prestart')
        pool = beam_pool.current_pool()
        assert pool.zygote is early and beam_pool._EARLY is None and parent_of(pid) == early.process.pid
    finally:
        beam_pool.shutdown()
    assert early.process.poll() is not None  # stopped with the pool
    beam_pool.prestart(args)
    early = beam_pool._EARLY
    beam_pool.shutdown()  # never used: stopped all the same
    assert early.process.poll() is not None and beam_pool._EARLY is None


def where_run(tmp_path, name, args, beside=True):
    """The Where node (tests/dummies.py), run beside another or before one: where its executor ran."""
    from dummies import Upper, Where, read_text
    from sluice import LocalDagRunner, Pipeline

    where = Where()
    nodes = [where, Where().with_id('Beside') if beside else Upper(text=where.outputs['report'])]
    pipeline = Pipeline(name, str(tmp_path / name), nodes, metadata=f'sqlite:///{tmp_path}/{name}.db',
                        beam_pipeline_args=args)
    result = LocalDagRunner(progress=False, parallel=2).run(pipeline)
    assert result.state == 'COMPLETE', result['Where'].error
    return json.loads(read_text(result['Where'].outputs['report']))


def test_an_executor_run_apart_is_forked_warm_by_the_zygote_and_its_pipelines_run_on_the_pool(tmp_path):
    """A node run in a process of its own (apart_when_parallel; with_timeout too) is forked by the warm
    pool's zygote when the run asks for worker processes: it starts with TensorFlow imported, in a
    process group of its own (what a timeout or Ctrl-C stops), and its Beam pipeline runs on this
    process's pool, not on a pool of its own. Without worker processes, it is a new Python process; with
    no other node being launched as it starts, it runs in this process."""
    import os

    from sluice.components import beam_pool

    beam_pool.shutdown()
    try:
        forked = where_run(tmp_path, 'forked', ['--direct_running_mode=multi_processing', '--direct_num_workers=1'])
        pool = beam_pool.current_pool()
        zygote = pool.zygote.process.pid
        worker_parent = parent_of(forked['worker'])
        assert pool.served == 2 and [w.process.pid for w in pool.workers] == [forked['worker']]
    finally:
        beam_pool.shutdown()
    assert forked['parent'] == zygote and forked['pid'] not in (os.getpid(), forked['worker'])
    assert forked['warm'] is True and forked['group'] == forked['pid']
    assert worker_parent == zygote
    assert not alive(forked['pid'])

    spawned = where_run(tmp_path, 'spawned', ['--direct_num_workers=1'])
    assert beam_pool.current_pool() is None
    assert spawned['parent'] == os.getpid() and spawned['warm'] is False and spawned['group'] == spawned['pid']
    assert spawned['worker'] == spawned['pid']  # one worker: the pipeline ran in the executor's process

    alone = where_run(tmp_path, 'alone', ['--direct_num_workers=1'], beside=False)  # nothing else being launched
    assert alone['pid'] == alone['worker'] == os.getpid()


def test_statistics_gen_runs_apart_beside_other_nodes_from_ten_thousand_rows():
    """Which executors run in a process of their own: with other nodes being launched only, and for StatisticsGen
    only on an input of at least its apart_from_rows (a new process imports TFDV again); the ONNX
    export whatever its input."""
    from sluice.components import StatisticsGen
    from sluice.components.onnx_exporter import OnnxExporter
    from sluice.orchestration.launcher import runs_apart

    assert runs_apart(StatisticsGen, True, 15_000) and runs_apart(StatisticsGen, True, 10_000)
    assert not runs_apart(StatisticsGen, True, 344) and not runs_apart(StatisticsGen, True, None)
    assert not runs_apart(StatisticsGen, False, 15_000)  # nothing beside it
    assert runs_apart(OnnxExporter, True, None) and not runs_apart(OnnxExporter, False, None)
