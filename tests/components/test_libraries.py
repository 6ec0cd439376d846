"""Two nodes running at once import the heavy libraries one at a time (sluice.components.libraries)."""
from __future__ import annotations

import importlib
import sys
import threading
import time

import pytest

from sluice.components import libraries

# A module whose import takes a while and records when it ran. Two of them imported by two threads
# at once overlap: with a package whose modules import each other (tf.Transform's), Python then
# hands one thread the other's half-initialized module ("cannot import name 'AnalyzeAndTransformDataset'
# from partially initialized module 'tensorflow_transform.beam.impl'", seen in CI).
SLOW = 'import time\nstart = time.monotonic()\ntime.sleep(0.3)\nend = time.monotonic()\n'


def import_at_once(importer, tmp_path, monkeypatch, prefix):
    """Two slow modules, imported by ``importer`` in two threads started 0.1 s apart: their
    (start, end) times, in the order the threads started."""
    for i in (1, 2):
        (tmp_path / f'{prefix}{i}.py').write_text(SLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    threads = [threading.Thread(target=importer, args=(f'{prefix}{i}',)) for i in (1, 2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(10)
    return [(sys.modules[f'{prefix}{i}'].start, sys.modules[f'{prefix}{i}'].end) for i in (1, 2)]


def test_two_nodes_imports_never_overlap(tmp_path, monkeypatch):
    (s1, e1), (s2, e2) = import_at_once(importlib.import_module, tmp_path, monkeypatch, 'slow_bare')
    assert s2 < e1  # bare imports in two threads overlap: the hazard
    (s1, e1), (s2, e2) = import_at_once(lambda name: libraries.import_first([name]), tmp_path, monkeypatch,
                                        'slow_guarded')
    assert s2 >= e1  # through import_first, the second waits for the first


def test_a_module_that_fails_to_import_is_left_to_its_user(tmp_path, monkeypatch):
    (tmp_path / 'broken_heavy.py').write_text('raise ImportError("no such library here")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    libraries.import_first(['broken_heavy', 'json'])  # no error here; 'json' still imported
    assert 'json' in sys.modules
    with pytest.raises(ImportError, match='no such library here'):
        importlib.import_module('broken_heavy')


def test_the_collector_is_paused_while_they_import_and_then_leaves_what_the_process_holds(tmp_path, monkeypatch):
    """The heavy libraries' objects live as long as the process: no collection runs during their
    import, and what the process holds after it is frozen, out of every later collection; the
    collector is left on or off as it was, a failed import included."""
    import gc

    (tmp_path / 'heavy_made.py').write_text('import gc\nCOLLECTING = gc.isenabled()\nOBJECTS = [[i] for i in range(1000)]\n')
    (tmp_path / 'heavy_broken.py').write_text('raise ImportError("not here")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    libraries.import_first(['heavy_made'])
    assert sys.modules['heavy_made'].COLLECTING is False
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + 1000  # the module's lists among them
    gc.disable()
    try:
        libraries.import_first(['heavy_broken'])
        assert not gc.isenabled()  # the caller's choice stands
    finally:
        gc.enable()


def test_the_built_in_executors_that_run_at_once_declare_what_they_import():
    from sluice.components.statistics_gen import StatisticsGenExecutor
    from sluice.components.transform import TransformExecutor

    assert libraries.TFDV in StatisticsGenExecutor.imports and libraries.TFT in TransformExecutor.imports
