"""A password-protected PostgreSQL store (a server of its own, SCRAM authentication, so a wrong or
missing password is refused): a run, its resume, show, runs, report and both exports through the
`sluice` command, the password given in the URL and through $SLUICE_METADATA_PASSWORD; then no
output, no file under the pipeline roots (run logs included), no report or exported file and no value
in the store (the pickled pipeline stored with a run included) holds the password."""
from __future__ import annotations

import base64
import binascii
import os
import pathlib
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from conftest import postgres_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PIPELINE = '''
import sys
sys.path.insert(0, {tests!r})
from sluice import Pipeline
from dummies import Flaky, Source, Upper

def create_pipeline():
    source = Source(input_base={input!r})
    flaky = Flaky(counter={counter!r}, fail_times=1)
    upper = Upper(text=source.outputs['text'])
    return Pipeline('secret', {root!r}, [source, flaky, upper])
'''


@dataclass
class Server:
    port: int
    password: str
    bindir: str

    def url(self, db: str, password: str | None = None) -> str:
        auth = 'sluice' if password is None else f'sluice:{quote(password, safe="")}'
        return f'postgresql://{auth}@127.0.0.1:{self.port}/{db}'

    def client_env(self) -> dict[str, str]:
        return {**os.environ, 'PGPASSWORD': self.password}


@pytest.fixture(scope='module')
def scram_server():
    """A PostgreSQL server whose superuser `sluice` logs in with a password only (scram-sha-256)."""
    password = f'Pw{secrets.token_hex(8)}#p@ss/x'  # needs percent-encoding in a URL
    with postgres_server('sluice-pg-scram-', max_connections=30, password=password) as (port, bindir):
        server = Server(port, password, bindir)
        for db in ('mlmd_a', 'mlmd_b'):
            subprocess.run([f'{bindir}/createdb', '-h', '127.0.0.1', '-p', str(port), '-U', 'sluice', db],
                           check=True, env=server.client_env(), capture_output=True, timeout=60)
        yield server


def forms(password: str) -> list[str]:
    """The password as it may leak: as given, percent-encoded, and its random core."""
    return [password, quote(password, safe=''), quote(password), re.search(r'[0-9a-f]{16}', password).group(0)]


def leaks(text: str, password: str) -> list[str]:
    return [f for f in forms(password) if f in text]


class Cli:
    """The `sluice` command in a process of its own, in ``work``, without any password in its
    environment unless given; keeps everything it printed."""

    def __init__(self, work: pathlib.Path, no_pgpass: pathlib.Path) -> None:
        self.work, self.printed = work, []
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ('SLUICE_METADATA', 'SLUICE_METADATA_PASSWORD', 'PGPASSWORD')}
        self.env['PGPASSFILE'] = str(no_pgpass)

    def __call__(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, '-m', 'sluice.ui.cli', *args], capture_output=True, text=True,
                              cwd=self.work, env={**self.env, **(env or {})}, timeout=600)
        self.printed.extend([done.stdout, done.stderr])  # what it printed (its arguments are the test's own)
        return done


def test_no_password_in_output_logs_exports_or_the_store(scram_server, tmp_path, text_dir):
    server, password = scram_server, scram_server.password
    work = tmp_path / 'work'
    work.mkdir()
    files = {}
    for name in ('a', 'b'):  # a store and a pipeline root each; one Flaky counter: it fails on its first call only
        files[name] = work / f'secret_{name}.py'
        files[name].write_text(PIPELINE.format(tests=os.path.join(REPO, 'tests'), input=str(text_dir),
                                               counter=str(tmp_path / 'calls.txt'), root=str(work / f'root_{name}')))
    sluice = Cli(work, tmp_path / 'no-pgpass')
    run_a, run_b = run_both_ways(sluice, server, files, work)
    read_both_ways(sluice, server, run_a, run_b, work)
    read_with_a_password_file(sluice, server, tmp_path / 'pgpass')  # outside the directory searched below
    export_both(sluice, server, files['a'], work)

    # A wrong or a missing password: refused, with where, who and which password, but not the password.
    wrong = sluice('runs', '--metadata', server.url('mlmd_a', 'not-' + password))
    missing = sluice('runs', '--metadata', server.url('mlmd_a'))
    for done, which in ((wrong, 'the one in the URL'), (missing, 'none')):
        assert done.returncode == 2
        assert (f"127.0.0.1:{server.port} answers but refused user 'sluice' on database 'mlmd_a'" in done.stderr
                and f'the password used: {which}' in done.stderr), done.stderr

    # Nothing printed, no file written, no value in either store holds the password in any form.
    found = {'output': leaks('\n'.join(sluice.printed), password)}
    written = [p for p in work.rglob('*') if p.is_file()]
    assert any('.sluice-logs' in p.parts for p in written)  # the run logs are among them
    for path in written:
        found[str(path)] = leaks(path.read_text(errors='replace'), password)
    for db in ('mlmd_a', 'mlmd_b'):
        values = dump(server, db)
        assert f'postgresql://sluice@127.0.0.1:{server.port}/{db}' in values  # the pickled pipeline's URL, bare
        found[db] = leaks(values, password)
    assert {k: v for k, v in found.items() if v} == {}


