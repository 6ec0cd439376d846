"""One live process per run, resume from anywhere, and fencing: tried the way users break them, with
real processes (killed, paused past their heartbeat, started twice) on a real SQLite store."""
from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dummies import Source, Text, Upper, read_text
from sluice.metadata import FencingError, MetadataStore
from sluice import LocalDagRunner, Pipeline
from sluice.orchestration.lease import Lease, LeaseHeld

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')
DEMO = os.path.join(REPO, 'pipelines', 'examples', 'demo', 'demo_pipeline.py')


def sluice(args, cwd, **env_extra):
    env = {**os.environ, 'PYTHONPATH': REPO, **env_extra}
    return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def popen_sluice(args, cwd, preexec_fn=None, **env_extra):
    env = {**os.environ, 'PYTHONPATH': REPO, **env_extra}
    return subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def ignoring_sigint():
    """What a parent that ignores and blocks SIGINT hands its children (a shell's background job)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def wait_for(predicate, timeout=120.0, what='condition'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f'timed out waiting for {what}')


def running(url, run_id, node):
    def check():
        try:
            records = MetadataStore(url).executions(run_id)
        except Exception:  # the run is not registered yet
            return None
        return next((r for r in records if r.node_id == node and r.state == 'RUNNING'), None)
    return check


def slow_pipeline_file(tmp_path, text_dir, seconds):
    """A pipeline file: Source -> Upper -> Slow(seconds), store and root under tmp_path/root."""
    pipe = tmp_path / 'slow_pipe.py'
    pipe.write_text(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {TESTS!r})
        from dummies import Slow, Source, Upper
        from sluice import Pipeline
        def create_pipeline():
            src = Source(input_base={str(text_dir)!r})
            up = Upper(text=src.outputs['text'], suffix='!')
            slow = Slow(text=up.outputs['result'], seconds={seconds})
            return Pipeline('slowpipe', {str(tmp_path / 'root')!r}, [src, up, slow])
    '''))
    return pipe, f'sqlite:///{tmp_path}/root/metadata.db'


def run_id_of(url):
    return wait_for(lambda: _single_run(url), what='the run to be registered')


def _single_run(url):
    if not os.path.exists(url[len('sqlite:///'):]):
        return None
    runs = MetadataStore(url).runs()
    return runs[0].run_id if runs else None


# -- resume from anywhere ------------------------------------------------------------------------
def test_resume_from_another_directory_finishes_the_run_where_it_started(tmp_path):
    """The demo pipeline's default root is relative (runs/demo). Started in one directory and killed,
    resumed from another with --metadata: the run completes in the first directory, nothing is
    written under the second, and the killed execution's partial outputs are removed where they are."""
    first, other = tmp_path / 'first', tmp_path / 'other'
    first.mkdir(), other.mkdir()
    killed = sluice(['run', DEMO], first, SLUICE_KILL_AT='CountLabels:start')
    assert killed.returncode == -9, killed.stderr[-2000:]
    root = first / 'runs' / 'demo'
    url = f'sqlite:///{root}/metadata.db'
    store = MetadataStore(url)
    [run] = store.runs()
    # (another node the DAG does not order may have been running beside it: the kill abandons both)
    [partial] = [r for r in store.executions(run.run_id) if r.state == 'RUNNING' and r.node_id == 'CountLabels']
    partial_dir = root / partial.node_id / 'counts' / str(partial.id)
    assert partial_dir.is_dir()

    resumed = sluice(['resume', run.run_id, '--metadata', url], other)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # What it loads (code it runs) is said before the plan.
    assert resumed.stdout.startswith(f'Loading the pipeline of run {run.run_id} from {DEMO}, in {first} (as '
                                     f'recorded with the run)\nResume plan for run {run.run_id}'), resumed.stdout
    assert not (other / 'runs').exists(), 'resume wrote under the directory it was started from'
    assert not partial_dir.exists(), "the abandoned execution's partial outputs are still there"
    assert store.run(run.run_id).state == 'COMPLETE'
    for record in store.executions(run.run_id):
        for artifacts in record.outputs.values():
            for artifact in artifacts:
                assert artifact.uri.startswith(str(root) + os.sep), artifact.uri
    assert store.run(run.run_id).properties['pipeline_root'] == str(root)


