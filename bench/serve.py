"""Benchmark (issue #24): ``sluice serve`` against its floor, and swaps under load, in one sitting.

    .venv/bin/python bench/serve.py [--quick] [--models penguin taxi] [--rounds 3] [--seconds 3]
                                    [--clients 1] [--swaps 20] [--poll 2] [--runs DIR] [--json PATH]

Models: the last two Model artifacts each example pipeline trained under ``--runs`` (default
bench/out/serve; the pipeline is run there first when fewer, the second time with ``--no-cache
Trainer``), pushed to the bench's own destinations with ``sluice.components.production.changes``.

1. Steady load: ``sluice serve DEST`` and the floor (bench/serve_floor.py: FastAPI, uvicorn and
   onnxruntime and nothing else on the same model.onnx, Sluice's ``make_session``, warmed up on the
   same samples; ``--floor inline`` runs its model on the event loop, not in the thread pool), each
   a process, both checked to answer the samples as recorded. Per round, each cell (concurrency 1,
   8, 32 x requests of 1 and 64 of the samples' rows) runs on each side, the first side alternating
   between rounds: ``--warmup`` s, then ``--seconds`` s measured (at most ``--cap`` requests per
   client process): requests/s, p50 and p99 latency as the client saw it, the server's CPU ms per
   request (/proc); ratios sluice / floor per round. Goals: throughput >= 0.9x, p99 <= 1.2x.
2. Swaps under load: ``sluice serve --poll P`` on a fresh destination under ``--swap-load``
   concurrent requests; after ``--swap-steady`` s, ``--swaps`` changes (push as the Pusher writes
   one, rollback, promote, in turn; made here, on the same cores), each ``--gap`` s plus a random
   part of P after the server logged its swap to the one before. Counted: failed requests; answers
   by a version never in production, before its push record was written, or by an older version
   after a newer one had answered (goal: none); p99 from the first record to the last change's first
   answer + 0.5 s vs the steady state before (goal <= 2x); per change, the seconds from its push
   record being written (mtime) to the first answer by the new version, and the server's own load
   and warm-up seconds (the rest is waiting for the next poll).

The client: ``--clients`` processes of this script (default 1; the connections split between them),
each an asyncio loop speaking HTTP/1.1 itself over one keep-alive connection per concurrent request
(closed loop; every answer parsed and checked: status 200, one prediction per row, model_version).
Client and servers share the machine's cores (2 here); the client's CPU seconds per wall second are
printed, so that a saturated client would show. All traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import OUT, REPO, machine, median, ratios, spread, tree_sample, turns  # noqa: E402

FLOOR = os.path.join(HERE, 'serve_floor.py')
EXAMPLES = {e: os.path.join(REPO, 'pipelines', 'examples', e, f'{e}_pipeline.py') for e in ('penguin', 'taxi')}
GOAL_RPS, GOAL_P99, GOAL_SWAP_P99 = 0.9, 1.2, 2.0
KINDS = ('push', 'rollback', 'promote')
CLIENT_START = 0.6  # seconds for the client processes to start and connect before the load begins
FULL = {'rounds': 3, 'seconds': 3.0, 'warmup': 0.5, 'swaps': 20, 'swap_steady': 5.0}
QUICK = {'rounds': 2, 'seconds': 1.5, 'warmup': 0.3, 'swaps': 6, 'swap_steady': 3.0}
COLUMN = 29


def log(text: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {text}', file=sys.stderr, flush=True)


# -- the client (a process of its own: python bench/serve.py --client SPEC) ----------------------------
async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b'\r\n\r\n')
    at = head.lower().find(b'\r\ncontent-length:')
    if at < 0:
        raise ConnectionError(f'an answer without content-length: {head[:200]!r}')
    length = int(head[at + 17:head.index(b'\r\n', at + 2)])
    return int(head[9:12]), await reader.readexactly(length)


def _judge(status: int, body: bytes, rows: int) -> tuple[str | None, str | None]:
    """(model_version, None) for a good answer, else (None, what was wrong)."""
    if status != 200:
        return None, f'HTTP {status}: {body[:300].decode("utf-8", "replace")}'
    answer = json.loads(body)
    predictions = answer.get('predictions')
    if not isinstance(predictions, list) or len(predictions) != rows:
        return None, f'{len(predictions) if isinstance(predictions, list) else "no"} predictions for {rows} rows'
    return str(answer.get('model_version')), None


async def _worker(conn, requests: list[bytes], spec: dict, state: dict) -> list[tuple]:
    done, i = [], 0
    while not state['stop'] and state['count'] < spec['cap'] and time.perf_counter() < state['end']:
        state['count'] += 1
        sent = time.perf_counter()
        try:
            conn = conn or await asyncio.open_connection('127.0.0.1', spec['port'])
            version, error = _judge(*await _exchange(*conn, requests[i % len(requests)]), spec['rows'])
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as e:  # EOFError: IncompleteReadError
            version, error = None, f'{type(e).__name__}: {e}'
            conn = conn and conn[1].close()  # closed: None
        done.append((sent, time.perf_counter(), version, error))
        i += 1
        if error:
            await asyncio.sleep(0.01)
    if conn:
        conn[1].close()
    return done


async def _client(spec: dict) -> dict:
    head = f'POST {spec["path"]} HTTP/1.1\r\nHost: 127.0.0.1:{spec["port"]}\r\nContent-Type: application/json\r\n'
    requests = [f'{head}Content-Length: {len(b)}\r\n\r\n{b}'.encode() for b in spec['bodies']]
    offset = time.time() - time.perf_counter()  # wall clock = perf_counter + offset
    state = {'stop': False, 'count': 0, 'end': spec['end'] - offset}
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, state.__setitem__, 'stop', True)
    conns = [await asyncio.open_connection('127.0.0.1', spec['port']) for _ in range(spec['concurrency'])]
    await asyncio.sleep(max(0.0, spec['start'] - time.time()))
    cpu = time.process_time()
    logs = await asyncio.gather(*(_worker(c, requests[k:] + requests[:k], spec, state) for k, c in enumerate(conns)))
    # From here on a stop must not cut the output short (the driver may send it as this client ends):
    # blocked, it stays pending until the process has written its records and exited.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    records = [(round(s + offset, 6), round(r + offset, 6), v, e) for done in logs for s, r, v, e in done]
    return {'records': records, 'cpu': time.process_time() - cpu}


def client_main() -> None:
    json.dump(asyncio.run(_client(json.load(sys.stdin))), sys.stdout)


def start_load(server: Server, bodies: list[str], rows: int, concurrency: int, start: float, end: float,
               args, cap: int | None = None) -> list[subprocess.Popen]:
    """The client processes, loading ``server`` from wall time ``start`` to ``end`` (spec in, records out)."""
    n, started = min(args.clients, concurrency), []
    for k in range(n):
        spec = {'port': server.port, 'path': server.path, 'bodies': bodies[k:] + bodies[:k], 'rows': rows,
                'concurrency': concurrency // n + (k < concurrency % n), 'start': start, 'end': end, 'cap': cap or args.cap}
        proc = subprocess.Popen([sys.executable, __file__, '--client'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        started.append(proc)
    return started


def collect(started: list[subprocess.Popen], stop: bool = False, timeout: float = 60) -> dict:
    for proc in started if stop else []:
        proc.send_signal(signal.SIGTERM)
    got = [json.loads(proc.stdout.read() or b'null') for proc in started]  # each ends at its end time or SIGTERM
    if any(proc.wait(timeout=timeout) != 0 for proc in started) or None in got:
        sys.exit(f'a client process failed (status {[proc.returncode for proc in started]})')
    return {'records': [r for g in got for r in g['records']], 'cpu': sum(g['cpu'] for g in got)}


# -- servers -------------------------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    path: str  # the predict route
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors='replace') as f:
            return f.read()


def start_server(kind: str, source: str, name: str, args) -> Server:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    floor = [FLOOR, source] + ['--inline'] * (args.floor == 'inline') + (
        ['--threads', str(args.floor_threads)] if args.floor_threads is not None else [])
    command = (['-m', 'sluice.ui.cli', 'serve', source, '--poll', str(args.poll)] if kind == 'sluice'
               else floor) + ['--port', str(port), '--name', name]
    log_path = os.path.join(args.work, f'{kind}-{name}-{port}.log')
    with open(log_path, 'w') as out:
        proc = subprocess.Popen([sys.executable, *command], stdout=out, stderr=subprocess.STDOUT, cwd=args.work)
    return Server(proc, port, f'/v1/models/{name}:predict', log_path)


def wait_ready(server: Server, samples: dict, timeout: float = 180) -> None:
    """Until the server answers the samples' request; its answers must be the recorded ones."""
    from sluice.components.onnx_export.loading import max_difference

    request = urllib.request.Request(f'http://127.0.0.1:{server.port}{server.path}',
                                     json.dumps(samples['request']).encode(), {'Content-Type': 'application/json'})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                got = json.loads(response.read())['predictions']
        except OSError:
            time.sleep(0.2)
            continue
        if not max_difference(got, samples['predictions']) <= 1e-5:
            sys.exit(f'{server.log_path}: the samples are answered differently: {got} vs {samples["predictions"]}')
        return
    sys.exit(f'the server on port {server.port} did not answer (in {timeout:.0f} s):\n{server.log()[-3000:]}')


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