def run_both_ways(sluice: Cli, server: Server, files: dict, work: pathlib.Path) -> tuple[str, str]:
    """(a) The password in the URL: a run whose Flaky node fails once, then its resume on the Beam
    runner, quiet (its progress goes to the run log); (b) a run whose URL has none, the password in
    $SLUICE_METADATA_PASSWORD. Their run ids."""
    url_a = server.url('mlmd_a', server.password)
    first = sluice('run', str(files['a']), '--metadata', url_a)
    assert first.returncode == 1, first.stdout + first.stderr
    run_a = re.search(r'^Run (\S+) of pipeline', first.stdout, re.M).group(1)
    assert f'store postgresql://sluice:***@127.0.0.1:{server.port}/mlmd_a' in first.stdout
    assert f"sluice resume {run_a} --metadata 'postgresql://sluice:***@127.0.0.1:{server.port}/mlmd_a'" in first.stdout
    resumed = sluice('resume', run_a, '--runner', 'beam', '--metadata', url_a, '--quiet')
    assert resumed.returncode == 0 and f'Run {run_a} COMPLETE' in resumed.stdout, resumed.stdout + resumed.stderr
    log = (work / 'root_a' / '.sluice-logs' / f'{run_a}.log').read_text()
    assert f'Resume plan for run {run_a}' in log and 'Flaky' in log

    second = sluice('run', str(files['b']), '--metadata', server.url('mlmd_b'),
                    env={'SLUICE_METADATA_PASSWORD': server.password})
    assert second.returncode == 0 and 'COMPLETE' in second.stdout, second.stdout + second.stderr
    return run_a, re.search(r'^Run (\S+) of pipeline', second.stdout, re.M).group(1)


def read_both_ways(sluice: Cli, server: Server, run_a: str, run_b: str, work: pathlib.Path) -> None:
    """report, show and runs: the URL with its password, without one, and as Sluice prints it (*** is none)."""
    url_a, by_env = server.url('mlmd_a', server.password), {'SLUICE_METADATA_PASSWORD': server.password}
    report = work / 'report.html'
    assert sluice('report', run_a, '-o', str(report), '--metadata', url_a).returncode == 0
    assert f'Store postgresql://sluice:***@127.0.0.1:{server.port}/mlmd_a' in report.read_text()
    shown = sluice('show', run_a, '--metadata', url_a)
    assert shown.returncode == 0 and f'Store: postgresql://sluice:***@127.0.0.1:{server.port}/mlmd_a' in shown.stdout
    listed = sluice('runs', '--metadata', server.url('mlmd_b'), env=by_env)
    assert listed.returncode == 0 and run_b in listed.stdout
    again = sluice('show', run_b, '--metadata', server.url('mlmd_b').replace('sluice@', 'sluice:***@'), env=by_env)
    assert again.returncode == 0 and 'COMPLETE' in again.stdout, again.stderr


def read_with_a_password_file(sluice: Cli, server: Server, pgpass: pathlib.Path) -> None:
    """The password from a password file (its first matching line: ``mlmd_*`` is no wildcard), used
    only while nobody but its owner may read it, as libpq does."""
    escaped = server.password.replace('\\', '\\\\').replace(':', '\\:')
    pgpass.write_text(f'# host:port:database:user:password\n127.0.0.1:{server.port}:mlmd_*:sluice:wrong\n'
                      f'127.0.0.1:{server.port}:*:sluice:{escaped}\n')
    pgpass.chmod(0o600)
    assert sluice('runs', '--metadata', server.url('mlmd_b'), env={'PGPASSFILE': str(pgpass)}).returncode == 0
    pgpass.chmod(0o644)
    ignored = sluice('runs', '--metadata', server.url('mlmd_b'), env={'PGPASSFILE': str(pgpass)})
    assert ignored.returncode == 2 and f'password file {pgpass} has group or world access' in ignored.stderr


def export_both(sluice: Cli, server: Server, pipeline_file: pathlib.Path, work: pathlib.Path) -> None:
    """The Airflow DAG and the KFP spec carry the URL without its password."""
    url_a = server.url('mlmd_a', server.password)
    dag, spec = work / 'secret_dag.py', work / 'secret.yaml'
    assert sluice('export', 'airflow', str(pipeline_file), '-o', str(dag), '--metadata', url_a).returncode == 0
    done = sluice('export', 'kfp', str(pipeline_file), '--image', 'registry.example.com/sluice:1', '-o', str(spec),
                  '--metadata', url_a)
    assert done.returncode == 0 and 'SLUICE_METADATA_PASSWORD' in done.stdout
    bare = f'postgresql://sluice@127.0.0.1:{server.port}/mlmd_a'
    assert f'METADATA = {bare!r}' in dag.read_text() and f'- {bare}' in spec.read_text()


def dump(server: Server, db: str) -> str:
    """Every value of every table of the store, as text: bytea values (long strings, which ML-Metadata
    keeps packed in a proto) unpacked, and base64 values (the pickled pipeline stored with a run)
    decoded."""
    text = subprocess.run([f'{server.bindir}/pg_dump', '-h', '127.0.0.1', '-p', str(server.port), '-U', 'sluice',
                           '--data-only', db], check=True, capture_output=True, text=True, env=server.client_env(),
                          timeout=120).stdout
    assert 'pipeline_pickle' in text
    values = [text] + [bytes.fromhex(h).decode('latin-1') for h in re.findall(r'\\\\x([0-9a-f]+)', text)]
    decoded = []
    for blob in re.findall(r'[A-Za-z0-9+/]{200,}={0,2}', '\n'.join(values)):
        try:
            decoded.append(base64.b64decode(blob + '=' * (-len(blob) % 4)).decode('latin-1'))
        except (binascii.Error, ValueError):
            continue
    return '\n'.join(values + decoded)