def test_resume_uses_the_runs_cache_flag_and_beam_args_not_the_files(tmp_path, text_dir):
    """A run started with --no-cache and an extra --beam-arg keeps both when resumed, although the
    pipeline file says enable_cache=True: its Slow node executes again instead of reusing the
    cached result of an earlier run."""
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=0.1)
    assert sluice(['run', str(pipe)], tmp_path).returncode == 0  # Slow now has a cache entry
    killed = sluice(['run', str(pipe), '--no-cache', '--beam-arg=--direct_num_workers=1'], tmp_path,
                    SLUICE_KILL_AT='Slow:start')
    assert killed.returncode == -9
    store = MetadataStore(url)
    run_id = store.runs()[-1].run_id
    resumed = sluice(['resume', run_id, '--metadata', url], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    props = store.run(run_id).properties
    assert props['enable_cache'] == 0 and '--direct_num_workers=1' in props['beam_pipeline_args']
    assert [r.state for r in store.executions(run_id) if r.node_id == 'Slow'] == ['FAILED', 'COMPLETE']


def test_resume_uses_the_stored_copy_when_the_pipeline_file_is_gone(tmp_path, text_dir):
    """The pipeline file was moved away after the run was killed: the resume loads the copy stored with
    the run, reuses what finished and completes it; where the copy cannot be loaded either, it says so."""
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=0.1)
    killed = sluice(['run', str(pipe)], tmp_path, SLUICE_KILL_AT='Slow:start')
    assert killed.returncode == -9
    run_id = _single_run(url)
    pipe.rename(tmp_path / 'moved_away.py')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    # Without the module its components come from, the copy cannot be loaded: a clear error.
    broken = sluice(['resume', run_id, '--metadata', url], elsewhere)
    assert broken.returncode == 2 and 'Traceback' not in broken.stderr
    assert re.search(rf'Run {run_id}: its pipeline file .*slow_pipe\.py or the directory it was started from .* is '
                     r"not here, and the copy stored with the run cannot be loaded here \(ModuleNotFoundError: No "
                     r"module named 'dummies'\)", broken.stderr), broken.stderr
    # With it installed (here: on PYTHONPATH), the stored copy resumes the run.
    resumed = sluice(['resume', run_id, '--metadata', url], elsewhere, PYTHONPATH=f'{REPO}{os.pathsep}{TESTS}')
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.search(r'Source\s+reuse', resumed.stdout) and re.search(r'Upper\s+reuse', resumed.stdout)
    store = MetadataStore(url)
    assert store.run(run_id).state == 'COMPLETE'
    assert read_text(store.node_outputs(run_id, 'Slow')['result'][0]) == '!DLROW OLLEH'


@pytest.mark.parametrize('parent', ['default', 'ignores SIGINT'])
def test_ctrl_c_records_canceled_says_how_to_resume_and_resume_finishes(tmp_path, text_dir, parent):
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=5)
    proc = popen_sluice(['run', str(pipe)], tmp_path, preexec_fn=ignoring_sigint if parent != 'default' else None)
    try:
        run_id = run_id_of(url)
        wait_for(running(url, run_id, 'Slow'), what='Slow to start')
    except BaseException:  # not left running into the next test (an unraisable ResourceWarning there)
        proc.kill()
        out, err = proc.communicate()
        print(out, err)
        raise
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert 'Traceback' not in err and 'sluice: interrupted' in err
    assert f'Interrupted: run {run_id} stopped' in out and f'sluice resume {run_id} --metadata {url}' in out
    store = MetadataStore(url)
    assert [r.state for r in store.executions(run_id) if r.node_id == 'Slow'] == ['CANCELED']
    assert store.lease_latest(run_id).released  # a resume need not wait for it
    assert sluice(['resume', run_id, '--metadata', url], tmp_path).returncode == 0
    assert store.run(run_id).state == 'COMPLETE'


