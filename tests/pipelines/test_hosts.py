"""The guarantees across hosts: several processes on one machine, started at one instant, stand in for
the tasks of an orchestrator on several machines sharing one store (SQLite here, PostgreSQL for real)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sluice.metadata import MetadataStore
from sluice.orchestration.lease import Lease, LeaseHeld

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, 'tests')

# N source nodes with no upstream: the first task of a run on each of N workers is one of them.
SOURCES = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Source

def create_pipeline():
    return Pipeline('first-tasks', {root!r}, [Source(input_base={input!r}).with_id(f'S{{i}}') for i in range({n})],
                    metadata={url!r})
'''

# Each process of a race imports what it needs first, says so, then waits for the instant the test
# gives once all of them are ready: process start-up jitter would otherwise spread the starts over a
# second or more.
AWAIT_INSTANT = textwrap.dedent('''\
    def await_instant(ready, instant):
        import os, time
        open(ready, 'w').close()
        while not os.path.exists(instant):
            time.sleep(0.005)
        with open(instant) as f:
            return float(f.read())
    ''')


def give_instant(procs, ready, instant, lead=1.0, timeout=120.0):
    """Once every process has created its ``ready`` file (or one has ended), the instant they start at,
    ``lead`` seconds from now, written to ``instant`` for them."""
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.02)
    at = time.time() + lead
    partial = instant.with_name(instant.name + '.tmp')
    partial.write_text(repr(at))
    os.rename(partial, instant)
    return at


# One worker: everything imported first, then the node at the agreed instant.
AT_ONCE = AWAIT_INSTANT + textwrap.dedent('''\
    import sys, time
    from sluice.runners.run_node import run_node
    from sluice.runners.local import LocalDagRunner
    import sluice.components, sluice.orchestration.core
    path, run_id, node, ready, instant = sys.argv[1:6]
    at = await_instant(ready, instant)
    time.sleep(max(0.0, at - time.time()))
    sys.exit(run_node(path, run_id, node))
    ''')


def start_at_once(tmp_path, url, text_dir, n, run_id='r1'):
    path = tmp_path / 'first_tasks.py'
    path.write_text(SOURCES.format(tests=TESTS, root=str(tmp_path / 'root'), input=str(text_dir), n=n, url=url))
    ready, instant = [tmp_path / f'{run_id}-ready-{i}' for i in range(n)], tmp_path / f'{run_id}-instant'
    procs = [subprocess.Popen([sys.executable, '-c', AT_ONCE, str(path), run_id, f'S{i}', str(ready[i]), str(instant)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    give_instant(procs, ready, instant)
    return [(p, *p.communicate(timeout=300)) for p in procs]


def test_first_tasks_of_a_run_started_at_one_instant_all_join_it(tmp_path, text_dir, store_url):
    """#23.3: every worker finds no run yet and creates it; the losers of that race join the winner's run
    (before: ML-Metadata's AlreadyExistsError from the parent-context link, a traceback, status 1)."""
    n = 6
    for round_ in range(3):
        run_id = f'r{round_}'
        done = start_at_once(tmp_path, store_url, text_dir, n, run_id)
        for proc, out, err in done:
            assert proc.returncode == 0 and 'Traceback' not in err, out + err[-3000:]
        store = MetadataStore(store_url)
        assert [r.run_id for r in store.runs('first-tasks')].count(run_id) == 1
        records = store.executions(run_id)
        assert sorted(r.node_id for r in records) == [f'S{i}' for i in range(n)]
        assert {r.state for r in records} <= {'COMPLETE', 'CACHED'}


# -- leases: who may take over ----------------------------------------------------------------------
def here(**changes) -> dict:
    """This process's identity as a lease holder records it (pid, start, host, boot id, pid namespace)."""
    def read(path, link=False):
        if link:
            return os.readlink(path)
        with open(path) as f:
            return f.read().strip()
    return {'pid': os.getpid(), 'pid_start': read(f'/proc/{os.getpid()}/stat').rsplit(')', 1)[1].split()[19],
            'host': socket.gethostname(), 'boot_id': read('/proc/sys/kernel/random/boot_id'),
            'pid_ns': read('/proc/self/ns/pid', link=True), **changes}


def dead_pid() -> int:
    gone = subprocess.Popen(['true'])
    gone.wait()
    return gone.pid


RACER = AWAIT_INSTANT + textwrap.dedent('''\
    import json, os, sys, time
    from sluice.metadata import MetadataStore
    from sluice.orchestration.lease import Lease, LeaseHeld
    url, rounds, every, out, ready, instant = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:7]
    store, held, results = MetadataStore(url), [], []
    at = await_instant(ready, instant)
    for r in range(rounds):
        time.sleep(max(0.0, at + r * every - time.time()))
        try:
            held.append(Lease.acquire(store, f'race/{r}', 'racer'))
            results.append([r, held[-1].record.epoch])
        except LeaseHeld:
            results.append([r, None])
    with open(out + '.tmp', 'w') as f:
        json.dump(results, f)
    os.rename(out + '.tmp', out)
    while not os.path.exists(os.path.join(os.path.dirname(out), 'all-done')):  # every lease won stays held
        time.sleep(0.1)                                                        # until every racer is done
    ''')


def test_processes_racing_for_a_silent_lease_exactly_one_wins_each_round(tmp_path, store_url):
    """#23.5: three processes take over a lease whose holder is gone at one instant, round after round:
    the database's unique names let exactly one create the next epoch; the others see it held."""
    store = MetadataStore(store_url)
    rounds, racers = 8, 3
    for r in range(rounds):  # each scope held by a process that is gone
        store.lease_create(f'race/{r}', 1, here(pid=dead_pid(), command='run'))
    outs = [tmp_path / f'racer-{i}.json' for i in range(racers)]
    ready, instant = [tmp_path / f'racer-{i}.ready' for i in range(racers)], tmp_path / 'instant'
    procs = [subprocess.Popen([sys.executable, '-c', RACER, store_url, str(rounds), '0.5', str(out), str(flag),
                               str(instant)], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for out, flag in zip(outs, ready)]
    try:
        give_instant(procs, ready, instant)
        deadline = time.monotonic() + 180
        while not all(out.exists() for out in outs) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
    finally:
        (tmp_path / 'all-done').touch()
        ended = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, ended):
        assert p.returncode == 0, err[-3000:]
    results = [tuple(x) for out in outs for x in json.loads(out.read_text())]
    for r in range(rounds):
        won = [epoch for round_, epoch in results if round_ == r and epoch is not None]
        assert won == [2], (r, results)
        assert store.lease_latest(f'race/{r}').epoch == 2


def beating(store, record, stop):
    """A holder that beats every 0.1 s until ``stop`` is set (a live process somewhere else)."""
    def beat():
        while not stop.wait(0.1):
            store.lease_update(record)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def test_a_live_holder_in_another_pid_namespace_is_not_taken_for_gone(monkeypatch):
    """#23.2: a holder in a container sharing this host's name and kernel but not its pids: its pid means
    nothing here, so its heartbeat decides (before: its pid, not running here, read as 'gone': taken over)."""
    monkeypatch.setenv('SLUICE_LEASE_SECONDS', '2')
    store = MetadataStore(None)
    other = here(pid=dead_pid(), pid_ns='pid:[4026599999]', command='run')
    record = store.lease_create('ns-run', 1, other)
    stop = threading.Event()
    thread = beating(store, record, stop)
    with pytest.raises(LeaseHeld, match=r'Run ns-run is being driven by another process'):
        Lease.acquire(store, 'ns-run', 'resume')
    stop.set()
    thread.join()
    time.sleep(2.5)  # silent for longer than the lease period: now it is taken over
    lease = Lease.acquire(store, 'ns-run', 'resume')
    assert lease.record.epoch == 2
    lease.release()


HOLDER = textwrap.dedent('''\
    import sys, time
    real = time.time
    offset = float(sys.argv[2])
    time.time = lambda: real() + offset  # this "machine's" clock is off by offset seconds
    from sluice.metadata import MetadataStore
    from sluice.orchestration.lease import Lease
    lease = Lease.acquire(MetadataStore(sys.argv[1]), 'skewed-run', 'run')
    print('HOLDING', flush=True)
    time.sleep(600)
    ''')


@pytest.mark.parametrize('offset', [-120.0, 120.0])
def test_a_holder_whose_clock_is_off_is_judged_by_its_beats_not_its_times(tmp_path, offset, monkeypatch):
    """#23.2: a holder on another host (SLUICE_HOSTNAME) whose clock runs two minutes behind (or ahead):
    alive, it is never taken over; killed, it is taken over after one lease period as timed here
    (before: 120 s behind read as 120 s silent, taken over at once; ahead, a dead holder kept forever)."""
    url = f'sqlite:///{tmp_path}/m.db'
    env = {**os.environ, 'SLUICE_HOSTNAME': 'worker-b', 'SLUICE_LEASE_SECONDS': '3'}
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, url, str(offset)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == 'HOLDING', holder.stderr.read()
        monkeypatch.setenv('SLUICE_LEASE_SECONDS', '3')
        store = MetadataStore(url)
        with pytest.raises(LeaseHeld, match=r'being driven by another process: sluice run, pid \d+ on worker-b'):
            Lease.acquire(store, 'skewed-run', 'resume')
    finally:
        holder.kill()
        holder.communicate()
    started = time.monotonic()
    lease = Lease.acquire(store, 'skewed-run', 'resume')
    waited = time.monotonic() - started
    assert lease.record.epoch == 2 and 3 <= waited < 15, waited
    lease.release()


# -- an orchestrator's retry on another host ---------------------------------------------------------
TWO_NODES = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Source, Upper

def create_pipeline():
    source = Source(input_base={input!r})
    return Pipeline('retried', {root!r}, [source, Upper(text=source.outputs['text'])], metadata={url!r})
'''


def run_node_on(host, path, node, *extra, lease=15, env=None):
    return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run-node', str(path), '--run-id', 'r1', '--node', node,
                           '--no-retry', *extra], capture_output=True, text=True, cwd=os.path.dirname(path),
                          env={**os.environ, 'SLUICE_HOSTNAME': host, 'SLUICE_LEASE_SECONDS': str(lease), **(env or {})})


@pytest.mark.parametrize('attempts', [True, False])
def test_a_node_killed_on_one_host_is_retried_on_another(tmp_path, text_dir, attempts):
    """#23.1: a run-node task SIGKILLed on worker-a (an OOM kill, an evicted pod) and retried by the
    orchestrator on worker-b. With the try number (Airflow's export passes --attempt), the retry takes
    the node over at once: the killed try is provably over. Without it (KFP), the retry watches the
    holder stay silent for one lease period, then takes over (before: refused with 'being driven by
    another process' until the orchestrator's retries ran out, since the 1 s and 2 s retry delays are
    shorter than the lease). With the try number the lease is long (15 s), longer than a process's
    start-up, so that a retry that waited one out would show; without it, short (5 s): it is waited out."""
    lease = 15 if attempts else 5
    url = f'sqlite:///{tmp_path}/m.db'
    path = tmp_path / 'retried.py'
    path.write_text(TWO_NODES.format(tests=TESTS, input=str(text_dir), root=str(tmp_path / 'root'), url=url))
    assert run_node_on('worker-a', path, 'Source', lease=lease).returncode == 0
    first = ('--attempt', '1') if attempts else ()
    killed = run_node_on('worker-a', path, 'Upper', *first, lease=lease, env={'SLUICE_KILL_AT': 'Upper:executor:0'})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    started = time.monotonic()
    retry = run_node_on('worker-b', path, 'Upper', *(('--attempt', '2') if attempts else ()), lease=lease)
    took = time.monotonic() - started
    assert retry.returncode == 0, retry.stdout + retry.stderr
    store = MetadataStore(url)
    [abandoned, done] = [r for r in store.executions('r1') if r.node_id == 'Upper']
    assert abandoned.state == 'FAILED' and abandoned.error.startswith('abandoned:') and done.state == 'COMPLETE'
    assert done.properties['host'] == 'worker-b'
    if attempts:
        assert took < lease, took  # no lease period waited out (the process's own start-up is most of it)
    else:
        assert took >= lease, took


# -- one holder per node, whichever way the run is driven -------------------------------------------
HELD_UP = '''
import os, sys, time
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from sluice.components import Driver
from dummies import Source, Upper

class HeldUp(Driver):
    def cached_outputs(self, key):
        if os.environ.get('HOLD_UP'):  # the driver is slow to decide: nothing registered yet
            open({flag!r}, 'w').close()
            time.sleep(6)
        return super().cached_outputs(key)

class SlowUpper(Upper):
    driver = HeldUp

def create_pipeline():
    source = Source(input_base={input!r})
    return Pipeline('both-ways', {root!r}, [source, SlowUpper(text=source.outputs['text'])], metadata={url!r})
'''


def test_a_resume_and_an_orchestrator_task_never_execute_one_node_both(tmp_path, text_dir):
    """#23.4: an orchestrator's task (run-node) is deciding about Upper, nothing registered yet, when a
    `sluice resume` of the same run reaches Upper: the resume finds Upper's node lease held and leaves
    it to the task (before: the run lease and the node lease were separate scopes, so both executed
    Upper and the run had two COMPLETE executions and two LIVE results)."""
    url = f'sqlite:///{tmp_path}/m.db'
    flag = tmp_path / 'deciding'
    path = tmp_path / 'both_ways.py'
    path.write_text(HELD_UP.format(tests=TESTS, flag=str(flag), input=str(text_dir), root=str(tmp_path / 'root'),
                                   url=url))

    def cli(*args, **env):
        return [sys.executable, '-m', 'sluice.ui.cli', *args], {**os.environ, **env}

    args, env = cli('run-node', str(path), '--run-id', 'r1', '--node', 'Source')
    assert subprocess.run(args, env=env, cwd=tmp_path, capture_output=True).returncode == 0
    args, env = cli('run-node', str(path), '--run-id', 'r1', '--node', 'SlowUpper', HOLD_UP='1')
    task = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    args, env = cli('resume', 'r1', '--metadata', url)
    resumed = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True)
    out, err = task.communicate(timeout=120)
    assert task.returncode == 0, out + err
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert re.search(r'SlowUpper +FAILED .*LeaseHeld: Run r1/SlowUpper is being driven by another process: sluice '
                     r'run-node, pid \d+ .*Wait for it to finish \(sluice show r1 --metadata', resumed.stdout), resumed.stdout
    store = MetadataStore(url)
    upper = [r for r in store.executions('r1') if r.node_id == 'SlowUpper']
    assert [r.state for r in upper] == ['COMPLETE'], [(r.state, r.error) for r in upper]
