"""How Sluice quiets the libraries it runs: in the driver and in Beam's worker processes alike."""
from __future__ import annotations

import logging
import warnings


def quiet_google_warnings() -> None:
    """Silence the Python-version and grpc FutureWarnings Google client libraries print on import
    (Beam's GCP extras load them); they are about those libraries' future, not about this run."""
    warnings.filterwarnings('ignore', category=FutureWarning, module=r'google(\.|$)')
    # Beam's pure-Python CRC works; the hint to install python-snappy is not actionable here.
    logging.getLogger('apache_beam.io.tfrecordio').setLevel(logging.ERROR)
