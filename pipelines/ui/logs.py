"""What ``sluice run`` and ``sluice resume`` print, and where everything else goes.

Three levels, chosen on the command line:

- ``--quiet``: only the outcome line (``Run ... COMPLETE in 52.1s: ...``); a failed run also prints each
  failed node's error and the command that resumes it.
- default: progress (one line per node) and the outcome (blessings, pushes, errors).
- ``--verbose``: also the libraries' messages (TensorFlow, absl, Beam, TFMA, tf2onnx), as they come.

Whatever is not printed is kept in the run's log, ``<pipeline_root>/.sluice-logs/<run_id>.log`` (a
resume appends to the same file): Python ``logging`` records of every library (level INFO and up, with
time, level and logger name), ``warnings`` (through ``logging.captureWarnings``), what component
executors print while a node runs, TensorFlow's native messages (written straight to file descriptor 2,
e.g. "Unable to register cuDNN factory"), and the "Exception ignored in ..." lines that objects being
finalized write at interpreter exit. The file is started in the temporary directory and moved under
the pipeline root as soon as the run is known.

The native and exit-time parts need the whole process, so they apply when ``sluice`` runs as a command
(``main()`` without arguments); ``main([...])`` called from Python only routes ``logging``, executor
output and the progress lines. Nothing here imports TensorFlow or Beam.
"""
from __future__ import annotations

import atexit
import io
import logging
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any, TextIO

from sluice.metadata import storage

QUIET, NORMAL, VERBOSE = -1, 0, 1
LOG_DIR = '.sluice-logs'
FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'

log = logging.getLogger('sluice')
_active: RunLog | None = None


def log_path(pipeline_root: str, run_id: str) -> str:
    """Where the log of a run is kept."""
    return os.path.join(storage.local_dir(storage.normalize(pipeline_root)), LOG_DIR, f'{run_id}.log')


def active() -> RunLog | None:
    """The log set up by the command line, if any (None in notebooks and when a runner is used from Python)."""
    return _active


def level() -> int:
    return _active.level if _active is not None else NORMAL


def console() -> TextIO:
    """Where progress and outcomes go: the terminal (standard output), even while a node's output goes
    to the log."""
    return _active.console_out if _active is not None else sys.stdout