# -- one live process per run --------------------------------------------------------------------
def test_a_second_resume_refuses_while_the_first_is_alive(tmp_path, text_dir):
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=8)
    killed = sluice(['run', str(pipe)], tmp_path, SLUICE_KILL_AT='Upper:start')
    assert killed.returncode == -9
    run_id = _single_run(url)
    first = popen_sluice(['resume', run_id, '--metadata', url], tmp_path)
    try:
        wait_for(running(url, run_id, 'Slow'), what='the first resume to reach Slow')
        second = sluice(['resume', run_id, '--metadata', url], tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert re.search(rf'Run {run_id} is being driven by another process: sluice resume, pid {first.pid} on ',
                         second.stderr), second.stderr
        assert 'Wait for it to finish' in second.stderr and f'kill {first.pid}' in second.stderr
        assert '--take-over' in second.stderr
        shown = sluice(['show', run_id, '--metadata', url], tmp_path)
        assert re.search(rf'Driven by: sluice resume, pid {first.pid} on .*\(alive, last heartbeat \d+s ago\)',
                         shown.stdout), shown.stdout
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    store = MetadataStore(url)
    done = [r.node_id for r in store.executions(run_id) if r.state in ('COMPLETE', 'CACHED')]
    assert sorted(done) == ['Slow', 'Source', 'Upper'], 'a node ran twice or not at all'


def test_resume_refuses_while_the_original_run_is_between_nodes(tmp_path, text_dir):
    """The original `sluice run` is alive but between executions (its next node's driver is still
    resolving inputs, so nothing is RUNNING in the store): a resume must still refuse, else both
    processes would launch the remaining nodes."""
    pipe = tmp_path / 'between.py'
    flag = tmp_path / 'driver-started'
    pipe.write_text(textwrap.dedent(f'''
        import os, sys, time
        sys.path.insert(0, {TESTS!r})
        from sluice.components import Driver
        from dummies import Source, Upper
        from sluice import Pipeline

        class SlowDriver(Driver):
            def resolve_inputs(self):
                open({str(flag)!r}, 'w').close()
                time.sleep(6)
                return super().resolve_inputs()

        class LateUpper(Upper):
            driver = SlowDriver

        def create_pipeline():
            src = Source(input_base={str(text_dir)!r})
            late = LateUpper(text=src.outputs['text'])
            return Pipeline('between', {str(tmp_path / 'root')!r}, [src, late])
    '''))
    url = f'sqlite:///{tmp_path}/root/metadata.db'
    original = popen_sluice(['run', str(pipe)], tmp_path)
    try:
        wait_for(flag.exists, what='the original run to reach its second node')
        run_id = _single_run(url)
        assert not [r for r in MetadataStore(url).executions(run_id) if r.state == 'RUNNING']
        refused = sluice(['resume', run_id, '--metadata', url], tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f'being driven by another process: sluice run, pid {original.pid}' in refused.stderr, refused.stderr
    finally:
        out, err = original.communicate(timeout=300)
    assert original.returncode == 0, out + err
    records = MetadataStore(url).executions(run_id)
    assert sorted(r.node_id for r in records) == ['LateUpper', 'Source'], 'a node was launched twice'


def test_a_killed_holder_is_taken_over_at_once_and_a_finished_run_releases_its_lease(tmp_path, text_dir):
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=0.1)
    killed = sluice(['run', str(pipe)], tmp_path, SLUICE_KILL_AT='Slow:executor:0.05')
    assert killed.returncode == -9
    run_id = _single_run(url)
    store = MetadataStore(url)
    holder = store.lease_latest(run_id)
    assert holder.epoch == 1 and holder.owner['command'] == 'run' and not holder.released
    started = time.time()
    resumed = sluice(['resume', run_id, '--metadata', url], tmp_path)  # default limit: 60 s of silence
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert time.time() - started < 45, 'a dead holder (same host) must not need the heartbeat limit'
    assert re.search(r'Slow\s+run\s+abandoned: its process \(pid \d+ on .*\) is gone', resumed.stdout)
    latest = store.lease_latest(run_id)
    assert latest.epoch == 2 and latest.owner['command'] == 'resume' and latest.released
    again = sluice(['resume', run_id, '--metadata', url], tmp_path)  # released: no waiting, nothing to do
    assert again.returncode == 0 and 'already COMPLETE' in again.stdout
    assert re.search(r'Driven by: sluice resume, pid \d+ on .* \(finished\)',
                     sluice(['show', run_id, '--metadata', url], tmp_path).stdout)


# -- fencing -------------------------------------------------------------------------------------
def test_a_process_paused_past_its_heartbeat_is_taken_over_and_can_never_publish(tmp_path, text_dir):
    """Pause (SIGSTOP) the process running Slow for longer than the lease allows; a resume takes the
    run over, abandons that execution and finishes the run. Woken up, the paused process publishes
    nothing: its execution stays FAILED (abandoned), it says the run was taken over, exit 1."""
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=3)
    env = {'SLUICE_LEASE_SECONDS': '2'}
    paused = popen_sluice(['run', str(pipe)], tmp_path, **env)
    try:
        run_id = run_id_of(url)
        victim = wait_for(running(url, run_id, 'Slow'), what='Slow to start')
        os.kill(paused.pid, signal.SIGSTOP)
        time.sleep(3.5)  # silent past the 2 s limit
        takeover = sluice(['resume', run_id, '--metadata', url], tmp_path, **env)
        assert takeover.returncode == 0, takeover.stdout + takeover.stderr
        assert re.search(r'Slow\s+run\s+abandoned: no heartbeat from pid \d+ on .* for \d+s \(limit 2s\)',
                         takeover.stdout), takeover.stdout
    finally:
        os.kill(paused.pid, signal.SIGCONT)
        out, err = paused.communicate(timeout=300)
    assert paused.returncode == 1, out + err
    assert f'run {run_id} was taken over by sluice resume' in out, out
    store = MetadataStore(url)
    mine = store.execution(victim.id)
    assert mine.state == 'FAILED' and mine.properties['error_type'] == 'Abandoned'
    slow = [r for r in store.executions(run_id) if r.node_id == 'Slow']
    assert [r.state for r in slow] == ['FAILED', 'COMPLETE']
    assert read_text(store.node_outputs(run_id, 'Slow')['result'][0]) == '!DLROW OLLEH'
    assert not os.path.exists(os.path.join(tmp_path, 'root', 'Slow', 'result', str(victim.id)))