# -- models and destinations ---------------------------------------------------------------------------
def trained_models(runs: str, example: str) -> list[tuple[str, str]]:
    """(Model directory, its OnnxModel's directory) of each model the example trained, oldest first:
    the Trainer's and Trainer.onnx's outputs, paired by their order (each Trainer run exports once)."""
    found = []
    for node, key, files in (('Trainer', 'model', ('Format-Serving/saved_model.pb',)),
                             ('Trainer.onnx', 'onnx_model', ('model.onnx', 'serving_samples.json'))):
        root = os.path.join(runs, 'runs', example, node, key)
        names = sorted((d for d in os.listdir(root) if d.isdigit()), key=int) if os.path.isdir(root) else []
        found.append([os.path.join(root, d) for d in names
                      if all(os.path.isfile(os.path.join(root, d, f)) for f in files)])
    models, onnx = found
    n = min(len(models), len(onnx))
    return list(zip(models[len(models) - n:], onnx[len(onnx) - n:]))


def ensure_models(runs: str, example: str) -> list[tuple[str, str]]:
    """The last two models the example pipeline trained under ``runs`` (running it when fewer)."""
    from sluice.components.production.destination import model_fingerprint

    found = trained_models(runs, example)
    while len(found) < 2:
        extra = ['--no-cache', 'Trainer'] if found else []
        log(f'training {example}: sluice run {os.path.relpath(EXAMPLES[example], REPO)} -q {" ".join(extra)} in {runs}')
        os.makedirs(runs, exist_ok=True)
        done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', 'run', EXAMPLES[example], '-q', *extra],
                              cwd=runs, capture_output=True, text=True)
        if len(trained_models(runs, example)) == len(found):
            sys.exit(f'the {example} run trained no model:\n{done.stdout[-2000:]}')
        found = trained_models(runs, example)
    if model_fingerprint(*found[-1]) == model_fingerprint(*found[-2]):
        sys.exit(f'need two different {example} models under {runs}/runs/{example}/Trainer/model; found {found}')
    return found[-2:]


