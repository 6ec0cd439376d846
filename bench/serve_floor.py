"""The floor of bench/serve.py: one pushed ONNX model served with FastAPI on uvicorn and onnxruntime,
and nothing else.

    .venv/bin/python bench/serve_floor.py VERSION_DIR --port P [--name NAME] [--version V] [--inline]

What a plain script would write to serve the same file the same way: the session is made by
Sluice's ``make_session`` (onnxruntime-extensions' custom ops registered, which the taxi model needs;
onnxruntime's default threads, as a plain script has them, or ``--threads N``, which ``sluice serve``
sets to 1) and answers the version's ``serving_samples.json`` before the port opens
(its answers checked against the recorded ones), as ``sluice serve`` loads a version. Then one
route, ``POST /v1/models/NAME:predict`` with ``{"instances": [...]}``: the rows become one [n, 1]
array per input (an absent or null feature as the export's MISSING value), ``session.run``, the
rows go back as ``{"predictions": [...], "model_version": "V"}`` in a JSONResponse. No checks of
the request beyond what numpy does, no metrics, no other routes, nothing followed. The rows are
turned into arrays and the model run in Starlette's thread pool, where FastAPI runs a ``def`` route
and where ``sluice serve`` runs its model (onnxruntime releases the GIL, so requests overlap on the
cores); ``--inline`` runs them on the event loop instead (faster for a small model one request at
a time, slower for the taxi model under concurrent load).
"""
# no `from __future__ import annotations`: FastAPI reads the route's annotations (Request) at run time
import argparse
import json
import os
import sys

import numpy as np

DTYPES = {'tensor(float)': np.float32, 'tensor(int64)': np.int64, 'tensor(string)': object}
ORT_NAMES = {'tensor(float)': 'float32', 'tensor(int64)': 'int64', 'tensor(string)': 'string'}


def load(model_dir: str, threads: int | None = None):
    """(predict(rows) -> predictions, session) for the model.onnx in ``model_dir``."""
    from sluice.components.onnx_export.runtime import MISSING, make_session

    session = make_session(os.path.join(model_dir, 'model.onnx'), threads)
    inputs = [(i.name, DTYPES[i.type], MISSING[ORT_NAMES[i.type]]) for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]

    def predict(rows: list[dict]) -> list:
        feed = {}
        for name, dtype, missing in inputs:
            values = [row.get(name) for row in rows]
            feed[name] = np.array([missing if v is None else v for v in values], dtype=dtype).reshape(-1, 1)
        results = [r.tolist() for r in session.run(outputs, feed)]
        if len(results) == 1:
            return results[0]
        return [dict(zip(outputs, row)) for row in zip(*results)]

    return predict


def warm_up(predict, model_dir: str) -> None:
    with open(os.path.join(model_dir, 'serving_samples.json')) as f:
        samples = json.load(f)
    got = np.asarray(predict(samples['request']['instances']), dtype=float)
    expected = np.asarray(samples['predictions'], dtype=float)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=1e-5):
        sys.exit(f'serve_floor: the warm-up answers differ from {model_dir}/serving_samples.json')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model_dir', help='a pushed version directory (model.onnx, serving_samples.json)')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--name', default='model')
    parser.add_argument('--version', default=None, help='the model_version answered (default: the directory name)')
    parser.add_argument('--inline', action='store_true', help='run the model on the event loop, not in the thread pool')
    parser.add_argument('--threads', type=int, default=None,
                        help="onnxruntime's threads for one run (default: its own, one per core)")
    args = parser.parse_args()
    version = args.version or os.path.basename(os.path.abspath(args.model_dir))

    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    predict = load(args.model_dir, args.threads)
    warm_up(predict, args.model_dir)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(f'/v1/models/{args.name}:predict')
    async def predict_route(request: Request) -> JSONResponse:
        rows = json.loads(await request.body())['instances']
        predictions = predict(rows) if args.inline else await run_in_threadpool(predict, rows)
        return JSONResponse({'predictions': predictions, 'model_version': version})

    uvicorn.run(app, host='127.0.0.1', port=args.port, log_level='warning', access_log=False)


if __name__ == '__main__':
    main()
