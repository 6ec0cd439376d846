"""A warm pool of Beam SDK worker processes, shared by every Beam pipeline this process runs.

With ``--direct_running_mode=multi_processing --direct_num_workers=N``, Beam's DirectRunner starts N
new worker processes for every Beam pipeline, and each imports TensorFlow, tfx_bsl, TFDV and
tf.Transform again: about 3 s to start and 2.6 s to import per pipeline on a small machine, several
times per node (``bench/README.md``). Sluice runs those pipelines on the same runner (Beam's
FnApiRunner, which DirectRunner uses) with an EXTERNAL environment instead: N worker processes
started once, the first time a pipeline asks for them, importing those libraries while idle,
and kept for every later pipeline of the process: every node of a run, every run of a
``sluice watch``. Each process hosts one SDK harness per pipeline (a thread, as Beam's own worker
pool does in its thread mode); the pipeline, its options and its functions reach the worker as they
would reach a fresh one.

The workers are forked from one process, the zygote, which has imported Beam and, once asked, the
heavy libraries: a worker starts in milliseconds, and a run pays for one import of
TensorFlow and its libraries instead of one per worker (on a machine of few cores, those imports
were most of what several workers cost over one). The first workers are forked before that import
(CsvExampleGen's pipelines need none of it). The zygote imports them when the first node that lists
them (``Executor.imports``) imports them in this process, on another core; that node's pipelines
are given workers forked after the import, and a worker forked before is retired.

What must never happen is a worker running a user's code as it was before an edit. Code shipped
with the pipeline (pickled by value) is always the new one; a module a worker imported by name stays
in that process. So before taking a pipeline, a worker checks every module it holds that is not
part of Python or an installed library: if one's file changed since it could have been imported, or
is gone, the worker is replaced by a fresh process (which costs the start-up this pool saves, once).

A pipeline that reads fewer than MIN_ROWS rows runs in this process instead: for it, the pool's
start and the trips between processes cost more than sharing the work saves.

The workers and the zygote end with this process: when it exits, and, if it is killed, as soon as
they see their standard input closed (their side: ``sluice.components.beam_pool_worker``). In a
worker, as in this process, the libraries a node lists are imported one thread at a time before its
pipeline runs: Python hands a thread that meets another's import of a package with circular imports
the half-initialized module ("cannot import name 'AnalyzeAndTransformDataset' from partially
initialized module", seen in CI when two nodes imported tf.Transform at once). Should the zygote
fail, workers are started as processes of their own. ``SLUICE_BEAM_WORKER_POOL=0`` turns the pool
off (Beam's own worker processes per pipeline), for comparison.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any, Sequence

from sluice.components.beam_pool_processes import IMPORTS_PARAM, POOL_URL_ENV, STALE, _Forked, _Worker, _Zygote

log = logging.getLogger(__name__)

RUNNER = f'{__name__}.WarmPoolRunner'
OFF_ENV = 'SLUICE_BEAM_WORKER_POOL'
# Fewer rows than this in a Beam pipeline's input, and it runs in this process even when several
# worker processes are asked for: starting the pool (each worker importing TensorFlow) and moving
# the rows between processes cost more than sharing the work saves. On the 2-core machine, taxi
# data components with two workers took 1.14x one worker's time at 15,000 rows, 1.24x at 45,000 and
# 0.86x at 150,000 (bench/beam_workers.py, bench/README.md). SLUICE_POOL_MIN_ROWS sets it (0: always).
MIN_ROWS_ENV, MIN_ROWS = 'SLUICE_POOL_MIN_ROWS', 100_000


def rewrite_options(options: Any, rows: int | None = None, imports: Sequence[str] = ()) -> Any:
    """``options`` (Beam PipelineOptions) to run on the warm pool when they ask DirectRunner for
    several worker processes and the pool is not turned off; in this process instead when the
    pipeline reads fewer than MIN_ROWS ``rows`` (None: not known, the pool); otherwise unchanged.
    ``imports``: the heavy libraries the node's executor lists, which its workers import first."""
    from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, StandardOptions

    standard, direct = options.view_as(StandardOptions), options.view_as(DirectOptions)
    if os.environ.get(OFF_ENV, '1') == '0' or direct.direct_running_mode != 'multi_processing':
        return options
    if standard.runner not in (None, 'DirectRunner', 'direct', 'Direct'):
        return options
    least = int(os.environ.get(MIN_ROWS_ENV) or MIN_ROWS)
    if rows is not None and rows < least:
        log.info('A Beam pipeline of %d rows runs in this process rather than on the worker processes asked '
                 'for (it has fewer than %d rows: %s)', rows, least, MIN_ROWS_ENV)
        direct.direct_running_mode, direct.direct_num_workers = 'in_memory', 1
        return options
    standard.runner = RUNNER
    if imports:
        options.view_as(DebugOptions).add_experiment(f'{IMPORTS_PARAM}={",".join(imports)}')
    return options