def push(dest: str, model: tuple[str, str], pipeline: str):
    """A new version as the Pusher writes one (ungated: no blessing), with changes' own functions, of
    ``model`` (its Model and OnnxModel directories)."""
    from sluice.components.production.changes import copy_model, destination_lock, new_record, write_version
    from sluice.components.production.destination import production

    with destination_lock(dest) as where:
        record = new_record('push', {'pipeline': pipeline, 'uri': model[0]}, production(where).current,
                            baseline=None, blessing=None, metrics=None, destination=where)
        return write_version(where, copy_model(*model), record)


def change(dest: str, kind: str, models: list[str], pipeline: str):
    """One change of production: a push or a promotion of the model not in production, or a rollback."""
    from sluice.components.production.changes import promote, rollback
    from sluice.components.production.destination import model_fingerprint, production

    if kind == 'rollback':
        return rollback(dest, reason='bench/serve.py: a swap under load')[0]
    current = production(dest).current
    other = next(m for m in models if model_fingerprint(*m) != current.fingerprint)
    if kind == 'push':
        return push(dest, other, pipeline)
    return promote(dest, other[0], {'pipeline': pipeline}, 'bench/serve.py: a swap under load', other[1])[0]


def record_time(version) -> float:
    from sluice.components.production.destination import PUSH_RECORD
    return os.stat(os.path.join(version.path, PUSH_RECORD)).st_mtime


def samples_of(version) -> dict:
    with open(os.path.join(version.path, 'serving_samples.json')) as f:
        return json.load(f)


