"""What an object store costs a run (issue #26): the penguin and taxi examples with their pipeline
root and input files on S3 and on Google Cloud Storage against the same on the local disk.

    .venv/bin/python bench/storage.py [--repeat 3] [--pipelines penguin,taxi] [--stores s3,gs]

The S3 side talks to moto's S3 server on loopback, the GCS side to gcp-storage-emulator (in memory),
both started by this script in threads of its own (the servers the tests use). Each repeat runs, per
side, a run that executes every node (a fresh root, bucket and store) and then a fully cached re-run
of it, each as a whole ``sluice run`` process timed from outside; the sides take turns, their order
reversed every other repeat, and each ratio is taken per repeat from the pair measured in it.

What it shows: the cost of Sluice's own object-store path (listing, ETag fingerprints, staging every
input to the local disk and uploading every output, one request per file) on top of the work.
What it does not show: a real network. Loopback has no latency to speak of and no bandwidth limit,
and moto and the emulator answer from memory on the same two cores as the run, so on S3 or GCS
itself the per-request cost (tens of milliseconds per request to a distant region) weighs more, and
the servers' own CPU time weighs less.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import tempfile

from _common import REPO, machine, ratios, run_python, spread, turns

EXAMPLES = os.path.join(REPO, 'pipelines', 'examples')
PIPELINE = '''
import os
from sluice.examples.{name} import {name}_pipeline as example


def create_pipeline():
    return example.create_pipeline(root=os.environ['ROOT'], data=os.environ['DATA'])
'''
LOCAL = 'local disk'
LABELS = {'s3': 'S3 (moto on loopback)', 'gs': 'GCS (emulator on loopback)'}


class S3Side:
    scheme = 's3'

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer
        logging.getLogger('werkzeug').setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {'AWS_ENDPOINT_URL': f'http://{host}:{port}', 'AWS_ACCESS_KEY_ID': 'bench',
                    'AWS_SECRET_ACCESS_KEY': 'bench', 'AWS_DEFAULT_REGION': 'us-east-1'}
        import boto3
        self.client = boto3.client('s3', endpoint_url=self.env['AWS_ENDPOINT_URL'], aws_access_key_id='bench',
                                   aws_secret_access_key='bench', region_name='us-east-1')

    def bucket(self, name: str, files: list[str]) -> None:
        self.client.create_bucket(Bucket=name)
        for path in files:
            self.client.upload_file(path, name, f'data/{os.path.basename(path)}')


class GcsSide:
    scheme = 'gs'

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        from sluice.metadata.gcs import client_module
        port = free_port()
        self.server = create_server('127.0.0.1', port, in_memory=True)
        self.server.start()
        self.env = {'STORAGE_EMULATOR_HOST': f'http://127.0.0.1:{port}'}
        from google.auth.credentials import AnonymousCredentials
        self.client = client_module().Client(project='bench', credentials=AnonymousCredentials(),
                                             client_options={'api_endpoint': self.env['STORAGE_EMULATOR_HOST']})

    def bucket(self, name: str, files: list[str]) -> None:
        self.client.create_bucket(name)
        for path in files:
            self.client.bucket(name).blob(f'data/{os.path.basename(path)}').upload_from_filename(path)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def one_side(name: str, side: str, work: str, stores: dict, index: int) -> tuple[float, float]:
    """(seconds of a run executing every node, seconds of the cached re-run) on one side."""
    where = os.path.join(work, f'{name}-{index}-{side.split()[0]}')
    os.makedirs(where)
    pipeline_file = os.path.join(where, 'pipeline.py')
    with open(pipeline_file, 'w') as f:
        f.write(PIPELINE.format(name=name))
    data = os.path.join(EXAMPLES, name, 'data')
    env = {'SLUICE_CACHE_DIR': os.path.join(where, 'cache')}
    if side == LOCAL:
        env.update(ROOT=os.path.join(where, 'root'), DATA=data)
    else:
        store, bucket = stores[side], f'bench-{name}-{index}'
        store.bucket(bucket, glob.glob(os.path.join(data, '*.csv')))
        env.update(store.env, ROOT=f'{store.scheme}://{bucket}/root', DATA=f'{store.scheme}://{bucket}/data')
    args = ['-m', 'sluice.ui.cli', 'run', pipeline_file, '-q', '--metadata', f"sqlite:///{where}/metadata.db"]
    executed, _ = run_python(args, cwd=where, env=env)
    cached, _ = run_python(args, cwd=where, env=env)
    return executed, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--pipelines', default='penguin,taxi')
    parser.add_argument('--stores', default='s3,gs', help='the object stores to compare with the local disk')
    args = parser.parse_args()
    print(machine())
    kinds = {'s3': S3Side, 'gs': GcsSide}
    stores = {LABELS[k]: kinds[k]() for k in args.stores.split(',')}
    sides = (LOCAL, *stores)
    work = tempfile.mkdtemp(prefix='sluice-storage-bench-')
    try:
        for name in args.pipelines.split(','):
            times = {(side, kind): [] for side in sides for kind in ('executed', 'cached')}
            for i in range(args.repeat):
                for side in turns(sides, i):
                    executed, cached = one_side(name, side, work, stores, i)
                    times[(side, 'executed')].append(executed)
                    times[(side, 'cached')].append(cached)
            for kind, label in (('executed', 'run executing every node'), ('cached', 'cached re-run')):
                local = times[(LOCAL, kind)]
                print(f'{name}, {label}: {LOCAL} {spread(local, unit=" s")}')
                for side, store in stores.items():
                    remote = times[(side, kind)]
                    print(f'    {side} {spread(remote, unit=" s")}; {store.scheme} / local '
                          f'{spread(ratios(remote, local), unit="x")}')
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for store in stores.values():
            store.server.stop()


if __name__ == '__main__':
    main()
