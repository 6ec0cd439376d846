"""How Sluice quiets the libraries it runs: in the driver and in Beam's worker processes alike."""
from __future__ import annotations

import logging
import os
import warnings


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
