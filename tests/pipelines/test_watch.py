"""`sluice watch`: runs when a span lands or an input changes, idles cheaply, survives failures, stops on Ctrl-C."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from sluice.metadata import MetadataStore
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
    watch = subprocess.Popen([sys.executable, '-m', 'sluice.ui.cli', 'watch', str(path), '--every', '0.5'],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True)
    reader.start()

    def wait_for(pattern, count, limit=120):
        end = time.time() + limit
        while time.time() < end:
            if len(re.findall(pattern, ''.join(lines), re.M)) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f'no {pattern!r} x{count} in:\n{"".join(lines)}')

    try:
        wait_for(r'^Run \S+ COMPLETE', 1)
        write_span(data, 2, lambda rows: rows[150:])  # a new span lands while it watches
        wait_for(r'^Run \S+ COMPLETE', 2)
        assert re.search(r'Inputs changed \(new \S+span-2/penguins\.csv\): running\.', ''.join(lines))
        time.sleep(3)  # six idle ticks: nothing runs
        assert len(re.findall(r'^Run \S+ of pipeline', ''.join(lines), re.M)) == 2
    finally:
        watch.send_signal(signal.SIGINT)
        code = watch.wait(timeout=60)
        reader.join(timeout=10)
        watch.stdout.close()
    assert code == 0 and 'Stopped watching after 2 run(s).' in ''.join(lines), ''.join(lines)
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
