"""What an object store costs a run (issue #26): the penguin and taxi examples with their pipeline
root, input files and push destination on S3 against the same on the local disk.

    .venv/bin/python bench/storage.py [--repeat 3] [--pipelines penguin,taxi]

The S3 side talks to moto's S3 server on loopback, started by this script in its own thread (the
same server the tests use). Each repeat runs, per side, a run that executes every node (a fresh
root, bucket and store) and then a fully cached re-run of it, each as a whole ``sluice run`` process
timed from outside; the two sides take turns, the order flipped every repeat, and each ratio is
taken per repeat from the pair measured in it.

What it shows: the cost of Sluice's own object-store path (listing, ETag fingerprints, staging every
input to the local disk and uploading every output, one request per file) on top of the work.
What it does not show: a real network. Loopback has no latency to speak of and no bandwidth limit,
and moto answers from memory on the same two cores as the run, so on S3 itself the per-request
cost (tens of milliseconds per request to a distant region) weighs more, and moto's own CPU time
weighs less.
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
SIDES = ('local disk', 'S3 (moto on loopback)')


def start_s3():
    from moto.server import ThreadedMotoServer
    logging.getLogger('werkzeug').setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {'AWS_ENDPOINT_URL': f'http://{host}:{port}', 'AWS_ACCESS_KEY_ID': 'bench', 'AWS_SECRET_ACCESS_KEY': 'bench',
           'AWS_DEFAULT_REGION': 'us-east-1'}
    import boto3
    client = boto3.client('s3', endpoint_url=env['AWS_ENDPOINT_URL'], aws_access_key_id='bench',
                          aws_secret_access_key='bench', region_name='us-east-1')
    return server, client, env


def one_side(name: str, side: str, work: str, client, s3_env: dict, index: int) -> tuple[float, float]:
    """(seconds of a run executing every node, seconds of the cached re-run) on one side."""
    where = os.path.join(work, f'{name}-{index}-{side.split()[0]}')
    os.makedirs(where)
    pipeline_file = os.path.join(where, 'pipeline.py')
    with open(pipeline_file, 'w') as f:
        f.write(PIPELINE.format(name=name))
    data = os.path.join(EXAMPLES, name, 'data')
    env = {'SLUICE_CACHE_DIR': os.path.join(where, 'cache')}
    if side == SIDES[0]:
        env.update(ROOT=os.path.join(where, 'root'), DATA=data)
    else:
        bucket = f'bench-{name}-{index}'
        client.create_bucket(Bucket=bucket)
        for path in glob.glob(os.path.join(data, '*.csv')):
            client.upload_file(path, bucket, f'data/{os.path.basename(path)}')
        env.update(s3_env, ROOT=f's3://{bucket}/root', DATA=f's3://{bucket}/data')
    args = ['-m', 'sluice.ui.cli', 'run', pipeline_file, '-q', '--metadata', f"sqlite:///{where}/metadata.db"]
    executed, _ = run_python(args, cwd=where, env=env)
    cached, _ = run_python(args, cwd=where, env=env)
    return executed, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--pipelines', default='penguin,taxi')
    args = parser.parse_args()
    print(machine())
    server, client, s3_env = start_s3()
    work = tempfile.mkdtemp(prefix='sluice-storage-bench-')
    try:
        for name in args.pipelines.split(','):
            times = {(side, kind): [] for side in SIDES for kind in ('executed', 'cached')}
            for i in range(args.repeat):
                for side in turns(SIDES, i):
                    executed, cached = one_side(name, side, work, client, s3_env, i)
                    times[(side, 'executed')].append(executed)
                    times[(side, 'cached')].append(cached)
            for kind, label in (('executed', 'run executing every node'), ('cached', 'cached re-run')):
                local, remote = times[(SIDES[0], kind)], times[(SIDES[1], kind)]
                print(f'{name}, {label}: {SIDES[0]} {spread(local, unit=" s")}; {SIDES[1]} {spread(remote, unit=" s")}; '
                      f'S3 / local {spread(ratios(remote, local), unit="x")}')
    finally:
        shutil.rmtree(work, ignore_errors=True)
        server.stop()


if __name__ == '__main__':
    main()