def test_a_process_taken_over_during_a_cache_hit_records_nothing_more_and_exits_1(tmp_path, text_dir):
    """The cache-hit path is fenced too: a run whose process is held up while reusing a cached result,
    and taken over meanwhile (--take-over), stops there, says so and exits 1."""
    pipe = tmp_path / 'cachehit.py'
    flag = tmp_path / 'in-cache-lookup'
    pipe.write_text(textwrap.dedent(f'''
        import os, sys, time
        sys.path.insert(0, {TESTS!r})
        from sluice.components import Driver
        from dummies import Source, Upper
        from sluice import Pipeline

        class SlowLookup(Driver):
            def cached_outputs(self, key):
                found = super().cached_outputs(key)
                if found is not None and os.environ.get('SLOW_LOOKUP'):
                    open({str(flag)!r}, 'w').close()
                    time.sleep(5)
                return found

        class CachedUpper(Upper):
            driver = SlowLookup

        def create_pipeline():
            src = Source(input_base={str(text_dir)!r})
            return Pipeline('cachehit', {str(tmp_path / 'root')!r}, [src, CachedUpper(text=src.outputs['text'])])
    '''))
    url = f'sqlite:///{tmp_path}/root/metadata.db'
    assert sluice(['run', str(pipe)], tmp_path).returncode == 0  # warm the cache
    held = popen_sluice(['run', str(pipe)], tmp_path, SLOW_LOOKUP='1')
    try:
        wait_for(flag.exists, what='the second run to reach its cache lookup')
        run_id = MetadataStore(url).runs()[-1].run_id
        takeover = sluice(['resume', run_id, '--metadata', url, '--take-over'], tmp_path)
        assert takeover.returncode == 0, takeover.stdout + takeover.stderr
    finally:
        out, err = held.communicate(timeout=300)
    assert held.returncode == 1, out + err
    assert f'run {run_id} was taken over by sluice resume' in out, out
    assert re.search(r'CachedUpper\s+CANCELED .*the run was taken over by sluice resume', out), out