def bodies_of(samples: dict, rows: int) -> list[str]:
    """Request bodies of ``rows`` rows each, made of the samples' rows in turn."""
    found = samples['request']['instances']
    n = len(found)
    return [json.dumps({'instances': [found[(s + j) % n] for j in range(rows)]}) for s in range(n if rows < n else 1)]


# -- 1. steady load --------------------------------------------------------------------------------------
def percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float('nan')


def measure_cell(server: Server, bodies: list[str], rows: int, concurrency: int, args) -> dict:
    start = time.time() + CLIENT_START
    measured_from, end = start + args.warmup, start + args.warmup + args.seconds
    cpu = sum(tree_sample(server.proc.pid)[1].values())
    got = collect(start_load(server, bodies, rows, concurrency, start, end, args), timeout=end - time.time() + 60)
    cpu = sum(tree_sample(server.proc.pid)[1].values()) - cpu
    records = got['records']
    until = min(end, max((r[1] for r in records), default=end))
    latency = sorted(r[1] - r[0] for r in records if measured_from <= r[1] <= until and not r[3])
    failed = [r[3] for r in records if r[3]]
    return {'rps': len(latency) / (until - measured_from), 'p50': 1000 * percentile(latency, 0.5),
            'p99': 1000 * percentile(latency, 0.99), 'n': len(latency), 'failed': len(failed),
            'error': failed[0] if failed else None, 'server_cpu_ms': 1000 * cpu / max(1, len(records)),
            'client_cpu': got['cpu'] / (args.warmup + args.seconds),
            'capped': len(records) >= args.cap * min(args.clients, concurrency)}


def steady_phase(example: str, models: list[str], args) -> dict:
    dest = os.path.join(args.work, f'{example}-steady')
    version = push(dest, models[0], example)
    samples = samples_of(version)
    servers = {'sluice': start_server('sluice', dest, example, args),
               'floor': start_server('floor', version.path, example, args)}
    cells: dict[str, dict[str, list[dict]]] = {}
    try:
        for server in servers.values():
            wait_ready(server, samples)
        for r in range(args.rounds):
            for concurrency in args.concurrency:
                for rows in args.rows:
                    for side in turns(['sluice', 'floor'], r):
                        log(f'{example} round {r + 1}/{args.rounds}: {side}, concurrency {concurrency}, {rows} row(s)')
                        cells.setdefault(f'{concurrency}x{rows}', {}).setdefault(side, []).append(
                            measure_cell(servers[side], bodies_of(samples, rows), rows, concurrency, args))
    finally:
        for server in servers.values():
            stop_server(server)
    return {'version': version.number, 'onnx_bytes': os.path.getsize(os.path.join(version.path, 'model.onnx')),
            'cells': cells}


def cell_ratios(sides: dict) -> dict[str, list[float]]:
    return {k: ratios([g[k] for g in sides['sluice']], [g[k] for g in sides['floor']])
            for k in ('rps', 'p50', 'p99', 'server_cpu_ms')}


def report_steady(example: str, found: dict, args) -> list[str]:
    print(f'\n1. {example}: model.onnx {found["onnx_bytes"] / 1024:.0f} KB; per cell and side {args.warmup:g} s '
          f'warm-up then {args.seconds:g} s, {args.rounds} round(s); the floor runs its model '
          + ('in the thread pool' if args.floor == 'threadpool' else 'on the event loop')
          + (f' with {args.floor_threads} onnxruntime thread(s) a run' if args.floor_threads else
             " with onnxruntime's default threads"))
    print(f'  {"conc x rows":<12}{"":<7}' + ''.join(f'{h:>{COLUMN}}' for h in (
        'req/s', 'p50 ms', 'p99 ms', 'server CPU ms/request')))
    missed, figures = [], ('rps', 'p50', 'p99', 'server_cpu_ms')
    for key, sides in found['cells'].items():
        for side in ('sluice', 'floor'):
            got, bad = sides[side], sum(g['failed'] for g in sides[side])
            print(f'  {key if side == "sluice" else "":<12}{side:<7}' + ''.join(
                f'{spread([g[k] for g in got], ",.0f" if k == "rps" else ".2f"):>{COLUMN}}' for k in figures)
                + (f'  {bad} FAILED' if bad else ''))
            if bad:
                error = next(g['error'] for g in got if g['error'])
                missed.append(f'{example} {key} {side}: {bad} failed requests, e.g. {error}')
        per = cell_ratios(sides)
        ok = {'throughput': median(per['rps']) >= GOAL_RPS, 'p99': median(per['p99']) <= GOAL_P99}
        print(f'  {"":<12}{"ratio":<7}' + ''.join(f'{spread(per[k], ".2f", "x"):>{COLUMN}}' for k in figures)
              + '  ' + ', '.join(f'{k} {"ok" if v else "MISSED"}' for k, v in ok.items()))
        missed += [f'{example} {key}: {k} {spread(per["rps" if k == "throughput" else "p99"], ".2f", "x")} of the floor'
                   for k, v in ok.items() if not v]
    every = [g for sides in found['cells'].values() for got in sides.values() for g in got]
    print(f'  client CPU s per wall s: up to {max(g["client_cpu"] for g in every):.2f} (one core is 1.0); cells '
          f'capped: {sum(g["capped"] for g in every)}')
    return missed


