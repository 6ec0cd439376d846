"""InteractiveContext on dummy components: same launcher, store and cache as the runners; views."""
from __future__ import annotations

import pytest

from dummies import Count, Source, Upper
from sluice.metadata import MetadataStore
from sluice import InteractiveContext, LocalDagRunner, Pipeline
from sluice.runners.interactive import InteractiveError
from sluice.ui.report import report_html


def test_upstream_not_run_yet_is_named(tmp_path, text_dir):
    context = InteractiveContext(pipeline_root=str(tmp_path / 'root'))
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'])
    with pytest.raises(InteractiveError, match=r'^Upper needs Source, which has not been run in this context yet; '
                                               r'run context\.run\(source\) first\.$'):
        context.run(up)
    with pytest.raises(InteractiveError, match=r"has no artifact yet: run context\.run\(source\) first"):
        context.view(src.outputs['text'])


def test_context_and_runner_share_one_cache_both_ways(tmp_path, text_dir, capsys):
    root = tmp_path / 'root'
    context = InteractiveContext(pipeline_root=str(root), pipeline_name='shared')
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'], suffix='!')
    assert context.run(src).state == 'COMPLETE' and context.run(up).state == 'COMPLETE'
    assert 'Source: COMPLETE' in capsys.readouterr().out
    # notebook -> pipeline: everything is a cache hit
    count = Count(text=src.outputs['text'])
    result = LocalDagRunner(progress=False).run(Pipeline('shared', str(root), [src, up, count],
                                                         metadata=context.metadata))
    assert result.node_states() == {'Source': 'CACHED', 'Upper': 'CACHED', 'Count': 'COMPLETE'}
    # pipeline -> notebook: a new context on the same store reuses what the pipeline ran
    later = InteractiveContext(pipeline_root=str(root), metadata=context.metadata, pipeline_name='shared')
    assert [later.run(c).state for c in (src, count)] == ['CACHED', 'CACHED']
    store = MetadataStore(context.metadata)
    assert {r.state for r in store.executions(later.run_id)} == {'CACHED'}


def test_views_have_html_and_text(tmp_path, text_dir):
    context = InteractiveContext(pipeline_root=str(tmp_path / 'root'), pipeline_name='views')
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'])
    context.run(src)
    context.run(up)
    view = context.view(up.outputs['result'])
    assert view._repr_html_().startswith('<div class="sluice">') and str(view).startswith('Text #')
    run = context.view()
    assert '<svg' in run._repr_html_() and 'Source' in str(run) and 'COMPLETE' in str(run)
    html = report_html(context.store, context.run_id)
    assert html.startswith('<!DOCTYPE html>') and '<script src' not in html and '<svg' in html


def test_blessing_and_evaluation_views_name_the_production_version_measured_against(tmp_path):
    import json
    import os

    from sluice.metadata import ModelBlessing, ModelEvaluation
    from sluice.ui.visuals import render

    blessing = ModelBlessing(uri=str(tmp_path / 'b'), blessed=1, current_model_id=7, baseline_model_id=3)
    blessing.set('baseline_version', '1795443337')
    blessing.set('push_destination', '/srv/serving')
    os.makedirs(blessing.uri)
    (tmp_path / 'b' / 'reasons.json').write_text(json.dumps({'checks': []}))
    assert 'BLESSED model #7 against production version 1795443337 at /srv/serving' in str(render(blessing))
    first = ModelBlessing(uri=blessing.uri, blessed=1, current_model_id=7, baseline_model_id=0)
    assert 'BLESSED model #7 against no baseline' in str(render(first))

    evaluation = ModelEvaluation(uri=str(tmp_path / 'e'))
    os.makedirs(evaluation.uri)
    (tmp_path / 'e' / 'metrics.json').write_text(json.dumps({
        'candidate_model_id': 7, 'baseline_model_id': 3, 'baseline_version': '1795443337',
        'push_destination': '/srv/serving', 'slices': {'Overall': {'candidate': {'acc': 0.9}, 'baseline': {'acc': 0.8}}}}))
    assert 'candidate model #7 vs production version 1795443337 at /srv/serving' in str(render(evaluation))