def test_publish_and_fail_are_fenced_in_the_store(tmp_path):
    """Two connections to one SQLite store: once one ends an execution, the other can neither
    publish it nor fail it again, and nothing of the refused publish becomes LIVE."""
    url = f'sqlite:///{tmp_path}/m.db'
    ours, theirs = MetadataStore(url), MetadataStore(url)
    ours.register_run('p', 'r1', {})
    lease = Lease.acquire(ours, 'r1', 'run')
    try:
        ex_id = ours.register_execution('Upper', 'p', 'r1', 'Upper', {}, {'lease': lease.name})
        theirs.fail_execution(ex_id, 'Abandoned', 'abandoned: test')  # as a takeover does
        out = Text(uri=str(tmp_path / 'out'))
        os.makedirs(out.uri)
        with pytest.raises(FencingError, match=rf'Cannot publish execution #{ex_id}: it is already FAILED '
                                                r'\(abandoned: test\); its outputs are not published'):
            ours.publish_execution(ex_id, 'p', 'r1', 'Upper', {'result': [out]}, lease=lease.name)
        with pytest.raises(FencingError, match='Cannot fail execution'):
            ours.fail_execution(ex_id, 'ValueError', 'late', lease=lease.name)
        assert ours.execution(ex_id).state == 'FAILED' and ours.execution(ex_id).error == 'abandoned: test'
        assert not ours.mlmd.get_artifacts()
        # An execution of a lease that was taken over cannot be published by that lease either.
        ex2 = ours.register_execution('Upper', 'p', 'r1', 'Upper', {}, {'lease': lease.name})
        Lease.acquire(theirs, 'r1', 'resume', take_over=True).release()
        with pytest.raises(FencingError, match='the run was taken over by another process'):
            ours.publish_execution(ex2, 'p', 'r1', 'Upper', {'result': [out]}, lease=lease.name)
    finally:
        lease.release()


def _settle(url, ex_id, index, barrier, results):
    store = MetadataStore(url)
    barrier.wait()
    try:
        if index % 2:
            store.fail_execution(ex_id, 'Abandoned', f'abandoned by racer {index}')
        else:
            out = Text(uri=os.path.join(os.path.dirname(url[len('sqlite:///'):]), f'out{index}'))
            os.makedirs(out.uri, exist_ok=True)
            store.publish_execution(ex_id, 'p', 'r1', 'Upper', {'result': [out]})
        results.put((index, 'won'))
    except FencingError:
        results.put((index, 'fenced'))


def test_exactly_one_of_many_concurrent_endings_wins(tmp_path):
    """Six processes try to end one RUNNING execution at the same instant (three publish, three
    abandon): the database lets exactly one through; the state and the artifacts match the winner."""
    url = f'sqlite:///{tmp_path}/m.db'
    store = MetadataStore(url)
    store.register_run('p', 'r1', {})
    for attempt in range(3):
        ex_id = store.register_execution('Upper', 'p', 'r1', 'Upper', {}, {})
        ctx = multiprocessing.get_context('spawn')
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_settle, args=(url, ex_id, i, barrier, results)) for i in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        outcome = dict(results.get(timeout=10) for _ in procs)
        winners = [i for i, o in outcome.items() if o == 'won']
        assert len(winners) == 1, outcome
        record = store.execution(ex_id)
        if winners[0] % 2:
            assert record.state == 'FAILED' and record.error == f'abandoned by racer {winners[0]}'
            assert not record.outputs
        else:
            assert record.state == 'COMPLETE' and len(record.outputs['result']) == 1