def report_summary(steady: dict) -> None:
    keys = list(next(iter(steady.values()))['cells'])
    print(f'\nsummary, sluice / floor (median of the per-round ratios; ! where the goal is missed): throughput '
          f'(goal >= {GOAL_RPS}x), p99 (goal <= {GOAL_P99}x)')
    print(f'  {"":<22}' + ''.join(f'{k:>9} ' for k in keys))
    for example, found in steady.items():
        per = {k: cell_ratios(found['cells'][k]) for k in keys}
        for what, k, ok in (('throughput', 'rps', lambda r: r >= GOAL_RPS), ('p99', 'p99', lambda r: r <= GOAL_P99)):
            print(f'  {example + " " + what:<22}' + ''.join(
                f'{median(per[c][k]):>8.2f}x' + ' !'[not ok(median(per[c][k]))] for c in keys))


# -- 2. swaps under load ------------------------------------------------------------------------------------
def wait_swapped(server: Server, number: int, timeout: float) -> float | None:
    """The server's load-and-warm-up seconds for version ``number`` once its log says it swapped."""
    swapped = re.compile(rf'Serving version {number} \(was version \d+\): loaded and warmed up in ([\d.]+) s')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        if m := swapped.search(server.log()):
            return float(m[1])
        time.sleep(0.02)
    log(f'version {number} was not swapped in; server log:\n{server.log()[-2000:]}')
    return None


SWAP_CAP = 2_000_000  # requests per client process during the swaps, at most


def swap_phase(example: str, models: list[str], args) -> dict:
    dest = os.path.join(args.work, f'{example}-swaps')
    first = push(dest, models[0], example)
    samples = samples_of(first)
    server = start_server('sluice', dest, example, args)
    changes, rng, clients = [], random.Random(24), []
    try:
        wait_ready(server, samples)
        start = time.time() + CLIENT_START
        hard_end = start + args.warmup + args.swap_steady + args.swaps * (2 * args.poll + args.gap + 30) + 60
        # Bounded by its end, not by --cap (a cell's bound): a fast server reached 100,000 requests in the
        # middle of the changes, and the versions after that were never asked.
        clients = start_load(server, bodies_of(samples, args.swap_rows), args.swap_rows, args.swap_load, start,
                             hard_end, args, cap=SWAP_CAP)
        time.sleep(max(0.0, start + args.warmup + args.swap_steady - time.time()))
        rss = [tree_sample(server.proc.pid)[0] / 2**20]
        for i in range(args.swaps):
            kind = KINDS[i % len(KINDS)]
            log(f'{example} swaps: change {i + 1}/{args.swaps}, {kind}')
            new = change(dest, kind, models, example)
            changes.append({'kind': kind, 'version': str(new.number), 'record': record_time(new)})
            changes[-1]['load_seconds'] = wait_swapped(server, new.number, 2 * args.poll + 60)
            time.sleep(args.gap + rng.uniform(0, args.poll))  # the next change at any phase of the server's poll
        rss.append(tree_sample(server.proc.pid)[0] / 2**20)
        got = collect(clients, stop=True, timeout=60)
    finally:
        for proc in clients:
            if proc.poll() is None:  # a change failed: stop the load too
                proc.kill()
        stop_server(server)
    found = analyse_swaps(got['records'], {str(first.number): record_time(first)}, changes, start + args.warmup)
    return {**found, 'rss_mb': rss}


