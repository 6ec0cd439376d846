"""One import name: the distribution installs `sluice` and nothing else at the top level, and a
user's own `pipelines/` or `components/` folder is theirs, beside an installed Sluice."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import sluice

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_FOLDERS = {'pipelines': 'sluice', 'components': 'sluice.components', 'metadata': 'sluice.metadata'}


def _source_modules(examples: bool = False) -> list[str]:
    """Every module of the three folders but the examples (pipeline and module files that users run,
    importing TensorFlow; the wheel test checks their files are there)."""
    names = []
    for folder, prefix in SOURCE_FOLDERS.items():
        for path in glob.glob(os.path.join(ROOT, folder, '**', '*.py'), recursive=True):
            rel = os.path.relpath(path, os.path.join(ROOT, folder))[:-3].split(os.sep)
            if rel[-1] == '__init__':
                rel = rel[:-1]
            names.append('.'.join([prefix, *rel]))
    return sorted(n for n in names if examples or not n.startswith('sluice.examples.'))


def test_pyproject_lists_every_package_folder():
    import tomllib
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        listed = tomllib.load(f)['tool']['setuptools']['packages']
    folders = sorted({name.rpartition('.')[0] if not os.path.isdir(os.path.join(ROOT, *_folder_parts(name)))
                      else name for name in _source_modules(examples=True)})
    assert sorted(listed) == folders


def _folder_parts(module: str) -> list[str]:
    for folder, prefix in sorted(SOURCE_FOLDERS.items(), key=lambda kv: -len(kv[1])):
        if module == prefix or module.startswith(prefix + '.'):
            return [folder, *module[len(prefix):].split('.')[1:]]
    raise AssertionError(module)


def _user_project(tmp_path) -> str:
    """A user's project with its own `pipelines` and `components` packages."""
    for name in ('pipelines', 'components', 'metadata'):
        (tmp_path / name).mkdir()
        (tmp_path / name / '__init__.py').write_text(f'MINE = {name!r}\n')
    return str(tmp_path)


PROBE = textwrap.dedent('''
    import importlib, json, sys
    import pipelines, components, metadata
    import sluice
    from sluice import Pipeline, Retry, LocalDagRunner
    from sluice.components import CsvExampleGen, Pusher
    from sluice.tfx import v1 as tfx
    failed = {}
    for name in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  (reported by the test)
            failed[name] = repr(e)
    print(json.dumps({'sluice': sluice.__file__, 'components': sluice.components.__file__,
                      'mine': [pipelines.MINE, components.MINE, metadata.MINE],
                      'tfx': tfx.components.Trainer.__module__, 'failed': failed,
                      'tf_loaded': 'tensorflow' in sys.modules}))
''')


