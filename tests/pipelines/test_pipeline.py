"""The Pipeline DSL: DAG checks with clear messages, ordering, loading pipeline files."""
from __future__ import annotations

import pytest

from dummies import Join, Source, Upper
from sluice import Pipeline, PipelineError, load_pipeline


def _chain():
    src = Source(input_base='/data')
    up = Upper(text=src.outputs['text'])
    return src, up


def test_nodes_are_ordered_topologically_whatever_the_list_order():
    src, up = _chain()
    join = Join(left=up.outputs['result'], right=src.outputs['text'])
    p = Pipeline('p', '/tmp/root', [join, up, src])
    assert p.node_ids == ['Source', 'Upper', 'Join']
    assert p.downstream('Source') == {'Upper', 'Join'} and p.downstream('Join') == set()
    assert p.metadata == 'sqlite:////tmp/root/metadata.db'
    assert p.node('Upper') is up


def _duplicate():
    src, up = _chain()
    return Pipeline('p', '/r', [src, up, Upper(text=src.outputs['text'])])


def _missing():
    src, up = _chain()
    return Pipeline('p', '/r', [up])


def _cycle():
    src, up = _chain()
    src.inputs['loop'] = up.outputs['result']  # not possible through the DSL; the guard still holds
    return Pipeline('p', '/r', [src, up])


@pytest.mark.parametrize('build, message', [
    (_duplicate, r"^Pipeline 'p' has two components with the id 'Upper'; give one of them another id with "
                 r"\.with_id\('upper_2'\)\.$"),
    (_missing, r"^Upper\.inputs\['text'\] comes from Source, which is not in the components of pipeline 'p'; "
               r"add it to Pipeline\(components=\[\.\.\.\]\)\.$"),
    (_cycle, r"^Pipeline 'p' has a cycle: (Source -> Upper -> Source|Upper -> Source -> Upper)\.$"),
    (lambda: Pipeline('p', '/r', []), r"^Pipeline 'p' has no components\.$"),
    (lambda: Pipeline('my pipeline', '/r', [Source(input_base='/d')]), r"^Pipeline name 'my pipeline' must be"),
    (lambda: Pipeline('p', '/r', ['Source']), r"^Pipeline 'p': components must be Component instances; got str"),
    (lambda: Pipeline('p', '/r', [Source(input_base='/d')], beam_pipeline_args='--x=1'),
     r"beam_pipeline_args is a list of strings"),
    (lambda: Pipeline('p', '/r', [Source(input_base='/d')]).node('Sourc'),
     r"^Pipeline 'p' has no node 'Sourc'; did you mean 'Source'\?$"),
])
def test_pipeline_errors(build, message):
    with pytest.raises(PipelineError, match=message):
        build()


def test_load_pipeline_file(tmp_path):
    f = tmp_path / 'pipe.py'
    f.write_text('from dummies import Source\nfrom sluice import Pipeline\n'
                 'def create_pipeline(root="/r"):\n    return Pipeline("p", root, [Source(input_base="/d")])\n')
    p = load_pipeline(str(f), root=str(tmp_path / 'x'))
    assert p.name == 'p' and p.source_file == str(f) and p.pipeline_root == str(tmp_path / 'x')
    g = tmp_path / 'module_level.py'
    g.write_text('from dummies import Source\nfrom sluice import Pipeline\n'
                 'pipeline = Pipeline("q", "/r", [Source(input_base="/d")])\n')
    assert load_pipeline(str(g)).name == 'q'


@pytest.mark.parametrize('content, message', [
    (None, r'^Pipeline file .*/f\.py does not exist\.$'),
    ('x = 1\n', r'defines neither a create_pipeline\(\) function nor a module-level `pipeline`; add one of them'),
    ('def create_pipeline(:\n', r'^Pipeline file .*/f\.py line 1: syntax error'),
    ('def create_pipeline():\n    return 3\n', r'create_pipeline\(\) in .*/f\.py returned int, not a Pipeline'),
])
def test_load_pipeline_errors(tmp_path, content, message):
    f = tmp_path / 'f.py'
    if content is not None:
        f.write_text(content)
    with pytest.raises(PipelineError, match=message):
        load_pipeline(str(f))