def analyse_swaps(records: list, initial: dict[str, float], changes: list[dict], steady_from: float) -> dict:
    records.sort(key=lambda r: r[1])
    written = {**initial, **{c['version']: c['record'] for c in changes}}  # version -> its record's time
    order = {v: i for i, v in enumerate(written)}
    ok = [r for r in records if not r[3]]
    first_answer: dict[str, float] = {}
    for _, received, version, _ in ok:
        first_answer.setdefault(version, received)
    for c in changes:
        c['to_first_answer'] = first_answer[c['version']] - c['record'] if c['version'] in first_answer else None
    marks = sorted((t, order[v]) for v, t in first_answer.items() if v in order)
    times, newest = [t for t, _ in marks], [max(i for _, i in marks[:k + 1]) for k in range(len(marks))]
    went_back = sum(1 for sent, _, v, _ in ok if v in order and (k := bisect.bisect_right(times, sent))
                    and order[v] < newest[k - 1])
    t_first = changes[0]['record'] if changes else math.inf
    t_last = max((first_answer.get(c['version'], 0.0) for c in changes), default=0.0) + 0.5
    swapping = [(first_answer[c['version']] - (c['load_seconds'] or 0.0) - 0.05, first_answer[c['version']] + 0.5)
                for c in changes if c['version'] in first_answer]  # from its load's start to 0.5 s after the swap
    latency = {'steady': sorted(r - s for s, r, _, _ in ok if s >= steady_from and r < t_first),
               'during': sorted(r - s for s, r, _, _ in ok if t_first <= s and r <= t_last),
               'swapping': sorted(r - s for s, r, _, _ in ok if any(a <= r and s <= b for a, b in swapping))}
    failed = [r[3] for r in records if r[3]]
    return {'requests': len(records), 'failed': len(failed), 'errors': failed[:5], 'in_production': len(written),
            'answering': len(first_answer), 'never_in_production': sum(1 for r in ok if r[2] not in written),
            'before_record': sum(1 for r in ok if r[2] in written and written[r[2]] > r[1]), 'went_back': went_back,
            **{f'{p}_{k}': 1000 * percentile(v, q) for k, v in latency.items() for p, q in (('p50', .5), ('p99', .99))},
            **{f'n_{k}': len(v) for k, v in latency.items()}, 'changes': changes}


def report_swaps(example: str, found: dict, args) -> list[str]:
    changes = found['changes']
    print(f'\n2. {example}: {len(changes)} changes ({", ".join(KINDS)} in turn) under {args.swap_load} concurrent '
          f'{args.swap_rows}-row requests, sluice serve --poll {args.poll:g}')
    errors = f': {found["errors"][:2]}' if found['failed'] else ''
    print(f'  requests {found["requests"]:,}, failed {found["failed"]}{errors}')
    print(f'  versions: {found["in_production"]} in production, {found["answering"]} answered; answers by a version '
          f'never in production {found["never_in_production"]}, before its record was written '
          f'{found["before_record"]}, by an older version after a newer one had answered {found["went_back"]}')
    ratio = found['p99_during'] / found['p99_steady']
    print(f'  latency ms, steady (n={found["n_steady"]:,}) / during the swaps (n={found["n_during"]:,}): p50 '
          f'{found["p50_steady"]:.2f} / {found["p50_during"]:.2f}, p99 {found["p99_steady"]:.2f} / '
          f'{found["p99_during"]:.2f}: {ratio:.2f}x (goal <= {GOAL_SWAP_P99:g}x); in flight while a version loaded and '
          f'swapped in (to 0.5 s after; n={found["n_swapping"]:,}): p50 {found["p50_swapping"]:.2f}, p99 '
          f'{found["p99_swapping"]:.2f}')
    took = [c['to_first_answer'] for c in changes if c['to_first_answer'] is not None]
    loads = [c['load_seconds'] for c in changes if c['load_seconds'] is not None]
    if took:
        print(f'  record written -> first answer by the new version, s: min {min(took):.2f}, median '
              f'{median(took):.2f}, max {max(took):.2f} (n={len(took)}); of which the server\'s load + warm-up '
              + (f'{spread(loads)} s' if loads else 'not found in its log'))
    print(f'  server resident memory, MB: {found["rss_mb"][0]:,.0f} before the first change, {found["rss_mb"][1]:,.0f} '
          'after the last')
    missed = [f'{example} swaps: {bad} {what}' for what, bad in (
        ('failed requests', found['failed']), ('answers by versions never in production', found['never_in_production']),
        ('answers before their record', found['before_record']), ('answers by an older version', found['went_back']),
        ('changes never answered by their version', len(changes) - len(took))) if bad]
    if not ratio <= GOAL_SWAP_P99:
        missed.append(f'{example} swaps: p99 during the swaps {ratio:.2f}x the steady state')
    return missed


