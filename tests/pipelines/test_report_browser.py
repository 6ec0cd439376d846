"""The run report in a real browser: Debian's Chromium, headless, driven by Playwright, opens the report
of a penguin run and of a taxi run (and of a penguin run stopped by anomalies), the runs of the example
pipelines that the session makes once for the tests that read them (conftest.py). Every plot is drawn
with data points, screenshots of the plots are not blank, the page raises no error, and it makes no
network request (Plotly's JavaScript is inline)."""
from __future__ import annotations

import io
import os
import re

import pytest

from sluice.metadata import MetadataStore
from sluice.ui.report import write_report

CHROMIUM = os.environ.get('SLUICE_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']

PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
    kind: (d.layout.meta || {}).sluice,
    meta: d.layout.meta || {},
    traces: d.data.length,
    values: d.data.reduce((n, t) => n + (t.x || []).filter(v => v !== null && v !== undefined).length, 0),
    drawn: d.querySelectorAll('.point').length,
    failing: d.data.reduce((n, t) => n + (t.text || []).filter(v => v === 'FAIL').length, 0),
    shapes: (d.layout.shapes || []).length,
    height: d.getBoundingClientRect().height,
    width: d.getBoundingClientRect().width,
}))"""


NODES = ('CsvExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'ExampleValidator', 'Transform', 'Trainer',
         'Trainer.onnx', 'Evaluator', 'ModelValidator', 'Pusher')
EXECUTED = dict.fromkeys(NODES, 'COMPLETE')
STOPPED = {'CsvExampleGen': 'COMPLETE', 'ImportSchemaGen': 'COMPLETE', 'StatisticsGen': 'COMPLETE',
           'ExampleValidator': 'FAILED'}


@pytest.fixture(scope='module')
def reports(tmp_path_factory, penguin_run, taxi_cli, skewed_penguin_run):
    """Report pages of real runs: penguin, taxi, and penguin on data with a bad value (stopped by
    ExampleValidator), each the first run of the session's (conftest.py: penguin_run, taxi_cli,
    skewed_penguin_run)."""
    out = tmp_path_factory.mktemp('reports')
    work, done = taxi_cli
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    taxi = MetadataStore(f"sqlite:///{work / 'runs' / 'taxi' / 'metadata.db'}", create=False)
    taxi_run = re.search(r'^Run (\S+) COMPLETE', done.stdout, re.M).group(1)
    assert {r.node_id: r.state for r in taxi.executions(taxi_run)} == EXECUTED
    pages = {'taxi': write_report(taxi, taxi_run, str(out / 'taxi.html'))}
    for name, (_, run), wanted in (('penguin', penguin_run, EXECUTED), ('skewed', skewed_penguin_run, STOPPED)):
        assert run['node_states'] == {**dict.fromkeys(NODES, 'SKIPPED'), **wanted}, run['errors']
        store = MetadataStore(run['metadata'], create=False)
        pages[name] = write_report(store, run['run_id'], str(out / f'{name}.html'))
    return pages


@pytest.fixture(scope='module')
def browser():
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f'Chromium not found at {CHROMIUM}: install the system package (make system-deps runs '
                    "'apt-get install chromium'), or point SLUICE_CHROMIUM to a Chromium binary.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, path, plots=5):
    """The page (loaded, plots drawn), the requests it made beyond its own file, and its errors."""
    page = browser.new_page(viewport={'width': 1300, 'height': 900})
    requests, errors = [], []
    page.on('request', lambda r: requests.append(r.url) if r.url != f'file://{path}' else None)
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
    page.route(re.compile(r'^(?!file://).*'), lambda route: route.abort())  # nothing leaves the machine
    page.goto(f'file://{path}', wait_until='load')
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {plots} && "
                           "Array.from(document.querySelectorAll('.js-plotly-plot')).every(d => d._fullLayout)",
                           timeout=30000)
    return page, requests, errors


def not_blank(png: bytes) -> tuple[float, int]:
    """(share of non-white pixels, number of distinct colors) of a screenshot."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert('RGB')
    small = image.resize((max(1, image.width // 4), max(1, image.height // 4)))
    pixels = list(small.getdata())
    inked = sum(1 for p in pixels if sum(p) < 740) / len(pixels)
    return inked, len(set(pixels))


@pytest.mark.parametrize('name', ['penguin', 'taxi'])
def test_report_plots_render_in_chromium_without_network(reports, browser, name):
    page, requests, errors = open_page(browser, reports[name])
    try:
        plots = page.evaluate(PLOTS)
        kinds = [p['kind'] for p in plots]
        assert kinds == ['timeline', 'statistics', 'evaluation', 'history', 'durations'], kinds
        for plot in plots:
            assert plot['traces'] >= 1 and plot['values'] >= 1, plot
            assert plot['drawn'] >= plot['values'] * 0.5, plot  # the bars and markers are in the SVG
            assert plot['height'] >= 200 and plot['width'] >= 800, plot
        by_kind = {p['kind']: p for p in plots}
        assert by_kind['timeline']['values'] == 10  # one bar per execution
        features = {'penguin': 5, 'taxi': 18}[name]
        assert len(by_kind['statistics']['meta']['features']) == features
        assert by_kind['statistics']['values'] >= features * 2  # every feature, both splits
        bound = {'penguin': ('sparse_categorical_accuracy', 'lower_bound', 0.6),
                 'taxi': ('mean_absolute_error', 'upper_bound', 1.0)}[name]
        assert by_kind['evaluation']['meta']['bounds'][bound[0]] == {bound[1]: bound[2]}
        assert by_kind['evaluation']['failing'] == 0 and by_kind['evaluation']['meta']['failing'] == []
        assert by_kind['history']['meta']['versions'] and 'push' in by_kind['history']['meta']['kinds']
        assert by_kind['durations']['meta']['runs'] >= 1 and 'Trainer' in by_kind['durations']['meta']['nodes']
        for handle in page.query_selector_all('.js-plotly-plot'):
            inked, colors = not_blank(handle.screenshot())
            assert inked > 0.01 and colors > 8, (inked, colors)  # a thin-barred timeline inks ~2%
        whole = page.screenshot(full_page=True)
        assert not_blank(whole)[0] > 0.02
        assert errors == []
        assert requests == [], requests
    finally:
        page.close()


def test_anomalies_are_marked_on_the_statistics_plot(reports, browser):
    page, requests, errors = open_page(browser, reports['skewed'], plots=3)
    try:
        plots = page.evaluate(PLOTS)
        stats = [p for p in plots if p['kind'] == 'statistics']
        assert [p['kind'] for p in plots] == ['timeline', 'statistics', 'durations'], plots
        assert stats[0]['meta']['flagged'] == ['culmen_length_mm'] and stats[0]['shapes'] == 1
        title = page.locator('.js-plotly-plot .annotation-text', has_text='culmen_length_mm').first.text_content()
        assert '⚠' in title and 'Out-of-range values' in title
        assert errors == [] and requests == []
    finally:
        page.close()


def test_failing_checks_are_red_bars_against_the_baseline(tmp_path):
    """The evaluation plot of a candidate that fails its bound: the failing bars are red and say FAIL,
    the baseline's bars stand beside them and the bound is drawn."""
    import json

    from sluice.metadata import ModelBlessing, ModelEvaluation
    from sluice.ui.visuals import render

    evaluation = ModelEvaluation(uri=str(tmp_path / 'e'))
    os.makedirs(evaluation.uri)
    (tmp_path / 'e' / 'metrics.json').write_text(json.dumps({
        'candidate_model_id': 7, 'baseline_version': '3', 'push_destination': '/srv/serving', 'slices': {
            'Overall': {'candidate': {'accuracy': 0.5}, 'baseline': {'accuracy': 0.9}},
            'species=0': {'candidate': {'accuracy': 0.8}, 'baseline': {'accuracy': 0.7}}}}))
    blessing = ModelBlessing(uri=str(tmp_path / 'b'), blessed=0, current_model_id=7, baseline_model_id=3)
    os.makedirs(blessing.uri)
    (tmp_path / 'b' / 'reasons.json').write_text(json.dumps({'checks': [
        {'metric': 'accuracy', 'slice': 'Overall', 'threshold': {'lower_bound': 0.6}, 'passed': False,
         'candidate': 0.5, 'baseline': 0.9, 'reason': '0.5 < 0.6'},
        {'metric': 'accuracy', 'slice': 'species=0', 'threshold': {'lower_bound': 0.6}, 'passed': True,
         'candidate': 0.8, 'baseline': 0.7, 'reason': 'ok'}]}))
    page = render(evaluation, related=[blessing]).page_html()
    figure = json.loads(re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    candidate, baseline = figure
    assert candidate['name'] == 'candidate' and candidate['text'] == ['FAIL', '']
    assert candidate['marker']['color'] == ['#c62828', '#1565c0']
    assert baseline['name'] == 'baseline (production)' and baseline['y'] == [0.9, 0.7]
    assert '"bounds":{"accuracy":{"lower_bound":0.6}}' in page and 'lower bound 0.6' in page
    # Without its blessing, the same evaluation is drawn without bounds or verdicts.
    alone = render(evaluation).page_html()
    assert '"bounds":{}' in alone and 'FAIL' not in alone


def test_drift_and_missing_values_are_marked_on_the_statistics_plot(tmp_path):
    """Statistics drawn beside an ExampleAnomalies artifact holding a drift anomaly (as TFDV writes it):
    the drifted feature is framed in red and named, the missing-value share is in each title."""
    import json

    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    from sluice.metadata import ExampleAnomalies, ExampleStatistics
    from sluice.ui.visuals import render

    stats = ExampleStatistics(uri=str(tmp_path / 's'))
    stats.set('split_names', json.dumps(['train', 'eval']))
    for split, cash in (('train', 60), ('eval', 20)):
        data = statistics_pb2.DatasetFeatureStatisticsList()
        dataset = data.datasets.add(num_examples=100)
        fare = dataset.features.add()
        fare.path.step.append('fare')
        fare.num_stats.common_stats.num_non_missing, fare.num_stats.common_stats.num_missing = 90, 10
        fare.num_stats.histograms.add(buckets=[statistics_pb2.Histogram.Bucket(low_value=0, high_value=5,
                                                                                sample_count=50),
                                               statistics_pb2.Histogram.Bucket(low_value=5, high_value=10,
                                                                                sample_count=40)])
        payment = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
        payment.path.step.append('payment_type')
        payment.string_stats.common_stats.num_non_missing = 100
        payment.string_stats.top_values.add(value='Cash', frequency=cash)
        payment.string_stats.top_values.add(value='Credit Card', frequency=100 - cash)
        os.makedirs(tmp_path / 's' / f'Split-{split}')
        (tmp_path / 's' / f'Split-{split}' / 'FeatureStats.pb').write_bytes(data.SerializeToString())
    anomalies = ExampleAnomalies(uri=str(tmp_path / 'a'))
    anomalies.set('split_names', json.dumps(['eval']))
    found = anomalies_pb2.Anomalies()
    found.anomaly_info['payment_type'].short_description = 'High Linfty distance between current and previous'
    os.makedirs(tmp_path / 'a' / 'Split-eval')
    (tmp_path / 'a' / 'Split-eval' / 'SchemaDiff.pb').write_bytes(found.SerializeToString())

    view = render(stats, related=[anomalies])
    page = view.page_html()
    assert '"flagged":["payment_type"]' in page and page.count('"type":"rect"') == 1
    assert 'eval: drift: High Linfty distance between current and previous' in page
    assert 'missing train 10.0%, eval 10.0%' in page and 'no missing values' in page
    assert 'Anomalies or drift: payment_type (eval: drift: High Linfty distance' in str(view)
    figure = json.loads(re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    bars = {(t['name'], t['xaxis']): t for t in figure}
    # The values most frequent in any split first, each split as shares of its examples with a value.
    assert bars[('train', 'x2')]['x'] == ['Credit Card', 'Cash'] and bars[('train', 'x2')]['y'] == [0.4, 0.6]
    assert bars[('eval', 'x2')]['y'] == [0.8, 0.2]
    assert bars[('eval', 'x')]['y'] == [50 / 90, 40 / 90]  # shares of the values present
