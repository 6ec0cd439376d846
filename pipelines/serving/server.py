"""``sluice serve``: one process that follows a push destination's production and answers over HTTP.

``serve`` loads what is in production before it opens the port (so the first request is answered by
a warmed-up model), then polls the destination every ``poll`` seconds in a thread
(``follower.Follower``) while uvicorn runs the app (``app.create_app``). SIGINT and SIGTERM stop it
after the requests in flight are answered; the request log is flushed on the way out (the app's
lifespan: uvicorn then re-raises the signal, so the process ends as signalled).

``DEST`` may be a destination on an object store (``s3://`` or ``gs://bucket/prefix``, followed by listing it;
each version is loaded from a local copy); the request log then goes to the destination's local
mirror under ``sluice.metadata.storage.local_cache_root()`` unless ``log_dir`` says where.
"""
from __future__ import annotations

import logging
import os
import sys

from sluice.metadata import storage
from sluice.serving.follower import Follower

logger = logging.getLogger('sluice.serve')

DEFAULT_PORT = 8501  # TF Serving's REST port
REQUEST_LOG_DIR = '.sluice-requests'  # under the destination, beside the versions


def is_model_dir(path: str) -> bool:
    """A Model artifact or one version directory (served as it is), rather than a destination."""
    from sluice.components.production.destination import has_saved_model, onnx_path
    return has_saved_model(path) or onnx_path(path) is not None


def default_name(source: str, fixed: bool) -> str:
    """The pipeline that pushed the model in production (its push record), else the directory's name."""
    if not fixed:
        from sluice.components.production.destination import production
        current = production(source).current
        pipeline = ((current.record or {}).get('model') or {}).get('pipeline') if current else None
        if pipeline:
            return str(pipeline)
    if storage.is_remote(source):
        return storage.name(source) or 'model'
    return os.path.basename(os.path.abspath(source.rstrip(os.sep))) or 'model'


def _console() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s sluice serve: %(message)s', '%H:%M:%S'))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(source: str, *, name: str | None = None, host: str = '127.0.0.1', port: int = DEFAULT_PORT,
          poll: float = 2.0, log_requests: float = 0.0, log_dir: str | None = None) -> None:
    import uvicorn

    from sluice.serving.app import create_app
    from sluice.serving.metrics import Metrics
    from sluice.serving.request_log import RequestLog

    if storage.is_remote(source):
        source = source.rstrip('/')
        if not storage.listdir(source):
            raise FileNotFoundError(f'{source} holds nothing: give a push destination (the prefix holding the numbered '
                                    'versions, the Pusher\'s push_destination) or a model directory')
        if storage.isfile(storage.join(source, 'saved_model.pb')):  # one model: served from its local copy
            source = storage.local_copy(source)
    elif not os.path.isdir(source):
        raise FileNotFoundError(f'{source} is not a directory: give a push destination (the directory holding the '
                                'numbered versions, the Pusher\'s push_destination) or a model directory')
    _console()
    fixed = is_model_dir(source)
    name = name or default_name(source, fixed)
    metrics = Metrics(name)
    follower = Follower(source, metrics=metrics, fixed=fixed, recheck=poll)
    follower.poll()
    request_log = None
    if log_requests:
        log_dir = log_dir or os.path.join(storage.local_dir(source), REQUEST_LOG_DIR)
        request_log = RequestLog(log_dir, log_requests, metrics)
    what = 'the model at' if fixed else 'production at'
    serving = f'version {follower.current.version}' if follower.current else 'nothing yet'
    logger.info('Serving "%s" (%s) from %s %s on http://%s:%d%s', name, serving, what, follower.source,
                host, port, '' if fixed else f'; following it every {poll:g} s')
    if request_log is not None:
        logger.info('Logging %g of the requests as tf.Examples under %s/<version>/', log_requests, request_log.directory)
    follower.start(poll)
    app = create_app(follower, metrics, name, request_log)
    config = uvicorn.Config(app, host=host, port=port, log_level='warning', access_log=False, lifespan='on')
    uvicorn.Server(config).run()  # the app's lifespan stops the follower and flushes the request log
