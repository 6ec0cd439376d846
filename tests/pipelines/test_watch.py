"""`sluice watch`: runs when a span lands or an input changes (data, module files, the helpers they import),
idles cheaply, survives failures and ordinary errors (a pipeline file saved half way, a held lease, a store
out of reach), stops on Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from dummies import read_text
from sluice.metadata import MetadataStore
from sluice.orchestration.lease import Lease
from sluice.runners.local import LocalDagRunner
from sluice.ops.watch import Watcher, input_state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PENGUINS = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'data', 'penguins.csv')

SPANS_PIPELINE = '''
from sluice.components import CsvExampleGen, StatisticsGen
from sluice import Pipeline

gen = CsvExampleGen(input_base={data!r}, pattern='span-{{SPAN}}/*.csv')
pipeline = Pipeline('spans', {root!r}, [gen, StatisticsGen(examples=gen.outputs['examples'])], metadata={url!r})
'''

FLAKY_PIPELINE = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Flaky, Source, Upper

source = Source(input_base={data!r})
flaky = Flaky(counter={counter!r}, fail_times=1)
pipeline = Pipeline('flaky', {root!r}, [source, flaky, Upper(text=source.outputs['text'])], metadata={url!r})
'''


TEXT_PIPELINE = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Source, Upper

source = Source(input_base={data!r})
pipeline = Pipeline('text', {root!r}, [source, Upper(text=source.outputs['text'], suffix={suffix!r})], metadata={url!r})
'''


class Watch:
    """`sluice watch FILE --every SECONDS` in its own process, its output read line by line as it comes."""

    def __init__(self, path, every, cwd):
        self.process = subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', 'watch', str(path), '--every',
                                         str(every)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=cwd)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    @property
    def text(self):
        return ''.join(self.lines)

    def count(self, pattern):
        return len(re.findall(pattern, self.text, re.M))

    def wait_for(self, pattern, count=1, limit=120):
        """The matches of ``pattern`` once there are ``count``; fails at once if watch exits first."""
        end = time.time() + limit
        while time.time() < end:
            found = re.findall(pattern, self.text, re.M)
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                self.reader.join(timeout=10)
                if len(re.findall(pattern, self.text, re.M)) < count:
                    raise AssertionError(f'watch exited with status {self.process.returncode} before {pattern!r} '
                                         f'x{count}:\n{self.text}')
            time.sleep(0.1)
        raise AssertionError(f'no {pattern!r} x{count} in:\n{self.text}')

    def stop(self):
        """Ctrl-C; the exit status."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        self.process.stdout.close()
        return code


def text_pipeline(tmp_path, text_dir, suffix, url=None):
    return TEXT_PIPELINE.format(tests=os.path.join(REPO, 'tests'), data=str(text_dir), root=str(tmp_path / 'root'),
                                suffix=suffix, url=url or f'sqlite:///{tmp_path}/m.db')


def upper_texts(url):
    """The text the Upper node made in each run of the 'text' pipeline, oldest first."""
    store = MetadataStore(url)
    return [read_text(store.node_outputs(r.run_id, 'Upper')['result'][0]) for r in store.runs('text')]


def write_span(data, span, rows):
    with open(PENGUINS) as f:
        lines = f.read().splitlines()
    (data / f'span-{span}').mkdir(parents=True)
    (data / f'span-{span}' / 'penguins.csv').write_text('\n'.join([lines[0], *rows(lines[1:])]) + '\n')


def test_watch_runs_when_a_span_lands_then_idles_and_stops_on_ctrl_c(tmp_path):
    data, url = tmp_path / 'data', f'sqlite:///{tmp_path}/m.db'
    write_span(data, 1, lambda rows: rows[:150])
    path = tmp_path / 'spans_pipeline.py'
    path.write_text(SPANS_PIPELINE.format(data=str(data), root=str(tmp_path / 'root'), url=url))
    watch = Watch(path, 0.5, tmp_path)
    try:
        watch.wait_for(r'^Run \S+ COMPLETE', 1)
        write_span(data, 2, lambda rows: rows[150:])  # a new span lands while it watches
        watch.wait_for(r'^Run \S+ COMPLETE', 2)
        assert re.search(r'Inputs changed \(new \S+span-2/penguins\.csv\): running\.', watch.text)
        time.sleep(3)  # six idle ticks: nothing runs
        assert watch.count(r'^Run \S+ of pipeline') == 2
    finally:
        code = watch.stop()
    assert code == 0 and 'Stopped watching after 2 run(s).' in watch.text, watch.text
    store = MetadataStore(url)
    runs = store.runs('spans')
    assert [r.state for r in runs] == ['COMPLETE', 'COMPLETE']
    spans = [store.node_outputs(r.run_id, 'CsvExampleGen')['examples'][0].get('span') for r in runs]
    assert spans == [1, 2]


