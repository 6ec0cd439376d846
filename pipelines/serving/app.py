"""The HTTP surface of ``sluice serve``: TF Serving's REST API, the core of the Open Inference
Protocol (KServe v2) and ``/metrics``, on FastAPI.

    GET  /v1/models/NAME[/versions/V|/labels/L]            version status
    GET  /v1/models/NAME[/versions/V|/labels/L]/metadata   the signature (raw features in, outputs out)
    POST /v1/models/NAME[/versions/V|/labels/L]:predict    {"instances": [...]} or {"inputs": {...}}
    GET  /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/V][/ready]
    POST /v2/models/NAME[/versions/V]/infer
    GET  /metrics

Labels are ``production`` (the default) and ``previous``. Every answer names the version that gave
it (``model_version`` in the body, ``X-Model-Version`` in the headers). Errors are ``{"error": ...}``
with status 400 (a bad request: which feature, what type it takes, what arrived), 404 (no such model,
version or label), 413 (a body over the limit) or 503 (nothing loaded, and why).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse as _JSONResponse
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from sluice.serving.follower import Follower, NotServed
from sluice.serving.metrics import Metrics
from sluice.components.onnx_export.loading import ALONE_INLINE_SECONDS, INLINE_ROWS, INLINE_SECONDS
from sluice.components.onnx_export.serving import IN_FLIGHT, RequestError

logger = logging.getLogger('sluice.serve')

MAX_BODY_BYTES = 8 << 20
DRAIN_BYTES = 64 << 20  # an oversized body up to this size is read and dropped, so the client gets its 413
_V1 = re.compile(r'^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?'
                 r'(?P<rest>/metadata|:[a-z]+)?$')
_V2 = re.compile(r'^(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?$')


class JSONResponse(_JSONResponse):
    """A JSON answer written by orjson (a tenth of json's time for a 64-row answer): the same text
    but for a small exponent's form (1e-7 where json writes 1e-07) and a NaN, which it writes null
    (Sluice's answers hold none: a non-finite prediction is null already)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class TooLarge(Exception):
    pass


async def read_json(request: Request, limit: int):
    """The request's JSON body, refused (413) past ``limit`` bytes whether or not it says its length."""
    declared = request.headers.get('content-length')
    if declared and declared.isdigit() and int(declared) > DRAIN_BYTES:  # not worth reading to answer
        raise TooLarge(f'the request body is {int(declared)} bytes; this server takes at most {limit} (send fewer '
                       'rows per request)')
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        told = f'{int(declared)} bytes' if declared and declared.isdigit() else f'over {limit} bytes'
        raise TooLarge(f'the request body is {told}; this server takes at most {limit} (send fewer rows per '
                       'request)')
    raw = b''.join(chunks)
    if not raw.strip():
        raise RequestError('the request body is empty: send a JSON object, e.g. {"instances": [{...}]}')
    try:
        return orjson.loads(raw)  # a quarter of json's time: most of a 64-row request's own (bench/README.md)
    except orjson.JSONDecodeError:
        pass  # Python's parser then says what is wrong (NaN, Infinity, ...) or reads what orjson does not
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError as e:
        raise RequestError(f'the request body is not JSON: {e}') from None


def _no_constant(name: str):
    raise ValueError(f'{name} is not a JSON number (leave a missing value out, or send null)')


def _rows(body) -> int | None:
    """How many rows a TF Serving request body holds, read cheaply: the rows, or the longest column
    (a request whose columns differ is refused before the model runs). None for anything else,
    KServe v2 included (its shapes are checked only as the model is fed)."""
    if not isinstance(body, dict):
        return None
    rows, given = body.get('instances'), body.get('inputs')
    if isinstance(rows, list):
        return len(rows)
    if isinstance(given, dict) and given:  # v1 columns: {"feature": [values], ...}
        return max(len(v) if isinstance(v, list) else 1 for v in given.values())
    return None


def _error(status: int, message: str, version=None) -> JSONResponse:
    headers = {'X-Model-Version': str(version)} if version is not None else None
    return JSONResponse({'error': message}, status_code=status, headers=headers)


class _Routes:
    """What every route shares: the follower, the metrics, the model's name, the request log."""

    def __init__(self, follower: Follower, metrics: Metrics, name: str, request_log, max_body: int):
        self.follower, self.metrics, self.name = follower, metrics, name
        self.request_log, self.max_body = request_log, max_body

    def unknown(self, asked: str) -> NotServed:
        return NotServed(f'no model "{asked}" here: this server serves "{self.name}"', 404)

    async def answer(self, request: Request, api: str, asked: str, version, label, call) -> JSONResponse:
        """Reads the body, picks the model once (requests in flight keep it across a swap), answers."""
        started = time.perf_counter()
        model, code, rows = None, 200, 0
        IN_FLIGHT.arrived()  # on the event loop: no lock needed
        # Let requests already waiting on the loop arrive too: a handler that answers on the loop
        # never yields otherwise (its body is read without waiting), and the next one would then never
        # see this one in flight: the alone rule (_quick_model) would hold for clients at once.
        await asyncio.sleep(0)
        try:
            if asked != self.name:
                raise self.unknown(asked)
            body = await read_json(request, self.max_body)
            box: list = []  # the model, also when the call fails (its version labels the error)
            try:
                quick = self._quick_model(version, label, body)
                if quick is not None:  # the model checked, not one a swap put in production meanwhile
                    box.append(quick)
                    answer, feed = call(quick, body)
                else:
                    answer, feed = await run_in_threadpool(self._work, version, label, call, body, box)
            finally:
                model = box[0] if box else None
            answer['model_version'] = str(model.version)
            if api == 'v2':
                answer = {'model_name': self.name, **answer}
                if isinstance(body, dict) and 'id' in body:
                    answer['id'] = body['id']
            response = JSONResponse(answer, headers={'X-Model-Version': str(model.version)})
            rows = len(next(iter(feed.values())))  # answered: counted, and logged for drift
            if self.request_log is not None and self.request_log.sample():
                self.request_log.add(model.version, feed, model.missing)
        except RequestError as e:
            code, response = e.status, _error(e.status, str(e), model and model.version)
        except NotServed as e:
            code, response = e.status, _error(e.status, str(e))
        except TooLarge as e:
            code, response = 413, _error(413, str(e))
        except Exception as e:  # the runtime's own failure: answer, log, keep serving
            logger.exception('A request to version %s failed', model and model.version)
            code, response = 500, _error(500, f'{type(e).__name__}: {e}', model and model.version)
        finally:
            IN_FLIGHT.requests -= 1
        self.metrics.answered(model.version if model else None, api, code, time.perf_counter() - started, rows)
        return response

    def _quick_model(self, version, label, body):
        """The model to answer with on the event loop, or None (then a worker thread answers). A
        request for the version in production (no version or label, or the label "production") is
        answered on the loop when it has at most INLINE_ROWS rows and the model should answer them
        within INLINE_SECONDS (timed at warm-up): handing a request to a thread and back costs about
        0.17 ms of CPU here, more than such a run (penguin: 47 us for 1 row, about 0.1 ms for 64).
        Slower models (taxi: 0.41 ms before the first row) run in threads, where onnxruntime releases
        the GIL and requests overlap; except for a request answered alone (``IN_FLIGHT.alone``: a
        client sending one request at a time) that the model should answer within ALONE_INLINE_SECONDS:
        nobody waits behind it, and the hand-off was a seventh of such a request's time (taxi, one row)."""
        current = self.follower.current
        if version is not None or label not in (None, 'production') or current is None:
            return None
        rows = _rows(body)
        if rows is None or rows > INLINE_ROWS:
            return None
        seconds = current.seconds_for(rows)
        quick = seconds <= INLINE_SECONDS or (seconds <= ALONE_INLINE_SECONDS and IN_FLIGHT.alone())
        return current if quick else None

    def _work(self, version, label, call, body, box: list):
        """In a worker thread: picking a version may load it, and the model runs there."""
        model = self.follower.model(version, label)
        box.append(model)
        return call(model, body)

    # -- TF Serving's REST API --------------------------------------------------------------------
    async def v1_get(self, path: str):
        m = _V1.match(path)
        if not m or m['rest'] not in (None, '/metadata'):
            return _error(404, f'GET /v1/models/{path}: not a path of this API (see /v1/models/{self.name})')
        if m['name'] != self.name:
            return _error(404, str(self.unknown(m['name'])))
        if m['rest'] is None and m['version'] is None and m['label'] is None:
            return JSONResponse({'model_version_status': self.follower.status()})
        try:
            model = await run_in_threadpool(self.follower.model, m['version'], m['label'])
        except NotServed as e:
            return _error(e.status, str(e))
        if m['rest'] is None:
            return JSONResponse({'model_version_status': [
                {'version': str(model.version), 'state': 'AVAILABLE',
                 'status': {'error_code': 'OK', 'error_message': ''}}]})
        return JSONResponse({'model_spec': {'name': self.name, 'signature_name': '', 'version': str(model.version)},
                             'metadata': {'signature_def': {'signature_def': {'serving_default': model.signature()}}}})

    async def v1_post(self, path: str, request: Request):
        m = _V1.match(path)
        if not m or m['rest'] is None or m['rest'] == '/metadata':
            return _error(404, f'POST /v1/models/{path}: not a path of this API (POST /v1/models/{self.name}:predict)')
        if m['rest'] != ':predict':
            return _error(400, f'{m["rest"][1:]} is not served: this server answers :predict (the model '
                               'has one signature, serving_default)')
        return await self.answer(request, 'v1', m['name'], m['version'], m['label'],
                                 lambda model, body: model.predict(body))

    # -- the Open Inference Protocol (KServe v2) -----------------------------------------------------
    async def live(self):
        return {'live': True}

    async def ready(self):
        ok = self.follower.current is not None
        return JSONResponse({'ready': ok}, status_code=200 if ok else 503)

    async def server_metadata(self):
        return {'name': 'sluice', 'version': '1', 'extensions': []}

    async def v2_get(self, path: str):
        m = _V2.match(path)
        if not m or m['rest'] == '/infer':
            return _error(404, f'GET /v2/models/{path}: not a path of this API')
        if m['name'] != self.name:
            return _error(404, str(self.unknown(m['name'])))
        try:
            model = await run_in_threadpool(self.follower.model, m['version'])
        except NotServed as e:
            if m['rest'] == '/ready':
                return JSONResponse({'name': self.name, 'ready': False, 'error': str(e)}, status_code=e.status)
            return _error(e.status, str(e))
        if m['rest'] == '/ready':
            return {'name': self.name, 'version': str(model.version), 'ready': True}
        return {'name': self.name, 'versions': [str(model.version)], 'platform': 'onnxruntime_onnx',
                **model.v2_tensors()}

    async def v2_post(self, path: str, request: Request):
        m = _V2.match(path)
        if not m or m['rest'] != '/infer':
            return _error(404, f'POST /v2/models/{path}: not a path of this API (POST /v2/models/{self.name}/infer)')
        return await self.answer(request, 'v2', m['name'], m['version'], None, lambda model, body: model.infer(body))

    async def prometheus(self):
        return Response(self.metrics.exposition(), media_type=self.metrics.content_type)


def _plain_endpoint(endpoint):
    async def plain(request: Request):
        return await endpoint(request.path_params['path'], request)
    return plain


def create_app(follower: Follower, metrics: Metrics, name: str, request_log=None,
               max_body: int = MAX_BODY_BYTES) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # Stopping (SIGINT, SIGTERM): uvicorn has answered the requests in flight; flush the log.
        follower.stop()
        if request_log is not None:
            request_log.close()

    app = FastAPI(title=f'sluice serve: {name}', docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):  # unknown paths and methods: the same error shape
        return _error(exc.status_code, f'{request.method} {request.url.path}: {exc.detail}')

    routes = _Routes(follower, metrics, name, request_log, max_body)
    # The two POST routes, where the requests are, are Starlette routes: FastAPI's per-request
    # dependency solving (for ``path`` and ``request``) cost more CPU than everything else the route does.
    for path, endpoint in [('/v1/models/{path:path}', routes.v1_post), ('/v2/models/{path:path}', routes.v2_post)]:
        app.router.routes.insert(0, Route(path, _plain_endpoint(endpoint), methods=['POST']))  # matched first
    for method, path, endpoint in [
            ('GET', '/v1/models/{path:path}', routes.v1_get), ('GET', '/v2/health/live', routes.live),
            ('GET', '/v2/health/ready', routes.ready), ('GET', '/v2', routes.server_metadata),
            ('GET', '/v2/models/{path:path}', routes.v2_get), ('GET', '/metrics', routes.prometheus)]:
        app.add_api_route(path, endpoint, methods=[method])
    return app