# -- the whole bench -------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add = parser.add_argument
    add('--quick', action='store_true', help=f'a short run: {QUICK} unless given')
    add('--models', nargs='+', choices=sorted(EXAMPLES), default=['penguin', 'taxi'])
    add('--runs', default=os.path.join(OUT, 'serve'), help='where the example pipelines ran (its runs/)')
    add('--rounds', type=int, help=f'default {FULL["rounds"]}')
    add('--seconds', type=float, help=f'measured seconds per cell and side, default {FULL["seconds"]}')
    add('--warmup', type=float, help=f'seconds of load before measuring, default {FULL["warmup"]}')
    add('--concurrency', type=int, nargs='+', default=[1, 8, 32])
    add('--rows', type=int, nargs='+', default=[1, 64])
    add('--clients', type=int, default=1, help='client processes (the connections split between them)')
    add('--cap', type=int, default=100_000, help='requests per client process per cell, at most')
    add('--floor', choices=['threadpool', 'inline'], default='threadpool', help='where the floor runs its model')
    add('--floor-threads', type=int, default=None, help="the floor's onnxruntime threads for one run (default: "
        "onnxruntime's, one per core, as a plain script has them; sluice serve uses 1)")
    add('--swaps', type=int, help=f'changes under load per model, default {FULL["swaps"]}')
    add('--swap-steady', type=float, help=f'seconds of load before the first change, default {FULL["swap_steady"]}')
    add('--swap-load', type=int, default=8, help='concurrent requests during the swaps')
    add('--swap-rows', type=int, default=1)
    add('--gap', type=float, default=0.5, help='seconds from a swap to the next change, plus a random part of --poll')
    add('--poll', type=float, default=2.0, help="sluice serve's --poll (its default: 2)")
    add('--no-swaps', action='store_true', help='section 1 only')
    add('--json', help='write the raw figures there')
    args = parser.parse_args()
    for key in FULL:
        if getattr(args, key) is None:
            setattr(args, key, (QUICK if args.quick else FULL)[key])
    if min(args.rounds, args.seconds, args.clients, *args.concurrency, *args.rows) <= 0 or args.swaps < 1:
        parser.error('--rounds, --seconds, --clients, --concurrency, --rows and --swaps must be positive')
    args.runs = os.path.abspath(args.runs)
    return args


def main() -> None:
    if sys.argv[1:] == ['--client']:
        return client_main()
    args = parse_args()
    started, header = time.perf_counter(), machine()
    models = {example: ensure_models(args.runs, example) for example in args.models}
    steady, swaps = {}, {}
    with tempfile.TemporaryDirectory(prefix='sluice-bench-serve-') as work:
        args.work = work
        for example in args.models:
            steady[example] = steady_phase(example, models[example], args)
            if not args.no_swaps:
                swaps[example] = swap_phase(example, models[example], args)
    print(f'sluice serve vs its floor (bench/serve_floor.py); {header}; client: {args.clients} asyncio process(es), '
          'HTTP/1.1 keep-alive, on the same cores as the servers')
    print('each figure: median [min-max, n] over the rounds; ratios sluice / floor per round (same round, same load)')
    missed = [line for example in args.models for line in report_steady(example, steady[example], args)]
    missed += [line for example in swaps for line in report_swaps(example, swaps[example], args)]
    report_summary(steady)
    print('\ngoals:' + ('' if missed else ' all met') + ''.join(f'\n  MISSED {line}' for line in missed))
    used = '; '.join(f'{e} {", ".join(os.path.relpath(m[0], args.runs) for m in models[e])}' for e in args.models)
    print(f'(bench took {(time.perf_counter() - started) / 60:.1f} min; models: {used} under {args.runs})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'machine': header, 'args': {k: v for k, v in vars(args).items() if k != 'work'},
                       'models': models, 'steady': steady, 'swaps': swaps}, f, indent=1)


if __name__ == '__main__':
    main()