def test_two_processes_cannot_both_take_over_a_silent_lease(tmp_path, monkeypatch):
    monkeypatch.setenv('SLUICE_LEASE_SECONDS', '0.5')
    url = f'sqlite:///{tmp_path}/m.db'
    a, b, c = MetadataStore(url), MetadataStore(url), MetadataStore(url)
    a.register_run('p', 'r1', {})
    first = Lease.acquire(a, 'r1', 'run')
    first._stop.set()  # goes silent without releasing, like a paused process
    first._thread.join()
    time.sleep(0.8)
    second = Lease.acquire(b, 'r1', 'resume')  # silent holder: taken over
    with pytest.raises(LeaseHeld, match=r'Run r1 is being driven by another process: sluice resume, pid '):
        Lease.acquire(c, 'r1', 'resume')  # the new holder beats: refused
    assert [a.lease_latest('r1').epoch, a.lease_superseded(first.name)] == [2, True]
    second.release()


# -- temporary files -----------------------------------------------------------------------------
def test_executor_scratch_space_is_under_the_root_and_removed_on_success_and_failure(tmp_path, text_dir):
    from sluice.components import Component, Executor, Input, Output, Parameter
    seen = []

    class ScratchExecutor(Executor):
        def run(self, *, text, result, fail: bool) -> None:
            seen.append(self.tmp_dir)
            with open(os.path.join(self.tmp_dir, 'scratch.bin'), 'wb') as f:
                f.write(b'x' * 1000)
            with self.beam_pipeline() as p:  # Beam's temp location is in the scratch space too
                assert p.options.get_all_options()['temp_location'].startswith(self.tmp_dir)
            if fail:
                raise ValueError('failing on purpose')
            (tmp_path / 'ok').write_text('')

    class Scratch(Component):
        text = Input(Text)
        result = Output(Text)
        fail = Parameter(bool, default=False)
        executor = ScratchExecutor

    root = tmp_path / 'root'
    src = Source(input_base=str(text_dir))
    good = Scratch(text=src.outputs['text']).with_id('good')
    bad = Scratch(text=src.outputs['text'], fail=True).with_id('bad')
    result = LocalDagRunner(progress=False).run(Pipeline('scratch', str(root), [src, good, bad]))
    assert result.node_states() == {'Source': 'COMPLETE', 'good': 'COMPLETE', 'bad': 'FAILED'}
    assert len(seen) == 2
    for path in seen:
        assert path.startswith(str(root / '.sluice-tmp') + os.sep)
        assert not os.path.exists(path)
    assert os.listdir(root / '.sluice-tmp') == []


def test_every_way_of_running_records_the_lease_on_its_executions(tmp_path, text_dir):
    from sluice import BeamDagRunner, InteractiveContext
    for runner in (LocalDagRunner(progress=False), BeamDagRunner(progress=False)):
        root = tmp_path / runner.name
        src = Source(input_base=str(text_dir))
        up = Upper(text=src.outputs['text'])
        result = runner.run(Pipeline('leased', str(root), [src, up], enable_cache=False))
        store = MetadataStore(f'sqlite:///{root}/metadata.db')
        assert {r.properties.get('lease') for r in store.executions(result.run_id)} == {f'{result.run_id}@1'}
        assert store.lease_latest(result.run_id).released
    context = InteractiveContext(pipeline_root=str(tmp_path / 'nb'))
    src = Source(input_base=str(text_dir))
    context.run(src)
    context.run(Upper(text=src.outputs['text']))
    leases = [r.properties.get('lease') for r in context.store.executions(context.run_id)]
    assert leases == [f'{context.run_id}@1', f'{context.run_id}@2']  # one lease per context.run, released
    assert context.store.lease_latest(context.run_id).released


def test_a_node_that_executes_holds_its_own_lease_and_a_cache_hit_takes_none(tmp_path, text_dir):
    """A node's own lease (RUN_ID/NODE, the one `sluice run-node` takes) is held by whatever records
    more than a cache hit; a CACHED record takes none (two writes less per node of a cached re-run,
    bench/fixed_cost.py), and is true whoever writes it: its outputs exist."""
    def run():
        src = Source(input_base=str(text_dir))
        return LocalDagRunner(progress=False).run(
            Pipeline('node-leases', str(tmp_path / 'root'), [src, Upper(text=src.outputs['text'])]))

    first, second = run(), run()
    store = MetadataStore(f'sqlite:///{tmp_path}/root/metadata.db')
    assert [n.state for n in first.nodes.values()] == ['COMPLETE', 'COMPLETE']
    assert [n.state for n in second.nodes.values()] == ['CACHED', 'CACHED']
    for node in ('Source', 'Upper'):
        held = store.lease_latest(f'{first.run_id}/{node}')
        assert held is not None and held.epoch == 1 and held.released, (node, held)
        assert store.lease_latest(f'{second.run_id}/{node}') is None, node
    assert store.lease_latest(second.run_id).released  # the run's own lease as before