class _Tee(io.TextIOBase):
    """A text stream writing to several streams (the log and, with --verbose, the terminal)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            try:
                stream.write(text)
            except (OSError, ValueError):  # a closed stream at exit
                pass
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


class RunLog:
    """The logging set-up of one ``sluice run`` / ``sluice resume``; a context manager.

    ``process=True`` (the ``sluice`` command itself) also sends file descriptor 2 to the log (native
    libraries write there directly) and keeps the exit of the interpreter quiet.
    """

    def __init__(self, level: int = NORMAL, process: bool = False) -> None:
        self.level, self.process = level, process
        self.path = ''
        self.attached = False
        self.console_out: TextIO = sys.stdout
        self.console_err: TextIO = sys.stderr
        self._stream: TextIO | None = None
        self._handler: logging.Handler | None = None
        self._console_handler: logging.Handler | None = None
        self._saved: dict[str, Any] = {}
        self._in_node = False
        self._nodes = 0  # nodes running (begun, not ended)
        self._node_saved: tuple[Any, Any] = (None, None)

    # -- set up and tear down ---------------------------------------------------------------------
    def __enter__(self) -> RunLog:
        global _active
        fd, self.path = tempfile.mkstemp(prefix='sluice-', suffix='.log')
        self._stream = open(fd, 'a', buffering=1, encoding='utf-8', errors='replace')
        self.console_out, self.console_err = sys.stdout, sys.stderr
        root = logging.getLogger()
        self._saved = {'root_level': root.level, 'stdout': sys.stdout, 'stderr': sys.stderr}
        self._handler = logging.StreamHandler(self._stream)
        self._handler.setFormatter(logging.Formatter(FORMAT))
        self._handler.setLevel(logging.INFO)
        root.addHandler(self._handler)
        if self.level >= VERBOSE:
            self._console_handler = logging.StreamHandler(self.console_err)
            self._console_handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
            root.addHandler(self._console_handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        if self.process:
            self._take_process()
        if self.level <= QUIET:  # nothing but the outcome line reaches the terminal
            sys.stdout = self._stream
        _active = self
        return self

    def _take_process(self) -> None:
        """Send fd 2 (native libraries' messages) to the log, keep Python's stderr on the terminal, route
        warnings and unraisable exceptions to ``logging``, and keep the interpreter's exit quiet."""
        logging.captureWarnings(True)
        sys.unraisablehook = _log_unraisable
        sys.stderr.flush()
        if self.level < VERBOSE:
            terminal = os.dup(2)
            self.console_err = open(terminal, 'w', buffering=1, encoding=getattr(sys.stderr, 'encoding', None)
                                    or 'utf-8', errors='backslashreplace')
            sys.stderr = self.console_err
            os.dup2(self._stream.fileno(), 2)
        atexit.register(self._quiet_exit)

    def _quiet_exit(self) -> None:
        """At exit (after ``main`` returned): what objects print while they are finalized goes to the log."""
        if self.level >= VERBOSE or self._stream is None or self._stream.closed:
            return
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        sys.stderr = self._stream

    def __exit__(self, *exc: object) -> None:
        global _active
        self.end_node(all_nodes=True)
        root = logging.getLogger()
        if self._console_handler is not None:
            root.removeHandler(self._console_handler)
        sys.stdout = self._saved['stdout']
        if self.process:
            # The process ends next: fd 2, the file handler and the file stay until then (see _quiet_exit),
            # so that what libraries log or print while the interpreter shuts down lands in the log.
            sys.stderr = self.console_err
        else:
            if self._handler is not None:
                root.removeHandler(self._handler)
            root.setLevel(self._saved['root_level'])
            sys.stderr = self._saved['stderr']
            if self._stream is not None:
                self._stream.close()
        if not self.attached and os.path.exists(self.path):
            os.unlink(self.path)  # no run started: nothing worth keeping
        _active = None

    # -- where the log lives ------------------------------------------------------------------------
    def attach(self, pipeline_root: str, run_id: str) -> str:
        """Move the log to ``<pipeline_root>/.sluice-logs/<run_id>.log`` (appending to a resumed run's log)."""
        if self.attached or self._stream is None:
            return self.path
        target = log_path(pipeline_root, run_id)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self._stream.flush()
            with open(self.path, 'rb') as src, open(target, 'ab') as dst:
                shutil.copyfileobj(src, dst)
            stream = open(target, 'a', buffering=1, encoding='utf-8', errors='replace')
        except OSError as e:  # keep the temporary log; say where it is
            log.warning('cannot keep the log under %s (%s); it stays at %s', pipeline_root, e, self.path)
            return self.path
        old, old_path = self._stream, self.path
        self._stream, self.path, self.attached = stream, target, True
        if self._handler is not None:
            self._handler.setStream(stream)
        if self.process and self.level < VERBOSE:
            os.dup2(stream.fileno(), 2)
        if self._in_node:
            self._node_saved = tuple(stream if s is old else s for s in self._node_saved)
            self._redirect()
        else:
            if sys.stdout is old:
                sys.stdout = stream
            if sys.stderr is old:
                sys.stderr = stream
        old.close()
        os.unlink(old_path)
        return target

    # -- a node's own output ----------------------------------------------------------------------
    def begin_node(self) -> None:
        """While a node runs, what its executor prints goes to the log (and, with --verbose, also to
        the terminal); while several run, until the last of them ends."""
        self._nodes += 1
        if self._in_node or self._stream is None:
            return
        self._in_node = True
        self._node_saved = (sys.stdout, sys.stderr)
        self._redirect()

    def _redirect(self) -> None:
        if self.level >= VERBOSE:
            sys.stdout, sys.stderr = _Tee(self._stream, self.console_out), _Tee(self._stream, self.console_err)
        else:
            sys.stdout = sys.stderr = self._stream

    def end_node(self, all_nodes: bool = False) -> None:
        self._nodes = 0 if all_nodes else max(0, self._nodes - 1)
        if not self._in_node or self._nodes:
            return
        self._in_node = False
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = self._node_saved


def _log_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: an exception in a finalizer (e.g. TensorFlow's ``AtomicFunction.__del__``
    at exit) is an INFO record in the log, not text on the terminal."""
    try:
        text = ''.join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                                  unraisable.exc_traceback)).rstrip()
        where = f'{unraisable.err_msg or "Exception ignored in"}: {unraisable.object!r}'
    except Exception:  # noqa: BLE001 - never raise from the hook, least of all at exit
        return
    try:
        logging.getLogger('sluice.exit').info('%s\n%s', where, text)
    except Exception:  # noqa: BLE001 - logging already torn down: the log file is sys.stderr by then
        try:
            sys.stderr.write(f'{where}\n{text}\n')
        except Exception:  # noqa: BLE001
            pass


def setup(verbosity: int, command: str, process: bool) -> Any:
    """The logging set-up of a ``sluice`` command: a ``RunLog`` for ``run`` and ``resume``, else only
    the console level of ``logging`` (WARNING, or INFO with --verbose)."""
    if command in ('run', 'resume'):
        return RunLog(verbosity, process)
    return _Plain(verbosity)


class _Plain:
    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity
        self.handler: logging.Handler | None = None

    def __enter__(self) -> _Plain:
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
        self.handler.setLevel(logging.INFO if self.verbosity >= VERBOSE else
                              logging.ERROR if self.verbosity <= QUIET else logging.WARNING)
        logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.handler)