class _QuietModeWarning(logging.Filter):
    """FnApiRunner warns that several workers 'in memory' run in one process; on the pool they do not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('If direct_num_workers is not equal to 1')


def _runner_class() -> type:
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner as base

    class Runner(base):  # type: ignore[misc, valid-type]
        def run_pipeline(self, pipeline: Any, options: Any) -> Any:
            from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, SetupOptions, WorkerOptions
            from apache_beam.transforms import environments

            direct = options.view_as(DirectOptions)
            workers = direct.direct_num_workers or os.cpu_count() or 1
            experiments = options.view_as(DebugOptions).experiments or []

            def experiment(name: str, default: str) -> str:
                return next((e.split('=', 1)[1] for e in experiments if e.startswith(name + '=')), default)

            imports = experiment(IMPORTS_PARAM, '')
            url = os.environ.get(POOL_URL_ENV) or worker_pool(workers, warm=bool(imports)).url
            self._default_environment = environments.ExternalEnvironment(url, params={
                'pickle_library': options.view_as(SetupOptions).pickle_library or 'default',
                'state_cache_bytes': str((options.view_as(WorkerOptions).max_cache_memory_usage_mb or 0) << 20),
                'data_buffer_time_limit_ms': experiment('data_buffer_time_limit_ms', '0'),
                IMPORTS_PARAM: imports})
            direct.direct_running_mode = 'in_memory'  # keeps the environment above (see _QuietModeWarning)
            try:
                return super().run_pipeline(pipeline, options)
            finally:
                direct.direct_running_mode = 'multi_processing'

    Runner.__name__ = Runner.__qualname__ = 'WarmPoolRunner'
    logging.getLogger(base.__module__).addFilter(_QuietModeWarning())
    _balance_partitions()
    return Runner


def _balance_partitions() -> None:
    """The runner hands a stage's input to the workers in the chunks the earlier stage's workers sent
    it (up to 10 MB each): Beam deals them out in turn, whatever their sizes, so that one worker could
    get most of the bytes while the other waited. At 10x taxi rows, Transform's last stage got 21.2 MB
    and 6.2 MB in about one run of two, 2.5 s instead of 1.7-1.9 s. Here each chunk, largest first, goes
    to the worker with the fewest bytes so far (the order of a PCollection's elements is no promise).
    Beam's partition stands where its buffer is not as expected, and where it splits the elements
    themselves (fewer chunks than workers)."""
    from apache_beam.runners.portability.fn_api_runner import execution

    buffer = execution.ListBuffer
    original = buffer.partition
    if getattr(original, 'by_bytes', False):
        return

    def partition(self: Any, n: int) -> list[list[bytes]]:
        chunks = getattr(self, '_inputs', None)
        if n < 2 or not isinstance(chunks, list) or len(chunks) < n or self.cleared:
            return original(self, n)
        parts: list[list[bytes]] = [[] for _ in range(n)]
        sizes = [0] * n
        for chunk in sorted(chunks, key=len, reverse=True):
            fewest = sizes.index(min(sizes))
            parts[fewest].append(chunk)
            sizes[fewest] += len(chunk)
        return parts

    partition.by_bytes = True  # type: ignore[attr-defined]
    buffer.partition = partition


def __getattr__(name: str) -> Any:  # Beam's --runner=sluice.components.beam_pool.WarmPoolRunner
    if name == 'WarmPoolRunner':
        cls = _runner_class()
        globals()['WarmPoolRunner'] = cls
        return cls
    raise AttributeError(name)


# -- the driver's side: the pool ------------------------------------------------------------------
class WorkerPool:
    """Worker processes and the front that Beam's EXTERNAL environment talks to (Beam's worker-pool
    protocol, on loopback): each StartWorker goes to the next process in turn."""

    def __init__(self) -> None:
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc
        from concurrent import futures

        self._lock = threading.Lock()
        self._swapping = threading.Lock()  # one worker replaced at a time (a warm fork can wait for the import)
        self.workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # replaced, ending once idle
        self.zygote: _Zygote | None = None
        self.started = 0  # worker processes started, replacements included
        self.replaced: list[str] = []  # why each replaced worker was replaced
        self.served = 0  # SDK harnesses started (one per worker per Beam pipeline)
        self._next = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix='sluice-pool'))
        port = self._server.add_insecure_port('127.0.0.1:0')
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(_Front(self), self._server)
        self._server.start()
        self.url = f'127.0.0.1:{port}'

    def grow(self, n: int, warm: bool = False) -> None:
        """At least ``n`` worker processes, the missing ones started at once; ``warm``: with the heavy
        libraries imported (forked after the zygote's import)."""
        with self._swapping:
            missing = n - len(self.workers)
            if missing > 0:
                new = self._start(missing, warm)
                with self._lock:
                    self.workers += new

    def _start(self, n: int, warm: bool) -> list[_Worker]:
        """``n`` workers forked by the zygote (started first, or again when it refused as stale or
        died), else, should it fail twice, started as processes of their own."""
        self.started += n
        for attempt in range(2):
            try:
                if self.zygote is None:
                    self.zygote = _early_zygote() or _Zygote(max(n, len(self.workers)))
                return _Worker.fork_many(self.zygote, n, warm)
            except (OSError, RuntimeError) as e:
                log.info('Beam worker pool: the zygote could not fork a worker (%s)%s', e,
                         '; starting another' if attempt == 0 else '; workers start as processes of their own')
                if self.zygote is not None:
                    self.zygote.stop()
                    self.zygote = None
        return _Worker.spawn_many(n)

    def start_worker(self, request: Any) -> Any:
        from apache_beam.portability.api import beam_fn_api_pb2

        with self._lock:
            index = self._next % len(self.workers)
            self._next += 1
            worker = self.workers[index]
        if request.params.get(IMPORTS_PARAM) and worker.cold:
            worker = self._replace(index, worker, 'forked before the heavy imports, which this pipeline needs',
                                   quiet=True)
        for tries in range(3):
            try:
                response = worker.start(request)
            except Exception as e:  # noqa: BLE001 - the process died (out of memory, killed): replace it
                response = beam_fn_api_pb2.StartWorkerResponse(error=f'{STALE}worker process gone ({e})')
            if not response.error.startswith(STALE) or tries == 2:
                break
            worker = self._replace(index, worker, response.error[len(STALE):])
        if not response.error:
            with self._lock:
                self.served += 1
        return response

    def _replace(self, index: int, worker: _Worker, why: str, quiet: bool = False) -> _Worker:
        """A fresh worker in ``worker``'s place (unless another pipeline replaced it meanwhile); the old
        one ends once the pipelines it is running (another node's) have ended."""
        with self._swapping:
            if self.workers[index] is worker:
                if not quiet:
                    self.replaced.append(why)
                    log.info('Beam worker pool: replacing worker pid %s: %s', worker.process.pid, why)
                new = self._start(1, warm=quiet or not worker.cold)[0]
                worker.retire()
                with self._lock:
                    self._retired.append(worker)
                    self.workers[index] = new
                    self._reap()
            return self.workers[index]

    def _reap(self) -> None:
        """Let go of retired workers that have ended."""
        for worker in [w for w in self._retired if w.process.poll() is not None]:
            worker.stop()
            self._retired.remove(worker)

    def close(self) -> None:
        with self._lock:
            workers, self.workers, self._retired = self.workers + self._retired, [], []
        for worker in workers:
            worker.stop()
        if self.zygote is not None:
            self.zygote.stop()
        self._server.stop(grace=None)


class _Front:
    """Beam's BeamFnExternalWorkerPool service, in front of the pool's processes."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def StartWorker(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
        return self.pool.start_worker(request)

    def StopWorker(self, request: Any, context: Any) -> Any:  # noqa: N802
        from apache_beam.portability.api import beam_fn_api_pb2
        return beam_fn_api_pb2.StopWorkerResponse()  # a harness ends when its pipeline's control stream does


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()
_EARLY: _Zygote | None = None  # started by ``prestart``, before the pool


def prestart(beam_pipeline_args: Sequence[str], rows: int | None = None) -> None:
    """A node is about to run its executor with these Beam arguments: when they ask DirectRunner for
    several worker processes (and its input is not known to be under MIN_ROWS ``rows``), the zygote
    starts now, so that it has imported Beam by the time the first pipeline asks for workers (about
    a second on a small machine, spent on another core while the executor imports Beam itself)."""
    global _EARLY
    workers = _wants_pool(beam_pipeline_args, rows)
    if workers is None:
        return
    with _POOL_LOCK:
        if _POOL is None and _EARLY is None:
            _EARLY = _Zygote(workers)
            atexit.register(shutdown)


def _wants_pool(beam_pipeline_args: Sequence[str], rows: int | None) -> int | None:
    """The worker processes these arguments ask for, unless the input is known to be under MIN_ROWS."""
    workers = _asked_workers(beam_pipeline_args)
    if workers is None or rows is not None and rows < int(os.environ.get(MIN_ROWS_ENV) or MIN_ROWS):
        return None
    return workers


def _early_zygote() -> _Zygote | None:
    global _EARLY
    with _POOL_LOCK:
        zygote, _EARLY = _EARLY, None
    return zygote


def _asked_workers(args: Sequence[str]) -> int | None:
    """The worker processes ``args`` ask DirectRunner for (``--direct_running_mode=multi_processing``,
    ``--direct_num_workers``), read without Beam; None when they ask for none or the pool is off."""
    if os.environ.get(OFF_ENV, '1') == '0':
        return None
    given: dict[str, str] = {}
    args = list(args)
    for i, arg in enumerate(args):
        if arg.startswith('--'):
            name, eq, value = arg[2:].partition('=')
            if not eq and i + 1 < len(args) and not args[i + 1].startswith('--'):
                value = args[i + 1]
            given[name] = value
    if given.get('direct_running_mode') != 'multi_processing' or \
            given.get('runner') not in (None, 'DirectRunner', 'direct', 'Direct'):
        return None
    try:
        return int(given.get('direct_num_workers') or 0) or os.cpu_count() or 1
    except ValueError:
        return None


def worker_pool(workers: int, warm: bool = False) -> WorkerPool:
    """This process's pool, started on first use, with at least ``workers`` processes (``warm``: the
    missing ones forked with the heavy libraries imported)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool()
            atexit.register(shutdown)
        pool = _POOL
    pool.grow(workers, warm)
    return pool