def test_a_node_completed_by_the_holder_before_is_taken_from_the_cache_once_the_lease_is_held(tmp_path, text_dir):
    """The node's lease is taken after the first cache lookup; whoever held it may have completed the
    node meanwhile (a run-node task of the same run): the launch looks the cache up again once it
    holds the lease, and records CACHED, never a second execution."""
    from sluice.orchestration.core import Session
    from sluice.orchestration.launcher import launch
    from sluice.orchestration.run import Progress

    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'])
    pipeline = Pipeline('holder-before', str(tmp_path / 'root'), [src, up])
    store = MetadataStore(f'sqlite:///{tmp_path}/root/metadata.db')
    with Session.start(pipeline, store, None, 'local', Progress(enabled=False)) as session:
        assert session.node(src, []).state == 'COMPLETE'

        taken = []

        def hold():  # as the node's lease: the holder before completes Upper, then it is ours
            if taken:
                return False
            assert launch(up, store, session.info).state == 'COMPLETE'
            taken.append(True)
            return True

        result = launch(up, store, session.info, hold=hold)
        session.finish({src.id: session.results[src.id], up.id: result})
    assert result.state == 'CACHED'
    assert [r.state for r in store.executions(session.run_id) if r.node_id == 'Upper'] == ['COMPLETE', 'CACHED']


def test_a_stored_copy_not_signed_with_the_key_is_not_loaded(tmp_path, text_dir):
    """#23.12: with $SLUICE_PIPELINE_KEY set, a resume unpickles the pipeline copy stored with the run only
    when it carries that key's signature: a copy stored under another key, or one changed in the store
    by hand, is refused before any of it is loaded."""
    pipe, url = slow_pipeline_file(tmp_path, text_dir, seconds=0.1)
    killed = sluice(['run', str(pipe)], tmp_path, SLUICE_KILL_AT='Slow:start', SLUICE_PIPELINE_KEY='team-key')
    assert killed.returncode == -9
    run_id = _single_run(url)
    pipe.rename(tmp_path / 'moved_away.py')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    path = f'{REPO}{os.pathsep}{TESTS}'
    refused = sluice(['resume', run_id, '--metadata', url], elsewhere, PYTHONPATH=path, SLUICE_PIPELINE_KEY='other')
    assert refused.returncode == 2 and 'Traceback' not in refused.stderr
    assert (f'Run {run_id}: the copy of its pipeline stored in the metadata store is not signed with the key in '
            '$SLUICE_PIPELINE_KEY') in refused.stderr, refused.stderr

    store = MetadataStore(url)  # someone with write access to the store swaps the copy for their own
    signed = store.run(run_id).properties['pipeline_pickle']
    store.update_run(run_id, {'pipeline_pickle': 'Z' * 8 + signed[8:]})
    tampered = sluice(['resume', run_id, '--metadata', url], elsewhere, PYTHONPATH=path, SLUICE_PIPELINE_KEY='team-key')
    assert tampered.returncode == 2 and 'is not signed with the key' in tampered.stderr, tampered.stderr
    assert store.run(run_id).state != 'COMPLETE'
    store.update_run(run_id, {'pipeline_pickle': signed})  # the copy as it was stored: loaded with the key
    resumed = sluice(['resume', run_id, '--metadata', url], elsewhere, PYTHONPATH=path, SLUICE_PIPELINE_KEY='team-key')
    assert resumed.returncode == 0 and store.run(run_id).state == 'COMPLETE', resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith(
        f'Loading the copy of the pipeline stored with run {run_id} (signed with $SLUICE_PIPELINE_KEY): its file '
        f'{pipe} or directory {tmp_path} is not here\nResume plan for run {run_id}'), resumed.stdout