def test_a_transient_failure_is_resumed_at_the_next_tick(tmp_path, text_dir):
    path = tmp_path / 'flaky_pipeline.py'
    url = f'sqlite:///{tmp_path}/m.db'
    path.write_text(FLAKY_PIPELINE.format(tests=os.path.join(REPO, 'tests'), data=str(text_dir), url=url,
                                          counter=str(tmp_path / 'calls.txt'), root=str(tmp_path / 'root')))
    said: list[str] = []
    watcher = Watcher(str(path), every=0.1, runner=LocalDagRunner(progress=False), say=said.append)
    first = watcher.tick()
    assert first.state == 'FAILED' and first['Flaky'].error.startswith('ConnectionError')
    assert 'it will be resumed at the next tick' in said[-1]
    second = watcher.tick()  # the same run, resumed: only Flaky runs again
    assert second.run_id == first.run_id and second.state == 'COMPLETE'
    assert second['Source'].reused and second['Flaky'].state == 'COMPLETE'
    assert watcher.tick() is None  # nothing new: nothing runs
    (text_dir / 'c.txt').write_text('more')
    third = watcher.tick()
    assert third.run_id != first.run_id and third['Source'].state == 'COMPLETE'
    assert any('new ' + str(text_dir / 'c.txt') in line for line in said)


