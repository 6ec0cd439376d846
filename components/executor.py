"""The executor: the computation of a component.

An executor implements one method, ``run``, with one keyword argument per declared input, output
and parameter. Inputs and outputs arrive as Artifact objects whose ``uri`` directories exist (the
outputs empty); ``run`` writes files under the output URIs and may set output properties. It never
touches the metadata store, so it can be tested on hand-made artifacts:

    >>> out = ExampleStatistics(uri=str(tmp_path))
    >>> LineCountExecutor().run(examples=Examples(uri='data/'), statistics=out, min_lines=1)
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from typing import Any, Sequence

from sluice.components.fingerprint.stale import note_loaded
from sluice.components.libraries import beam_reaches_storage_emulator, quiet_google_warnings
from sluice.metadata.artifact import Artifact, row_counts


class Executor:
    """Base class of executors. Data work should run as a Beam pipeline from ``beam_pipeline()``.

    ``tmp_dir`` is scratch space for this execution only: under a launch it is a directory under the
    pipeline root, removed when the execution ends (success or failure); without one, a new temporary
    directory, removed when the executor is.

    ``imports`` lists the heavy libraries' modules ``run`` imports (TensorFlow, TFDV, tf.Transform,
    TFMA: ``sluice.components.libraries``). The launcher imports them before ``run``, one node at a
    time, so that two nodes running at once never meet each other's half-done import.
    """

    imports: tuple[str, ...] = ()
    # The rows its Beam pipelines read, when known (``rows_in``): a small input runs in this process
    # rather than on the warm pool (``sluice.components.beam_pool.MIN_ROWS``).
    input_rows: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._loaded_ns = time.time_ns()  # see sluice.components.fingerprint.stale.stale_code
        note_loaded(cls)

    def __init__(self, beam_pipeline_args: Sequence[str] = (), tmp_dir: str | None = None,
                 node_id: str = '') -> None:
        self.beam_pipeline_args = list(beam_pipeline_args)
        self.tmp_dir = tmp_dir or tempfile.mkdtemp(prefix='sluice-')
        if not tmp_dir:  # made here (an executor run by hand): removed with this object, or at exit
            weakref.finalize(self, shutil.rmtree, self.tmp_dir, ignore_errors=True)
        self.node_id = node_id
        quiet_google_warnings()

    def beam_options(self) -> Any:
        """Beam PipelineOptions from the pipeline's ``beam_pipeline_args``, plus Sluice's defaults:
        cloudpickle (ships user module code by value to worker processes) and a temp location in
        this execution's temporary directory (removed when the execution ends), unless given. Several
        DirectRunner worker processes (``--direct_running_mode=multi_processing``) are this process's
        warm pool's (sluice.components.beam_pool), unless ``input_rows`` is too few to share."""
        from apache_beam.options.pipeline_options import PipelineOptions

        args = list(self.beam_pipeline_args)
        if not any(a.startswith('--pickle_library') for a in args):
            args.append('--pickle_library=cloudpickle')
        if not any(a.startswith('--temp_location') for a in args):
            args.append(f'--temp_location={os.path.join(self.tmp_dir, "beam")}')
        from sluice.components import beam_pool
        beam_reaches_storage_emulator()
        return beam_pool.rewrite_options(PipelineOptions(args), self.input_rows, self.imports)

    def beam_pipeline(self) -> Any:
        """A Beam pipeline built from ``beam_options()`` (DirectRunner by default).

        Use it as a context manager; leaving the block runs the pipeline and waits for it.
        """
        import apache_beam as beam

        return beam.Pipeline(options=self.beam_options())


def rows_in(arguments: dict[str, Any]) -> int | None:
    """The rows of the Examples among an executor's ``arguments`` (their ``row_counts``, every split),
    or None when none records them."""
    counts = [row_counts(a) for a in arguments.values() if isinstance(a, Artifact)]
    counts = [c for c in counts if c]
    return sum(sum(c.values()) for c in counts) if counts else None