def warm_up() -> None:
    """A node about to import the heavy libraries in this process: this process's zygote, if it has
    one, imports them meanwhile (on another core), for the workers of that node's pipelines. Not
    earlier: during the pool's first pipelines (CsvExampleGen's) the cores are busy already."""
    pool = _POOL  # not a zygote started early whose pool never came (an input small enough for this process)
    zygote = pool.zygote if pool is not None else None
    if zygote is not None:
        try:
            zygote.import_libraries()
        except OSError:  # gone: the next fork says so and starts another
            pass


def fork_executor(payload: str, result: str, beam_pipeline_args: Sequence[str],
                  rows: int | None = None) -> _Forked | None:
    """A node's executor in a process forked from the pool's zygote (``_Zygote.run_executor``), when
    these Beam arguments ask for worker processes for ``rows`` (the pool started if need be, warm):
    it starts with the heavy libraries imported, and its Beam pipelines run on this process's pool.
    None otherwise, or when the zygote cannot fork it (then a process of its own runs it)."""
    workers = _wants_pool(beam_pipeline_args, rows)
    if workers is None:
        return None
    pool = worker_pool(workers, warm=True)
    try:
        if pool.zygote is None:
            raise RuntimeError('the pool has no zygote')
        return pool.zygote.run_executor(payload, result, pool.url)
    except (OSError, RuntimeError) as e:
        log.info('Beam worker pool: the zygote could not fork an executor (%s); it starts as a process of its own', e)
        return None


def current_pool() -> WorkerPool | None:
    return _POOL


def shutdown() -> None:
    """Stop this process's pool (it is started again when a pipeline needs it)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()
    early = _early_zygote()
    if early is not None:
        early.stop()