def test_bad_data_waits_for_a_change(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.csv').write_text('a,b\n1,2\n3\n')
    path = tmp_path / 'csv_pipeline.py'
    path.write_text(f'''
from sluice.components import CsvExampleGen
from sluice import Pipeline
pipeline = Pipeline('csv', {str(tmp_path / 'root')!r}, [CsvExampleGen(input_base={str(data)!r})],
                    metadata='sqlite:///{tmp_path}/m.db')
''')
    said: list[str] = []
    watcher = Watcher(str(path), every=0.1, runner=LocalDagRunner(progress=False), say=said.append)
    assert watcher.tick().state == 'FAILED'
    assert 'waiting for the inputs to change' in said[-1]
    assert watcher.tick() is None  # not retried: the same bytes would fail the same way
    fixed = 'a,b\n' + ''.join(f'{i},{i * 2}\n' for i in range(20))
    (data / 'a.csv').write_text(fixed)
    assert watcher.tick().state == 'COMPLETE'
    assert input_state(watcher.pipeline)[str(data / 'a.csv')][0] == len(fixed)


def test_what_the_pipeline_writes_is_not_watched(tmp_path):
    """A push lands in the destination the Evaluator and Pusher name: it must not start another run."""
    from sluice import load_pipeline

    spans = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_spans_pipeline.py')
    pipeline = load_pipeline(spans, root=str(tmp_path / 'root'))
    (tmp_path / 'root' / 'incoming' / 'span-1').mkdir(parents=True)
    (tmp_path / 'root' / 'incoming' / 'span-1' / 'a.csv').write_text('x\n1\n')
    (tmp_path / 'root' / 'serving' / '7').mkdir(parents=True)
    (tmp_path / 'root' / 'serving' / '7' / 'saved_model.pb').write_text('pushed')
    watched = input_state(pipeline)
    assert str(tmp_path / 'root' / 'incoming' / 'span-1' / 'a.csv') in watched
    assert spans in watched and os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_module.py') in watched
    assert not [p for p in watched if '/serving/' in p]


# -- what a user does to a watch: save half a file, hold its run, lose the store, edit a helper ---------------
def test_a_pipeline_file_saved_half_way_is_reported_and_the_last_good_pipeline_kept(tmp_path, text_dir):
    """Half a save: one line saying so, no run, watch alive; new data meanwhile runs the last good pipeline;
    the whole save runs the new one."""
    url, path = f'sqlite:///{tmp_path}/m.db', tmp_path / 'text_pipeline.py'
    good = text_pipeline(tmp_path, text_dir, '!')
    path.write_text(good)
    broken = rf'^Pipeline file {re.escape(str(path))} line \d+: syntax error: [^\n]+; keeping the last good ' \
             r'pipeline; will retry on the next change\.$'
    watch = Watch(path, 0.3, tmp_path)
    try:
        watch.wait_for(r'^Run \S+ COMPLETE', 1)
        path.write_text(good[:good.rindex('Upper(')])  # the editor has written half of it so far
        watch.wait_for(broken, 1)
        time.sleep(2)  # idle ticks: the error is said once, nothing runs, watch lives
        assert watch.process.poll() is None and watch.count(broken) == 1
        assert watch.count(r'^Run \S+ of pipeline') == 1
        (text_dir / 'c.txt').write_text('!')  # new data while the file is broken: the last good pipeline runs
        watch.wait_for(r'^Run \S+ COMPLETE', 2)
        assert watch.count(broken) == 2
        path.write_text(text_pipeline(tmp_path, text_dir, '?!'))  # the whole save
        watch.wait_for(r'^Run \S+ COMPLETE', 3)
        assert re.search(rf'^Inputs changed \(changed {re.escape(str(path))}\): running\.$', watch.text, re.M)
        time.sleep(1)
        assert watch.count(r'^Run \S+ of pipeline') == 3 and watch.count(broken) == 2
    finally:
        code = watch.stop()
    assert code == 0 and 'Stopped watching after 3 run(s).' in watch.text, watch.text
    assert upper_texts(url) == ['HELLO WORLD!', 'HELLO WORLD!!', 'HELLO WORLD!?!']


def test_a_pipeline_file_that_never_loaded_is_loaded_at_its_next_change(tmp_path, text_dir):
    path = tmp_path / 'text_pipeline.py'
    path.write_text("def create_pipeline():\n    raise ValueError('no data yet')\n")
    said: list[str] = []
    watcher = Watcher(str(path), every=0.1, runner=LocalDagRunner(progress=False), say=said.append)
    assert watcher.tick() is None and watcher.pipeline is None
    assert said == [f"create_pipeline() in {path} raised ValueError: no data yet (line 2: raise ValueError('no data "
                    "yet')); no pipeline loaded yet; will retry on the next change."]
    assert watcher.tick() is None and len(said) == 1  # the same file: not loaded again
    path.write_text(text_pipeline(tmp_path, text_dir, '!'))
    assert watcher.tick().state == 'COMPLETE'
    assert said[1] == f'Inputs changed (changed {path}): running.'


def test_a_run_held_by_another_live_process_is_resumed_once_it_lets_go(tmp_path, text_dir):
    """The run failed transiently and is due to be resumed, but another process (this test) holds its lease:
    each tick says so and watch goes on; once the holder lets go, the next tick resumes the run."""
    url, path = f'sqlite:///{tmp_path}/m.db', tmp_path / 'flaky_pipeline.py'
    path.write_text(FLAKY_PIPELINE.format(tests=os.path.join(REPO, 'tests'), data=str(text_dir), url=url,
                                          counter=str(tmp_path / 'calls.txt'), root=str(tmp_path / 'root')))
    store = MetadataStore(url)
    watch = Watch(path, 2, tmp_path)
    try:
        [run_id] = watch.wait_for(r'^Run (\S+) failed \(Flaky: ConnectionError: [^\n]*\); it will be resumed at the '
                                  r'next tick, in 2s\.$', 1)
        holder = Lease.acquire(store, run_id, 'resume')  # as a `sluice resume` of the same run would
        assert 'Resuming run' not in watch.text, 'too late: watch resumed before this test took the lease'
        held = rf'^Could not resume run {run_id}: LeaseHeld: Run {run_id} is being driven by another process: ' \
               rf'sluice resume, pid {os.getpid()} on [^\n]+; will try again at the next tick, in 2s\.$'
        watch.wait_for(held, 2)
        assert watch.process.poll() is None
        holder.release()
        watch.wait_for(rf'^Run {run_id} COMPLETE', 1)
        assert watch.count(r'^Resuming run \S+, which failed with an error a retry may fix\.$') == 3
    finally:
        code = watch.stop()
    assert code == 0 and 'Stopped watching after 2 run(s).' in watch.text, watch.text
    assert [(r.run_id, r.state) for r in store.runs('flaky')] == [(run_id, 'COMPLETE')]


def test_a_store_out_of_reach_is_tried_again_at_each_tick(tmp_path, text_dir):
    """The store's directory cannot be made (a file is in its way, as an unmounted disk would leave it):
    each tick says so; once it can be, the run starts."""
    blocked = tmp_path / 'store'
    blocked.write_text('not a directory')
    url, path = f'sqlite:///{blocked}/m.db', tmp_path / 'text_pipeline.py'
    path.write_text(text_pipeline(tmp_path, text_dir, '!', url=url))
    watch = Watch(path, 0.3, tmp_path)
    try:
        watch.wait_for(rf'^Could not start a run of {re.escape(str(path))}: MetadataStoreError: Cannot create the '
                       rf"directory '{blocked}' for the SQLite metadata store [^\n]+; will try again at the next tick, "
                       r'in 0\.3s\.$', 3)
        assert watch.process.poll() is None
        blocked.unlink()
        watch.wait_for(r'^Run \S+ COMPLETE', 1)
        time.sleep(1)
        assert watch.count(r'^Run \S+ of pipeline') == 1
    finally:
        code = watch.stop()
    assert code == 0 and 'Stopped watching after 1 run(s).' in watch.text, watch.text
    assert upper_texts(url) == ['HELLO WORLD!']


HELPED_PIPELINE = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import ApplyModule, Source, Upper
from watch_settings import SUFFIX

source = Source(input_base={data!r})
shout = ApplyModule(text=source.outputs['text'], module_file={module!r})
pipeline = Pipeline('text', {root!r}, [source, shout, Upper(text=shout.outputs['result'], suffix=SUFFIX)],
                    metadata={url!r})
'''


def helped_pipeline(tmp_path, text_dir):
    """A pipeline file importing a helper (watch_settings.py), whose module file (code/shout_module.py)
    imports another (code/shout_helper.py)."""
    (tmp_path / 'code').mkdir()
    (tmp_path / 'code' / 'shout_module.py').write_text(
        'from shout_helper import shout\n\n\ndef transform(text):\n    return shout(text)\n')
    (tmp_path / 'code' / 'shout_helper.py').write_text('def shout(text):\n    return text.upper()\n')
    (tmp_path / 'watch_settings.py').write_text("SUFFIX = '!'\n")
    path = tmp_path / 'helped_pipeline.py'
    path.write_text(HELPED_PIPELINE.format(tests=os.path.join(REPO, 'tests'), data=str(text_dir),
                                           module=str(tmp_path / 'code' / 'shout_module.py'),
                                           root=str(tmp_path / 'root'), url=f'sqlite:///{tmp_path}/m.db'))
    return path


def test_an_edited_helper_of_a_module_file_or_of_the_pipeline_file_starts_a_run(tmp_path, text_dir):
    path, url = helped_pipeline(tmp_path, text_dir), f'sqlite:///{tmp_path}/m.db'
    helper, settings = tmp_path / 'code' / 'shout_helper.py', tmp_path / 'watch_settings.py'
    watch = Watch(path, 0.3, tmp_path)
    try:
        watch.wait_for(r'^Run \S+ COMPLETE', 1)
        helper.write_text("def shout(text):\n    return text.upper() + '?'\n")
        watch.wait_for(r'^Run \S+ COMPLETE', 2, limit=60)
        assert re.search(rf'^Inputs changed \(changed {re.escape(str(helper))}\): running\.$', watch.text, re.M)
        settings.write_text("SUFFIX = '!!'\n")
        watch.wait_for(r'^Run \S+ COMPLETE', 3, limit=60)
        assert re.search(rf'^Inputs changed \(changed {re.escape(str(settings))}\): running\.$', watch.text, re.M)
    finally:
        code = watch.stop()
    assert code == 0 and 'Stopped watching after 3 run(s).' in watch.text, watch.text
    assert upper_texts(url) == ['HELLO WORLD!', 'HELLO WORLD?!', 'HELLO WORLD?!!']


def test_the_code_watched_is_the_pipeline_file_the_module_files_and_the_project_files_they_import(
        tmp_path, text_dir):
    from sluice import load_pipeline

    path = helped_pipeline(tmp_path, text_dir)
    watched = input_state(load_pipeline(str(path)))
    code = {str(path), str(tmp_path / 'watch_settings.py'), str(tmp_path / 'code' / 'shout_module.py'),
            str(tmp_path / 'code' / 'shout_helper.py'), os.path.join(REPO, 'tests', 'dummies.py')}
    assert code <= set(watched)
    outside = sorted(p for p in set(watched) - code if not p.startswith(str(text_dir)))
    assert outside == []  # not the standard library, installed packages or Sluice's own files


def test_a_pipeline_file_that_does_not_exist_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'watch', 'no_such_pipeline.py', '--every', '1'],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr == (
        'sluice: error: No pipeline file no_such_pipeline.py; give the path of a Python file defining '
        'create_pipeline() or `pipeline`.\n'), done.stderr
