"""The bad-input catalogue, on the standard pipeline: each case gets a clear message, a FAILED
execution where one started, nothing published by it and nothing pushed."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from sluice.metadata import MetadataStore, MetadataStoreError
from sluice import LocalDagRunner, PipelineError, load_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, 'pipelines', 'examples', 'penguin')
PENGUIN = os.path.join(EXAMPLE, 'penguin_pipeline.py')
HEADER = 'species,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g\n'


@pytest.fixture(scope='module')
def shared(penguin_run):
    """One store and root where the clean pipeline already ran: each case reruns only what it changes.
    The session's penguin run (conftest.py): other test files read its first run; the cases here push
    nothing, and no other test file runs anything on it."""
    root, result = penguin_run
    assert result['state'] == 'COMPLETE', result['errors']
    return root


def data_dir(tmp_path, text):
    d = tmp_path / 'data'
    d.mkdir()
    (d / 'penguins.csv').write_text(text)
    return str(d)


def good_rows():
    with open(os.path.join(EXAMPLE, 'data', 'penguins.csv')) as f:
        return f.read().splitlines(keepends=True)[1:]


def module_with(tmp_path, text):
    path = tmp_path / 'module.py'
    path.write_text(text)
    return str(path)


# (case, how to build it: tmp_path -> (load_pipeline kwargs, tweak), failing node, message)
CASES = [
    ('malformed CSV row', lambda t: ({'data': data_dir(t, HEADER + '0,0.1,0.2,0.3\n' + ''.join(good_rows()))}, None),
     'CsvExampleGen', r'penguins\.csv line 2 has 4 fields but the header has 5'),
    ('empty CSV', lambda t: ({'data': data_dir(t, '')}, None),
     'CsvExampleGen', r'penguins\.csv is empty \(line 1 has no header\)'),
    ('wrong column type', lambda t: ({'data': data_dir(t, HEADER + '0,0.1,0.2,0.3,heavy\n' + ''.join(good_rows()))}, None),
     'ExampleValidator', r"feature 'body_mass_g': Unexpected data type"),
    ('label missing', lambda t: ({'data': data_dir(t, HEADER.replace('species,', '') +
                                                   ''.join(r.split(',', 1)[1] for r in good_rows()))}, None),
     'ExampleValidator', r"feature 'species': Column dropped"),
    ('schema file that does not parse', lambda t: ({'schema_file': module_with(t, 'feature { name: "x" typ: INT }')}, None),
     'ImportSchemaGen', r'does not parse as a tensorflow_metadata Schema in text format'),
    ('module file with a syntax error', lambda t: ({'module_file': module_with(t, 'def preprocessing_fn(inputs:\n')}, None),
     'Transform', r'module\.py line 1: syntax error: .*Fix the file and run again'),
    ('module file without preprocessing_fn', lambda t: ({'module_file': module_with(t, 'def run_fn(a):\n    pass\n')}, None),
     'Transform', r'has no function preprocessing_fn\(\); define it there\. Functions it defines: run_fn'),
    ('threshold on a metric that is not computed',
     lambda t: ({'train_steps': 20}, lambda p: p.node('ModelValidator').parameters.update(
         thresholds={'auc': {'lower_bound': 0.5}})),
     'ModelValidator', r"NOT_BLESSED: metric 'auc' was not computed for slice 'Overall'"),
    ('unwritable push destination',
     # As if the pipeline file named it: the Evaluator measures against the same destination.
     lambda t: ({'train_steps': 20}, lambda p: [p.node(n).parameters.update(push_destination=str(_file(t) / 'serving'))
                                                for n in ('Evaluator', 'Pusher')]),
     'Pusher', r'Cannot write to the push destination .*/a-file/serving: Not a directory'),
]


def _file(tmp_path):
    path = tmp_path / 'a-file'
    path.write_text('')
    return path


@pytest.mark.parametrize('case, build, node, message', CASES, ids=[c[0] for c in CASES])
def test_bad_input(shared, tmp_path, case, build, node, message):
    kwargs, tweak = build(tmp_path)
    pipeline = load_pipeline(PENGUIN, root=str(shared), **{'train_steps': 20, **kwargs})
    if tweak:
        tweak(pipeline)
    serving = shared / 'serving'
    before = sorted(os.listdir(serving))
    result = LocalDagRunner(progress=False).run(pipeline)
    store = MetadataStore(pipeline.metadata)
    [record] = [r for r in store.executions(result.run_id) if r.node_id == node]
    if message.startswith('NOT_BLESSED'):
        blessing = result[node].outputs['blessing']
        assert blessing.get('blessed') == 0
        import json
        with open(os.path.join(blessing.uri, 'reasons.json')) as f:
            assert re.search(message.split(': ', 1)[1], json.load(f)['checks'][0]['reason'])
        assert result['Pusher'].outputs['pushed_model'].get('pushed') == 0
    else:
        assert result[node].state == 'FAILED' and re.search(message, result[node].error), result[node].error
        assert record.state == 'FAILED' and record.outputs == {}
        assert not any(n.state == 'COMPLETE' for k, n in result.nodes.items()
                       if k in pipeline.downstream(node)), 'something ran downstream of a failure'
    assert sorted(os.listdir(serving)) == before  # nothing pushed


def test_unreachable_store_and_unusable_root_fail_before_anything_runs(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    pipeline = load_pipeline(PENGUIN, root=str(tmp_path / 'root'), metadata=f'postgresql://u@127.0.0.1:{port}/db')
    with pytest.raises(MetadataStoreError, match=rf'Cannot connect to the metadata store at postgresql://u@127\.0\.0\.1:'
                                                 rf'{port}/db: 127\.0\.0\.1:{port}: Connection refused'):
        LocalDagRunner(progress=False).run(pipeline)
    _file(tmp_path)
    pipeline = load_pipeline(PENGUIN, root=str(tmp_path / 'a-file' / 'root'), metadata=f'sqlite:///{tmp_path}/m.db')
    with pytest.raises(PipelineError, match=r'Cannot create the pipeline root .*/a-file/root: Not a directory\. '
                                            r'Choose a writable directory'):
        LocalDagRunner(progress=False).run(pipeline)
    assert MetadataStore(f'sqlite:///{tmp_path}/m.db').runs() == []
    assert not os.path.exists(tmp_path / 'root')
    shutil.rmtree(tmp_path / 'a-file', ignore_errors=True)