def test_the_editable_install_maps_the_three_folders_into_sluice(tmp_path):
    assert sluice.__file__ == os.path.join(ROOT, 'pipelines', '__init__.py')
    out = subprocess.run([sys.executable, '-c', PROBE, json.dumps(_source_modules())],
                         cwd=_user_project(tmp_path), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen['mine'] == ['pipelines', 'components', 'metadata']  # the user's, not Sluice's
    assert seen['components'] == os.path.join(ROOT, 'components', '__init__.py')
    assert seen['failed'] == {}


def test_a_wheel_installs_only_sluice_and_works_beside_a_users_pipelines_folder(tmp_path):
    wheels = tmp_path / 'wheels'
    # From a copy of the source: a build/ folder left in the checkout could add files that are gone.
    source = tmp_path / 'source'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        '.git', '.venv*', 'build', '*.egg-info', 'runs', '__pycache__', 'tests', 'bench', 'notebooks', 'docs'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheels),
                    str(source)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = glob.glob(str(wheels / 'sluice_ml-*.whl'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The wheel into the new venv (no dependencies: those are this environment's, added below as a
    # plain path, so this environment's editable Sluice is not visible there).
    subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '-q', wheel],
                   check=True, capture_output=True, timeout=600)
    top = sorted(n for n in os.listdir(site) if not n.endswith(('.dist-info', '.pth')) and n != '__pycache__')
    assert top == ['sluice']
    with open(os.path.join(site, 'zz_deps.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    out = subprocess.run([python, '-c', PROBE, json.dumps(_source_modules())], cwd=_user_project(tmp_path),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen['sluice'] == os.path.join(site, 'sluice', '__init__.py')
    assert seen['components'] == os.path.join(site, 'sluice', 'components', '__init__.py')
    assert seen['mine'] == ['pipelines', 'components', 'metadata']
    assert seen['tfx'].startswith('sluice.')
    assert seen['failed'] == {}
    # the examples and their data are in the wheel, and the console script runs
    for example in ('penguin/data/penguins.csv', 'penguin/penguin_pipeline.py', 'taxi/data/taxi.csv',
                    'demo/demo_pipeline.py'):
        assert os.path.exists(os.path.join(site, 'sluice', 'examples', example)), example
    help_out = subprocess.run([str(venv / 'bin' / 'sluice'), '--help'], capture_output=True, text=True,
                              cwd=str(tmp_path), timeout=300)
    assert help_out.returncode == 0, help_out.stderr
    assert 'sluice run' in help_out.stdout or 'run' in help_out.stdout.split()


def test_importing_sluice_and_its_components_loads_no_tensorflow(tmp_path):
    code = ('import sys, sluice, sluice.components, sluice.ui.cli; from sluice import Pipeline; '
            'print(sorted(m for m in ("tensorflow", "tensorflow_data_validation", "tensorflow_model_analysis", '
            '"apache_beam") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


FIRST_USES = {  # a package Sluice defers (sluice/deferred.py): what a user may do with it first
    'grpc: an attribute': ('grpc', 'import grpc; grpc.insecure_channel'),
    'grpc: from-import': ('grpc', 'from grpc import RpcError'),
    'grpc: a submodule': ('grpc', 'import grpc.aio'),
    'grpc: a submodule of a submodule': ('grpc', 'from grpc.experimental import aio'),
    "grpc: ML-Metadata's own gRPC client": ('grpc', (
        'from ml_metadata.metadata_store import metadata_store as m\n'
        'from ml_metadata.proto import metadata_store_pb2 as pb\n'
        'config = pb.MetadataStoreClientConfig(host="127.0.0.1", port=9, client_timeout_sec=1)\n'
        'try:\n'
        '    m.MetadataStore(config).get_artifact_types()\n'
        'except Exception as e:\n'
        '    assert type(e).__name__ in ("UnavailableError", "DeadlineExceededError"), repr(e)\n'
        'assert m.grpc.RpcError is sys.modules["grpc"].RpcError\n')),
    'bigquery: from-import': ('google.cloud.bigquery', 'from google.cloud import bigquery; bigquery.Client'),
    'bigquery: dotted import': ('google.cloud.bigquery', 'import google.cloud.bigquery; google.cloud.bigquery.Table'),
    'bigquery: a submodule': ('google.cloud.bigquery', 'from google.cloud.bigquery.client import Client'),
    "bigquery: Beam's BigQuery IO": ('google.cloud.bigquery', (
        'from apache_beam.io.gcp import bigquery_tools\n'
        'assert bigquery_tools.gcp_bigquery.Client is sys.modules["google.cloud.bigquery"].Client\n')),
}


@pytest.mark.parametrize('use', sorted(FIRST_USES))
def test_a_deferred_package_is_imported_on_first_use_only_and_then_once(tmp_path, use):
    """What third-party packages import that Sluice never uses is imported on first use (the CLI's
    start, every Beam process's); whatever touches it first gets the real package, loaded once."""
    package, first_use = FIRST_USES[use]
    # What a Sluice process imports before it (Beam, which uses gRPC itself, only where it is the first use)
    before = 'sluice.ui.cli, sluice.metadata' if package == 'grpc' else \
        'sluice, apache_beam' if 'Beam' in use else 'sluice.ui.cli'
    code = (f'import sys, collections, importlib.machinery as m\nimport {before}\nname = {package!r}\n'
            'runs = collections.Counter()\n'
            'execute = m.SourceFileLoader.exec_module\n'
            'def counted(self, module):\n'
            '    runs[module.__name__] += 1\n'
            '    return execute(self, module)\n'
            'm.SourceFileLoader.exec_module = counted\n'
            'assert type(sys.modules[name]).__name__ == "_Deferred", type(sys.modules[name])\n'
            f'assert not [m for m in sys.modules if m.startswith(name + ".")], "imported with {before}"\n'
            f'{first_use}\n'
            'real = sys.modules[name]\n'
            'assert type(real).__name__ == "module", type(real)\n'
            'assert runs[name] == 1 and max(runs.values()) == 1, [k for k, n in runs.items() if n > 1]\n'
            'module = __import__(name, fromlist=["_"])\n'
            'assert module is real\n'
            'if name == "grpc":\n'
            '    assert real._cython.cygrpc is sys.modules["grpc._cython.cygrpc"]\n'
            '    assert real.aio is sys.modules["grpc.aio"]\n'
            'else:\n'
            '    from google.cloud import bigquery\n'
            '    assert bigquery.client is sys.modules["google.cloud.bigquery.client"]\n'
            '    assert bigquery.Client is sys.modules["google.cloud.bigquery.client"].Client\n'
            'print("ok")\n')
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == 'ok'


def test_tensorflow_gets_pythons_own_distutils_not_setuptools(tmp_path):
    """TensorFlow's import of distutils, answered by setuptools' shim, imported setuptools and
    pkg_resources (0.15 s of each TensorFlow import, bench/startup.py); after `import sluice` it is
    Python's own."""
    code = ('import sys, sluice, tensorflow, distutils, sysconfig\n'
            'print(distutils.__file__.startswith(sysconfig.get_paths()["stdlib"]), "setuptools" in sys.modules,'
            ' "pkg_resources" in sys.modules)')
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['True', 'False', 'False'], out.stdout
