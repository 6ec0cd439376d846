"""How Sluice quiets the libraries it runs: in the driver and in Beam's worker processes alike."""
from __future__ import annotations

import gc
import importlib
import logging
import os
import threading
import warnings
from typing import Iterable


def quiet_google_warnings() -> None:
    """Silence the Python-version and grpc FutureWarnings Google client libraries print on import
    (Beam's GCP extras load them); they are about those libraries' future, not about this run."""
    warnings.filterwarnings('ignore', category=FutureWarning, module=r'google(\.|$)')
    # Beam's pure-Python CRC works; the hint to install python-snappy is not actionable here.
    logging.getLogger('apache_beam.io.tfrecordio').setLevel(logging.ERROR)


def beam_reaches_storage_emulator() -> None:
    """With ``STORAGE_EMULATOR_HOST`` set (a Cloud Storage emulator, which takes no credentials),
    Beam's gs:// reads and writes connect to it anonymously at once, as google-cloud-storage's own
    client does. Without this, Beam 2.61 first searches for Google credentials, retrying four times
    with backoff (about 25 s in each process) before it connects anonymously all the same. It holds
    for the rest of the process (Beam looks its credentials up once per process): an emulator is for
    tests and development, not a process that also reaches Google Cloud."""
    if not os.environ.get('STORAGE_EMULATOR_HOST'):
        return
    from apache_beam.internal.gcp import auth

    cache = getattr(auth, '_Credentials', None)  # Beam's process-wide credentials, looked up once
    if cache is None or not hasattr(cache, '_credentials_init'):
        return
    with cache._credentials_lock:
        if not cache._credentials_init:
            cache._credentials, cache._credentials_init = None, True


# The heavy libraries' modules: the data components' executors list them in ``imports``
# (``Executor.imports``), and the warm pool's workers import them while idle. Two threads importing
# one package with circular imports at once can get it half-initialized: Python hands a concurrent
# circular import the partial module ("cannot import name 'AnalyzeAndTransformDataset' from partially
# initialized module 'tensorflow_transform.beam.impl'", seen in CI). Imported through
# ``import_first``, one thread at a time, they are whole before any node uses them.
TF, TFXIO, TFDV, TFT = 'tensorflow', 'tfx_bsl.public.tfxio', 'tensorflow_data_validation', 'tensorflow_transform.beam'
_IMPORTING = threading.Lock()
_IMPORTED: set[str] = set()  # imported whole under the lock (sys.modules also lists half-imported ones)


def import_first(modules: Iterable[str]) -> None:
    """Import ``modules`` (in order) one thread of this process at a time. One that fails to import is
    left to the code that uses it, which says what is missing as it always did.

    Python's cyclic garbage collector stays out of the way: paused while they import, then told to
    leave alone for good what the process holds by then (``gc.freeze``), as the command line does after
    its own imports. These libraries make hundreds of thousands of objects that live as long as the
    process, and every full collection walked them all again: the taxi example's `sluice run` spent
    4.4 s in the collector, 2.2 s with this (``bench/README.md``, "The cyclic garbage collector"). The price: cyclic garbage that exists at that moment is never collected (memory freed
    by reference counting is freed as before), once per library per process.
    """
    for name in modules:
        if name in _IMPORTED:
            continue
        with _IMPORTING:
            if name in _IMPORTED:
                continue
            collecting = gc.isenabled()
            gc.disable()
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - reported where the module is used
                logging.getLogger(__name__).debug('%s not imported ahead: %s', name, e)
            finally:
                gc.freeze()
                if collecting:
                    gc.enable()
            _IMPORTED.add(name)
