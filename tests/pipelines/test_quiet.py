"""Quiet by default: a successful ``sluice run`` prints progress and the outcome, the libraries' messages
go to ``<pipeline_root>/.sluice-logs/<run_id>.log``; ``--quiet`` prints only the outcome line and
``--verbose`` also the libraries' messages. The taxi run goes through the real command (a process of
its own), so native messages and the interpreter's exit are covered too."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from shared_runs import changing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAXI = os.path.join(REPO, 'pipelines', 'examples', 'taxi', 'taxi_pipeline.py')
NOISE = ('Traceback', 'Exception ignored', 'Unable to register', 'WARNING', 'deprecated')

# Every line a successful run may print: progress, the outcome, and where the details are.
ALLOWED = [
    r"Run \S+ of pipeline 'taxi': 10 nodes, store sqlite:///\S+",
    r'\[\d+/10\] [\w.]+ running \.\.\. \(\d+s into the run\)',
    r'\[\d+/10\] [\w.]+ +(COMPLETE|CACHED) +[\d.]+s',
    r'Run \S+ COMPLETE in [\d.]+s: \d+ executed, \d+ cached, 0 failed, 0 skipped',
    r'Log \(library messages; --verbose prints them\): \S+\.log',
    r'ModelValidator: BLESSED model #\d+ against .*',
    r'  ok   mean_absolute_error \[Overall\]: .*',
    r'Pusher: pushed to \S+',
    r'Details: sluice show \S+ --metadata \S+',
    r'',
]


def sluice(args, cwd):
    """``sluice ARGS`` as its own process (``python -m sluice.ui.cli``, as the console script runs it)."""
    env = {**os.environ, 'PYTHONPATH': REPO}
    return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def taxi_run(taxi_cli):
    """One taxi run through the command line, from a fresh directory (root runs/taxi there): the
    session's (conftest.py's taxi_cli), which other test files read too."""
    return taxi_cli


def test_a_successful_taxi_run_prints_progress_and_the_outcome_only(taxi_run):
    work, done = taxi_run
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown[-5000:]
    for noise in NOISE:
        assert noise not in shown, shown
    assert done.stderr == ''
    for line in done.stdout.splitlines():
        assert any(re.fullmatch(p, line) for p in ALLOWED), f'unexpected output line {line!r} in:\n{done.stdout}'
    assert len(re.findall(r'^\[\d+/10\] [\w.]+ +COMPLETE', done.stdout, re.M)) == 10
    run_id = re.search(r'^Run (\S+) COMPLETE', done.stdout, re.M).group(1)

    # Everything else is in the run's log, under the pipeline root.
    path = work / 'runs' / 'taxi' / '.sluice-logs' / f'{run_id}.log'
    assert f'Log (library messages; --verbose prints them): {path}' in done.stdout
    log = path.read_text()
    assert re.search(r'^\S+ \S+ WARNING tensorflow: From .* is deprecated', log, re.M), log[:3000]
    assert re.search(r'^\S+ \S+ WARNING absl: .*TFMA', log, re.M)
    assert re.search(r'^\S+ \S+ INFO apache_beam', log, re.M)
    assert "ExampleValidator: split 'train': no anomalies" in log  # what executors print
    assert re.search(r'Pusher: model #\d+ pushed as version', log)
    assert not [f for f in os.listdir(work) if f.endswith('.log')]


def test_quiet_prints_only_the_outcome_line_and_verbose_the_libraries_messages(taxi_run):
    work, _ = taxi_run
    with changing(work.parent):  # the session's taxi run: one rerun on its store at a time
        quiet = sluice(['run', TAXI, '--quiet'], work)  # everything cached: quick
        loud = sluice(['--verbose', 'run', TAXI], work)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stderr == ''
    assert re.fullmatch(r'Run \S+ COMPLETE in [\d.]+s: 0 executed, 10 cached, 0 failed, 0 skipped\n', quiet.stdout), \
        quiet.stdout
    run_id = quiet.stdout.split()[1]
    log = (work / 'runs' / 'taxi' / '.sluice-logs' / f'{run_id}.log').read_text()
    assert "Run {} of pipeline 'taxi'".format(run_id) in log and 'Details: sluice show' in log

    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert re.search(r'^INFO absl: MetadataStore with DB connection initialized', loud.stderr, re.M), loud.stderr
    assert re.search(r'^\[10/10\] Pusher +CACHED', loud.stdout, re.M)


def test_a_failed_quiet_run_says_what_failed_and_how_to_resume(tmp_path):
    pipe = tmp_path / 'pipe.py'
    pipe.write_text(f'''
from sluice.components import CsvExampleGen
from sluice import Pipeline

def create_pipeline():
    return Pipeline(name='broken', pipeline_root={str(tmp_path / 'root')!r},
                    components=[CsvExampleGen(input_base={str(tmp_path / 'nowhere')!r})])
''')
    done = sluice(['run', str(pipe), '-q'], tmp_path)
    assert done.returncode == 1 and done.stderr == '', done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r'Run (\S+) FAILED in [\d.]+s: 0 executed, 0 cached, 1 failed, 0 skipped', lines[0]), lines
    run_id = lines[0].split()[1]
    assert lines[1].startswith('CsvExampleGen failed: ') and 'nowhere' in lines[1]
    assert lines[2] == f'Resume: sluice resume {run_id} --metadata sqlite:///{tmp_path}/root/metadata.db'
    assert lines[3] == ('Log (library messages; --verbose prints them): '
                        f'{tmp_path}/root/.sluice-logs/{run_id}.log') and len(lines) == 4


def test_bad_verbosity_flags_are_usage_errors(tmp_path):
    done = sluice(['run', TAXI, '--loud'], tmp_path)
    assert done.returncode == 2 and 'unrecognized arguments: --loud' in done.stderr
    done = sluice(['-q', '-v', 'runs'], tmp_path)
    assert done.returncode == 2 and 'not allowed with argument' in done.stderr


EXIT_PROBE = '''\
import sys
from sluice.ui.cli import main


class Finalized:
    """Like TensorFlow's AtomicFunction at exit: a finalizer that raises while the interpreter ends."""
    def __del__(self):
        raise TypeError("'NoneType' object is not subscriptable")


keep = Finalized()
sys.argv = ['sluice', 'run', sys.argv[1]]
sys.exit(main())
'''


def test_what_finalizers_raise_at_exit_goes_to_the_log(tmp_path):
    pipe = tmp_path / 'pipe.py'
    pipe.write_text(f'''
from sluice.components import CsvExampleGen
from sluice import Pipeline

def create_pipeline():
    return Pipeline(name='light', pipeline_root={str(tmp_path / 'root')!r},
                    components=[CsvExampleGen(input_base={os.path.join(REPO, 'pipelines', 'examples', 'penguin',
                                                                       'data')!r})])
''')
    env = {**os.environ, 'PYTHONPATH': REPO}
    done = subprocess.run([sys.executable, '-c', EXIT_PROBE, str(pipe)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == '', done.stdout + done.stderr
    assert 'Exception ignored' not in done.stdout and 'Traceback' not in done.stdout
    run_id = re.search(r'^Run (\S+) COMPLETE', done.stdout, re.M).group(1)
    log = (tmp_path / 'root' / '.sluice-logs' / f'{run_id}.log').read_text()
    assert re.search(r"INFO sluice\.exit: Exception ignored in: <function Finalized\.__del__ .*\n"
                     r"Traceback \(most recent call last\):\n(.*\n)*TypeError: 'NoneType' object is not subscriptable",
                     log), log[-2000:]
