"""``sluice serve DEST``: serve the model in production at a push destination over HTTP (TF Serving's
REST API, KServe v2, /metrics), following pushes, rollbacks and promotions (``sluice.serving``)."""
from __future__ import annotations

import argparse

from sluice.ui.cli.common import CliError


def add_parser(sub) -> None:
    p = sub.add_parser('serve', help='serve the model in production at a push destination over HTTP',
                       description='Serve the model in production at DEST (TF Serving\'s REST API on '
                       '/v1/models/NAME, KServe v2 on /v2/models/NAME, Prometheus metrics on /metrics), '
                       'swapping to the new version on every push, rollback and promotion. DEST may also be '
                       'one model directory (one version, or a directory holding a SavedModel and model.onnx), served as it '
                       'is.')
    p.add_argument('destination', metavar='DEST')
    p.add_argument('--name', help='the model name in the URLs (default: the pipeline that pushed the model in '
                   'production, else the directory name)')
    p.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1; 0.0.0.0 for '
                   'every interface)')
    p.add_argument('--port', type=int, default=8501, help='port (default 8501, as TF Serving\'s REST API)')
    p.add_argument('--poll', type=float, default=2.0, metavar='S', help='seconds between reads of the '
                   'destination (default 2)')
    p.add_argument('--log-requests', type=float, default=0.0, metavar='RATE', help='write this share of the '
                   'requests (0 to 1) as tf.Examples, one directory per version (default: none)')
    p.add_argument('--log-dir', metavar='DIR', help='where the request log goes (default DEST/.sluice-requests)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sluice.serving.server import serve

    if not 0 <= args.log_requests <= 1:
        raise CliError(f'--log-requests takes a share of the requests between 0 and 1, got {args.log_requests}')
    if args.poll <= 0:
        raise CliError(f'--poll takes a positive number of seconds, got {args.poll}')
    try:
        serve(args.destination, name=args.name, host=args.host, port=args.port, poll=args.poll,
              log_requests=args.log_requests, log_dir=args.log_dir)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    return 0
