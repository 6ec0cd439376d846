"""The penguin pipeline run as a user runs it with its root, its input data and its push destination
on an object store (``s3://`` on moto, ``gs://`` on a Cloud Storage emulator), and its metadata store
on the local disk: ``sluice`` commands in fresh processes, the store and the bucket read back."""
from __future__ import annotations

import os
import subprocess
import sys

from sluice.metadata import MetadataStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'pipelines', 'examples', 'penguin', 'data', 'penguins.csv')
PIPELINE = '''
import os
from sluice.examples.penguin import penguin_pipeline as penguin


def create_pipeline():
    return penguin.create_pipeline(root=os.environ['ROOT'], data=os.environ['DATA'],
                                   push_destination=os.environ['DEST'],
                                   train_steps=int(os.environ.get('STEPS', '10')))
'''


class StorePenguin:
    """The penguin pipeline with its root, data and destination in one new bucket of ``server`` (the
    conftest's S3 or GCS), under ``scheme``://."""

    def __init__(self, server, work, scheme: str):
        self.server, self.work, self.scheme = server, work, scheme
        self.bucket = server.bucket('penguin')
        self.root = f'{scheme}://{self.bucket}/runs/penguin'
        self.dest = f'{scheme}://{self.bucket}/serving/penguin'
        self.data_key = 'incoming/penguins.csv'
        server.upload(DATA, self.bucket, self.data_key)
        self.file = work / 'pipeline.py'
        self.file.write_text(PIPELINE)
        self.url = f"sqlite:///{work / 'metadata.db'}"
        self.env = {**os.environ, **server.env, 'PYTHONPATH': REPO, 'ROOT': self.root,
                    'DATA': f'{scheme}://{self.bucket}/incoming', 'DEST': self.dest,
                    'SLUICE_CACHE_DIR': str(work / 'cache'), 'AWS_EC2_METADATA_DISABLED': 'true'}

    @property
    def s3(self):
        return self.server

    def key(self, uri: str) -> str:
        """The object key of a URL in this bucket."""
        prefix = f'{self.scheme}://{self.bucket}/'
        assert uri.startswith(prefix), uri
        return uri[len(prefix):]

    def sluice(self, *args, kill_at=None, **env):
        environment = {**self.env, **env, **({'SLUICE_KILL_AT': kill_at} if kill_at else {})}
        environment = {k: v for k, v in environment.items() if v is not None}
        return subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args], cwd=self.work, env=environment,
                              capture_output=True, text=True, timeout=600)

    def run(self, *args, **env):
        return self.sluice('run', str(self.file), '--metadata', self.url, *args, **env)

    def store(self):
        return MetadataStore(self.url)

    def states(self, run_id):
        return {r.node_id: r.state for r in self.store().executions(run_id)}

    def newest_run(self):
        return max(self.store().runs('penguin'), key=lambda r: (r.create_time, r.run_id)).run_id

    def first_run_stored(self) -> tuple[str, list[str]]:
        """(the first run's id, the keys under the root): every node of it COMPLETE, every artifact
        it recorded under the root with objects there."""
        store, keys = self.store(), self.server.keys(self.bucket, 'runs/penguin/')
        run_id = min(store.runs('penguin'), key=lambda r: (r.create_time, r.run_id)).run_id
        assert set(self.states(run_id).values()) == {'COMPLETE'}, self.states(run_id)
        for execution in store.executions(run_id):
            for key, artifacts in store.node_outputs(run_id, execution.node_id).items():
                for artifact in artifacts:
                    assert artifact.uri.startswith(self.root + '/'), artifact.uri
                    prefix = self.key(artifact.uri) + '/'
                    assert [k for k in keys if k.startswith(prefix)], \
                        f'{execution.node_id}.{key}: no object under {artifact.uri}'
        return run_id, keys
