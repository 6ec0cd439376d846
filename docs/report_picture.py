"""Make docs/report.png, the picture of a run report in the README, with Sluice's own commands.

    .venv/bin/python docs/report_picture.py [OUT.png]   # about 4 minutes; needs /usr/bin/chromium

In a temporary directory: the penguin pipeline is run with a short training (pushed as the first
version), with a longer one (better: pushed), then ``sluice rollback`` goes back to the first model,
and a run with no training at all is measured against it and refused. ``sluice report`` writes the
report of that last run, and headless Chromium (the one the tests use, through Playwright) takes
the picture: the page as it is, with its tables left out to keep the picture short.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PENGUIN = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'penguin_pipeline.py')
CHROMIUM = os.environ.get('SLUICE_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']


def main(out: str) -> None:
    from sluice import LocalDagRunner, load_pipeline
    from sluice.ui.cli import main as sluice

    work = tempfile.mkdtemp(prefix='sluice-picture-')
    root = os.path.join(work, 'runs', 'penguin')
    url = f'sqlite:///{root}/metadata.db'
    result = None
    for steps in (20, 100, None, 0):
        if steps is None:
            time.sleep(20)  # apart on the history's time axis
            assert sluice(['rollback', os.path.join(root, 'serving'), '--to', first, '--reason',
                           'the longer-trained model misbehaves on new islands', '--metadata', url]) == 0
            continue
        result = LocalDagRunner().run(load_pipeline(PENGUIN, root=root, train_steps=steps))
        assert result.state == 'COMPLETE', result.node_states()
        if steps == 20:
            first = result['Pusher'].outputs['pushed_model'].get('pushed_version')
    page_path = os.path.join(work, 'report.html')
    assert sluice(['report', result.run_id, '-o', page_path, '--metadata', url]) == 0

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={'width': 1200, 'height': 800})
        page.route('**/*', lambda route: route.continue_() if route.request.url.startswith('file:')
                   else route.abort())
        page.goto(f'file://{page_path}')
        page.add_style_tag(content='.sluice table, .sluice code, body > p {display:none}')
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                               ".every(d => d._fullLayout)")
        page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                      ".forEach(d => window.Plotly.Plots.resize(d))")
        page.wait_for_timeout(500)
        page.screenshot(path=out, full_page=True)
        browser.close()
    print(f'{out} (from the report of run {result.run_id} in {work})')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, 'docs', 'report.png'))
