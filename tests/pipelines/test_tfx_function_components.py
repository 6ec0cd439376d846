"""TFX's Python function components on Sluice (``@tfx.dsl.components.component``): a pipeline file
in tmp_path (CsvExampleGen on a tiny CSV, then two function components exchanging value artifacts)
run through ``tfx.orchestration.LocalDagRunner`` and ``sluice run``, cached, rerun exactly where an
edit of a function (or a helper it calls) changed the code, failed and resumed; the value artifacts;
and the messages for what a function component gets wrong. Real ML-Metadata (SQLite), no mocks."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Optional, TypedDict

import apache_beam as beam
import pytest

from sluice import LocalDagRunner, Pipeline, Retry, load_pipeline
from sluice.components.component import Component, WiringError
from sluice.metadata import MetadataStore
from sluice.metadata.artifact import Boolean, Bytes, Examples, Float, Integer, JsonValue, String
from sluice.orchestration.explain import explain
from sluice.tfx import v1 as tfx
from sluice.tfx.v1.dsl import function_component as fc

C = tfx.dsl.components
SA = tfx.types.standard_artifacts
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PIPELINE = '''\
import glob
import gzip
import os
import struct
from typing import Optional

from sluice.tfx import v1 as tfx

C = tfx.dsl.components
SA = tfx.types.standard_artifacts


def count_records(pattern):
    n = 0
    for path in sorted(glob.glob(pattern)):
        with gzip.open(path, 'rb') as f:  # TFRecords: length, crc, payload, crc
            while len(head := f.read(12)) == 12:
                f.read(struct.unpack('<Q', head[:8])[0] + 4)
                n += 1
    return n


def scaled(n):
    return n * 1


@C.component
def Profile(examples: C.InputArtifact[SA.Examples], label: C.OutputArtifact[SA.String],
            threshold: C.Parameter[int] = 3) -> C.OutputDict(count=int, ok=bool):
    n = scaled(count_records(os.path.join(examples.uri, 'Split-*', '*.gz')))
    label.value = f'rows:{{n}}'
    return {{'count': n, 'ok': n > threshold}}


@C.component
def Report(label: str, count: int, ok: bool, report: C.OutputArtifact[SA.String],
           note: Optional[str] = None) -> C.OutputDict(summary=str, remark=Optional[str]):
    report.value = f'{{label}} count={{count}} ok={{ok}}'
    return {{'summary': f'{{label}}/{{count}}/{{ok}}', 'remark': note}}


def create_pipeline():
    root = {root!r}
    gen = tfx.components.CsvExampleGen(input_base={data!r})
    profile = Profile(examples=gen.outputs['examples'], threshold=4)
    report = Report(label=profile.outputs['label'], count=profile.outputs['count'], ok=profile.outputs['ok'])
    return tfx.dsl.Pipeline(
        pipeline_name='functions', pipeline_root=root, components=[gen, profile, report], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(root + '/m.db'),
        beam_pipeline_args=['--direct_num_workers=1'])
'''


@pytest.fixture
def project(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'rows.csv').write_text('a,b\n' + ''.join(f'{i},{"xy"[i % 2]}\n' for i in range(10)))
    (tmp_path / 'pipe.py').write_text(PIPELINE.format(root=str(tmp_path / 'root'), data=str(data)))
    return tmp_path


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def run(project):
    return tfx.orchestration.LocalDagRunner(progress=False).run(load_pipeline(str(project / 'pipe.py')))


def states(store, run_id):
    return {r.node_id: r.state for r in store.executions(run_id)}


def values(store, run_id, node_id):
    return {k: v[0].value for k, v in store.node_outputs(run_id, node_id).items()}


# -- a pipeline file: run, values in the store, cache, edits --------------------------------------------
def test_function_components_run_cache_and_rerun_exactly_what_an_edit_changed(project):
    first = run(project)
    store = MetadataStore(f"sqlite:///{project / 'root' / 'm.db'}")
    assert states(store, first.run_id) == {'CsvExampleGen': 'COMPLETE', 'Profile': 'COMPLETE', 'Report': 'COMPLETE'}
    # Execution types are the functions' names; parameters recorded as for any component.
    records = {r.node_id: r for r in store.executions(first.run_id)}
    assert {r.component_type for r in records.values()} == {'CsvExampleGen', 'Profile', 'Report'}
    assert json.loads(records['Profile'].properties['parameters']) == {'threshold': 4}
    # The values, read back from the store: the payload file and (small) the property.
    assert values(store, first.run_id, 'Profile') == {'label': 'rows:10', 'count': 10, 'ok': True}
    assert values(store, first.run_id, 'Report') == {'report': 'rows:10 count=10 ok=True',
                                                     'summary': 'rows:10/10/True', 'remark': None}
    profile = store.node_outputs(first.run_id, 'Profile')
    count, ok = profile['count'][0], profile['ok'][0]
    assert (type(count), type(ok)) == (Integer, Boolean)
    assert count.uri.endswith(f"/Profile/count/{records['Profile'].id}")
    assert pathlib.Path(count.uri, 'value').read_bytes() == b'10'
    assert count.custom_properties['value'] == 10 and ok.custom_properties['value'] == 1
    # Lineage: Report read Profile's artifacts.
    assert {k: v[0].id for k, v in records['Report'].inputs.items()} == {k: profile[k][0].id
                                                                         for k in ('label', 'count', 'ok')}

    # Comments and docstrings are not code; `sluice run FILE` in a fresh process: all cached.
    edit(project / 'pipe.py', "    n = scaled(", "    '''Counts rows.'''\n    # every split\n    n = scaled(")
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'sluice'), '--quiet', 'run',
                          str(project / 'pipe.py')], capture_output=True, text=True, cwd=str(project))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    second = max(store.runs('functions'), key=lambda r: r.create_time).run_id
    assert states(store, second) == {'CsvExampleGen': 'CACHED', 'Profile': 'CACHED', 'Report': 'CACHED'}

    # A helper the function calls, in the same file: that node and its downstream rerun.
    edit(project / 'pipe.py', 'return n * 1', 'return n * 2')
    third = run(project)
    assert states(store, third.run_id) == {'CsvExampleGen': 'CACHED', 'Profile': 'COMPLETE', 'Report': 'COMPLETE'}
    assert values(store, third.run_id, 'Report')['summary'] == 'rows:20/20/True'
    profile_run = [r for r in store.executions(third.run_id) if r.node_id == 'Profile'][0]
    assert 'code changed (executor source: pipe.py:Profile, pipe.py:scaled)' in explain(store, profile_run.id)

    # The body of the downstream function: only it reruns (the rest of its file is not its code).
    edit(project / 'pipe.py', "count={count}", "n={count}")
    fourth = run(project)
    assert states(store, fourth.run_id) == {'CsvExampleGen': 'CACHED', 'Profile': 'CACHED', 'Report': 'COMPLETE'}
    assert values(store, fourth.run_id, 'Report')['report'] == 'rows:20 n=20 ok=True'
    report_run = [r for r in store.executions(fourth.run_id) if r.node_id == 'Report'][0]
    assert 'code changed (executor source: pipe.py:Report)' in explain(store, report_run.id)


def test_the_key_covers_the_function_closure_helpers_in_other_files_too_and_nothing_else(tmp_path):
    (tmp_path / 'helpers.py').write_text('def shift(x):\n    return x + 1\n')
    (tmp_path / 'pipe.py').write_text(textwrap.dedent(f'''\
        from helpers import shift
        from sluice import Pipeline
        from sluice.tfx import v1 as tfx

        LIMIT = 5

        @tfx.dsl.components.component
        def A(n: tfx.dsl.components.Parameter[int]) -> tfx.dsl.components.OutputDict(m=int):
            return {{'m': min(shift(n), LIMIT)}}

        @tfx.dsl.components.component
        def B(m: int) -> tfx.dsl.components.OutputDict(k=int):
            return {{'k': m}}

        def create_pipeline():
            a = A(n=1)
            return Pipeline(name='p', pipeline_root={str(tmp_path / 'root')!r}, components=[a, B(m=a.outputs['m'])])
        '''))

    def files():
        nodes = load_pipeline(str(tmp_path / 'pipe.py')).components
        return [fc.implementation_parts(type(node))['files'] for node in nodes]

    a, b = files()
    assert sorted(a) == ['helpers.py', 'pipe.py:A', 'pipe.py:LIMIT',
                         'pipelines/tfx/v1/dsl/function_component.py']
    assert sorted(b) == ['pipe.py:B', 'pipelines/tfx/v1/dsl/function_component.py']
    edit(tmp_path / 'helpers.py', 'x + 1', 'x + 2')
    a2, b2 = files()
    assert a2['helpers.py'] != a['helpers.py'] and b2 == b
    edit(tmp_path / 'pipe.py', 'LIMIT = 5', 'LIMIT = 6')
    a3, b3 = files()
    assert a3['pipe.py:LIMIT'] != a2['pipe.py:LIMIT'] and a3['pipe.py:A'] != a2['pipe.py:A'] and b3 == b


# -- failure, resume, retries, use_beam --------------------------------------------------------------------
FAILING = '''\
from sluice.tfx import v1 as tfx

C = tfx.dsl.components
DIVISOR = 0


@C.component
def Source(n: C.Parameter[int]) -> C.OutputDict(num=int):
    return {{'num': n}}


@C.component
def Divide(n: int) -> C.OutputDict(q=float):
    return {{'q': 12 / DIVISOR}}


@C.component
def Show(q: float, text: C.OutputArtifact[tfx.types.standard_artifacts.String]):
    text.value = f'q={{q}}'


def create_pipeline():
    source = Source(n=12)
    divide = Divide(n=source.outputs['num'])
    return tfx.dsl.Pipeline(pipeline_name='failing', pipeline_root={root!r}, enable_cache=True,
                            components=[source, divide, Show(q=divide.outputs['q'])])
'''


def test_a_failing_function_is_failed_with_its_error_and_the_run_resumes_after_the_fix(tmp_path):
    (tmp_path / 'pipe.py').write_text(FAILING.format(root=str(tmp_path / 'root')))
    with pytest.raises(tfx.orchestration.RunFailed) as info:
        tfx.orchestration.LocalDagRunner(progress=False).run(load_pipeline(str(tmp_path / 'pipe.py')))
    result = info.value.result
    assert result.node_states() == {'Source': 'COMPLETE', 'Divide': 'FAILED', 'Show': 'SKIPPED'}
    store = MetadataStore(result.metadata)
    [failed] = [r for r in store.executions(result.run_id) if r.node_id == 'Divide']
    assert (failed.state, failed.error) == ('FAILED', 'ZeroDivisionError: division by zero')
    assert "return {'q': 12 / DIVISOR}" in failed.properties['error_details']

    edit(tmp_path / 'pipe.py', 'DIVISOR = 0', 'DIVISOR = 4')
    resumed = LocalDagRunner(progress=False).resume(None, result.run_id, metadata=result.metadata)
    assert resumed.run_id == result.run_id and resumed.state == 'COMPLETE'
    assert [(r.node_id, r.state) for r in store.executions(result.run_id)] == [
        ('Source', 'COMPLETE'), ('Divide', 'FAILED'), ('Divide', 'COMPLETE'), ('Show', 'COMPLETE')]
    assert values(store, result.run_id, 'Show') == {'text': 'q=3.0'}


def flaky_counter(path):
    with open(path, 'a') as f:
        f.write('x')
    return len(pathlib.Path(path).read_text())


@C.component
def Flaky(marker: C.Parameter[str]) -> C.OutputDict(tries=int):
    tries = flaky_counter(marker)
    if tries < 2:
        raise ConnectionError('the service is down')
    return {'tries': tries}


def test_with_retry_and_with_id_work_on_a_function_component(tmp_path):
    node = Flaky(marker=str(tmp_path / 'tries')).with_retry(Retry(attempts=2, delay=0)).with_id('flaky')
    pipeline = Pipeline(name='retry', pipeline_root=str(tmp_path / 'root'), components=[node])
    result = LocalDagRunner(progress=False).run(pipeline)
    store = MetadataStore(pipeline.metadata)
    assert [(r.node_id, r.component_type, r.state) for r in store.executions(result.run_id)] == [
        ('flaky', 'Flaky', 'FAILED'), ('flaky', 'Flaky', 'COMPLETE')]
    assert store.executions(result.run_id)[0].error == 'ConnectionError: the service is down'
    assert values(store, result.run_id, 'flaky') == {'tries': 2}


@C.component(use_beam=True)
def BeamSum(n: C.Parameter[int], out: C.OutputArtifact[SA.JsonValue],
            beam_pipeline: C.BeamComponentParameter[beam.Pipeline] = None) -> C.OutputDict(total=int):
    from apache_beam.options.pipeline_options import DirectOptions

    path = os.path.join(out.uri, 'total.txt')
    with beam_pipeline as p:
        _ = (p | beam.Create(range(n)) | beam.CombineGlobally(sum)
             | beam.Map(lambda t: pathlib.Path(path).write_text(str(t))))
    out.value = {'workers': beam_pipeline.options.view_as(DirectOptions).direct_num_workers}
    return {'total': int(pathlib.Path(path).read_text())}


def test_use_beam_gives_a_beam_pipeline_made_from_the_pipelines_beam_args(tmp_path):
    pipeline = Pipeline(name='beam', pipeline_root=str(tmp_path / 'root'), components=[BeamSum(n=5)],
                        beam_pipeline_args=['--direct_num_workers=1'])
    result = LocalDagRunner(progress=False).run(pipeline)
    assert result.node_states() == {'BeamSum': 'COMPLETE'}, result['BeamSum'].error
    assert values(MetadataStore(pipeline.metadata), result.run_id, 'BeamSum') == {'total': 10, 'out': {'workers': 1}}



@C.component
def Check(n: C.Parameter[int]) -> C.OutputDict(ok=bool, m=int):
    return {'ok': n > 2, 'm': n}


@C.component
def Act(m: int, table: C.Parameter[Dict[str, int]] = None) -> C.OutputDict(done=str, total=Dict[str, int]):
    return {'done': f'acted on {m}', 'total': {k: v + m for k, v in (table or {}).items()}}


def test_a_cond_reads_a_value_a_function_returned(tmp_path):
    def pipeline(n):
        check = Check(n=n)
        with tfx.dsl.Cond(check.outputs['ok'].future()[0].value == True):  # noqa: E712 (a predicate, not a test)
            act = Act(m=check.outputs['m'], table={'a': 1})
        return Pipeline(name='cond', pipeline_root=str(tmp_path / 'root'), components=[check, act])

    first = LocalDagRunner(progress=False).run(pipeline(3))
    assert first.node_states() == {'Check': 'COMPLETE', 'Act': 'COMPLETE'}, first['Act'].error
    store = MetadataStore(pipeline(3).metadata)
    assert values(store, first.run_id, 'Act') == {'done': 'acted on 3', 'total': {'a': 4}}
    second = LocalDagRunner(progress=False).run(pipeline(1))
    assert second.node_states() == {'Check': 'COMPLETE', 'Act': 'SKIPPED'}
    assert second['Act'].error == "condition Check.outputs['ok'].future()[0].value == True is false (False == True)"

# -- what a function component gets wrong: the messages ------------------------------------------------
def _wiring_error(source: str) -> str:
    """The message of decorating the function ``source`` defines (in this module's namespace)."""
    namespace = dict(globals())
    with pytest.raises(WiringError) as info:
        exec(textwrap.dedent(source), namespace)  # noqa: S102 - a test's own function definitions
    return str(info.value)


@pytest.mark.parametrize('source, message', [
    ('@C.component\ndef F(x): pass',
     "@component F: argument 'x' has no annotation; annotate it InputArtifact[T], OutputArtifact[T], Parameter[T], int, "
     'float, str, bytes, bool or Optional[...] of them, a JSON-compatible Dict[str, ...]/List[...], or '
     'BeamComponentParameter[beam.Pipeline].'),
    ('@C.component\ndef F(x: SA.Examples): pass',
     "@component F: argument 'x' is annotated with the artifact type Examples; say how it is used: "
     'InputArtifact[Examples] or OutputArtifact[Examples].'),
    ('@C.component\ndef F(x: set): pass',
     "@component F: argument 'x' is annotated set, which a component function cannot take; use InputArtifact[T], "
     'OutputArtifact[T], Parameter[T], int, float, str, bytes, bool or Optional[...] of them, a JSON-compatible '
     'Dict[str, ...]/List[...], or BeamComponentParameter[beam.Pipeline].'),
    ('@C.component\ndef F(x: C.InputArtifact[int]): pass',
     "@component F: argument 'x' is annotated InputArtifact[int]: InputArtifact[T] takes an artifact type "
     '(tfx.types.standard_artifacts.Examples, a components.Artifact subclass) or List[T].'),
    ('@C.component\ndef F(x: C.OutputArtifact[SA.String] = None): pass',
     "@component F: argument 'x': an OutputArtifact cannot have a default (every output is written)."),
    ('@C.component\ndef F(x: C.Parameter[set]): pass',
     "@component F: argument 'x' is annotated Parameter[set]: Parameter[T] takes int, float, str, bool, a "
     'JSON-compatible Dict[str, ...] or List[...], or a protobuf message class.'),
    ('@C.component\ndef F(x: C.Parameter[Dict[int, str]]): pass',
     "@component F: argument 'x' is annotated Parameter[Dict[int, str]]: Parameter[T] takes int, float, str, bool, a "
     'JSON-compatible Dict[str, ...] or List[...], or a protobuf message class.'),
    ("@C.component\ndef F(x: C.Parameter[int] = 'three'): pass",
     "@component F: argument 'x': the default 'three' is not a int (nor None)."),
    ('@C.component\ndef F(x: int, id: C.Parameter[str]): pass',
     "@component F: argument 'id' has a name Sluice components reserve (for their methods and attributes); rename it."),
    ('@C.component\ndef F(*xs: int): pass',
     "@component F: argument 'xs': a component function takes named arguments only (no *args, **kwargs or "
     'positional-only arguments).'),
    ('@C.component\ndef F(x: int) -> int: pass',
     '@component F: the return annotation int is not OutputDict(name=type, ...) or a TypedDict; annotate the values it '
     'returns that way (output artifacts are OutputArtifact[T] arguments).'),
    ('@C.component\ndef F(x: int) -> C.OutputDict(y=SA.Model): pass',
     "@component F: the returned value 'y' is an artifact; declare it as an argument `y: OutputArtifact[T]` instead of "
     'in the OutputDict.'),
    ('@C.component\ndef F(x: int) -> C.OutputDict(x=int): pass',
     "@component F: the returned value 'x' has the name of an argument; rename it."),
    ('@C.component\ndef F(x: int) -> C.OutputDict(y=set): pass',
     "@component F: the returned value 'y' is declared set; a returned value is an int, float, str, bytes, bool (or "
     'Optional[...] of one) or a JSON-compatible Dict[str, ...]/List[...].'),
    ('@C.component(use_beam=True)\ndef F(x: int): pass',
     '@component F: use_beam=True needs exactly one argument `beam_pipeline: BeamComponentParameter[beam.Pipeline] = '
     'None`; it has 0.'),
    ('@C.component\ndef F(p: C.BeamComponentParameter[beam.Pipeline] = None): pass',
     "@component F: argument 'p' is a BeamComponentParameter: decorate the function @component(use_beam=True)."),
    ('@C.component\ndef F(x: int, y: Undefined): pass',
     "@component F: the annotation of argument 'y', 'Undefined', does not evaluate: NameError: name 'Undefined' is "
     'not defined'),
    ("@C.component\ndef F(x: 'Optional[int]') -> 'C.OutputDict(y=List[str])': pass", None),
    ('F = C.component(lambda x: x)',
     '@component decorates a function defined with def; got function '),
])
def test_a_wrong_function_is_refused_when_decorated_naming_the_function_and_argument(source, message):
    if message is None:  # annotations given as strings (twice over, under `from __future__ import annotations`)
        namespace = dict(globals())
        exec(textwrap.dedent(source), namespace)  # noqa: S102
        assert {k: v.type for k, v in namespace['F'].INPUTS.items()} == {'x': Integer}
        assert {k: v.type for k, v in namespace['F'].OUTPUTS.items()} == {'y': JsonValue}
        return
    got = _wiring_error(source)
    assert got == message or (message.endswith(' ') and got.startswith(message)), got


@C.component
def Scale(x: int, factor: C.Parameter[float], config: C.Parameter[Dict[str, List[int]]] = None,
          note: C.Parameter[str] = None) -> C.OutputDict(y=float):
    return {'y': x * factor}


@C.component
def Emit(n: C.Parameter[int], meta: C.Parameter[Dict[str, Any]] = None) -> C.OutputDict(n_out=int):
    return {'n_out': n}


def test_wiring_a_function_component_wrongly_names_it_and_the_argument():
    emit = Emit(n=2)
    with pytest.raises(WiringError, match=r"^Scale\(\) is missing the required parameter 'factor' \(float\)\.$"):
        Scale(x=emit.outputs['n_out'])
    with pytest.raises(WiringError, match=r"^Scale\(\) is missing the required input 'x' \(a channel of Integer\)\.$"):
        Scale(factor=2.0)
    with pytest.raises(WiringError) as info:
        Scale(x=3, factor=2.0)
    assert str(info.value) == ("Scale(x=...) is an input of a Integer artifact (annotated int): pass another "
                               "component's output, producer.outputs['...']; to pass int 3 here, annotate it "
                               'Parameter[int].')
    with pytest.raises(WiringError) as info:
        Scale(x=emit.outputs['n_out'], factor=2.0, config={'a': [1, 'two']})
    assert str(info.value) == "Scale(config=...): expects Dict[str, List[int]]; got {'a': [1, 'two']}."
    with pytest.raises(WiringError) as info:
        Scale(x=emit.outputs['n_out'], factor=2.0, note=object)
    assert str(info.value).startswith("Scale(note=...) expects str; got type <class 'object'>")
    with pytest.raises(WiringError, match=r'^Scale\(\) takes keyword arguments, one per input and parameter; got 1 '
                                          r'positional\.$'):
        Scale(emit.outputs['n_out'])
    with pytest.raises(WiringError, match=r"^Scale\(x=...\) expects a channel of Integer; got Float from "
                                          r"Scale.outputs\['y'\]\.$"):
        Scale(x=Scale(x=emit.outputs['n_out'], factor=1.0).outputs['y'], factor=2.0)
    with pytest.raises(WiringError, match=r"^Emit\(n=...\) expects int; got str '2'\.$"):
        Emit(n='2')
    with pytest.raises(WiringError, match=r"^Emit\(meta=...\): \{'when': <object object at .*>\} is not JSON \(Object "
                                          r'of type object is not JSON serializable\); a Parameter must be JSON\.$'):
        Emit(n=1, meta={'when': object()})
    with pytest.raises(WiringError, match=r"^Emit has no output 'nout'; did you mean 'n_out'\? Its outputs: n_out\.$"):
        _ = emit.outputs['nout']


@C.component
def WrongKey(x: C.Parameter[int]) -> C.OutputDict(count=int):
    return {'cuont': x}


@C.component
def WrongType(x: C.Parameter[int]) -> C.OutputDict(count=int):
    return {'count': str(x)}


@C.component
def NotADict(x: C.Parameter[int]) -> C.OutputDict(count=int):
    return x


@C.component
def NoneForInt(x: C.Parameter[int]) -> C.OutputDict(count=int, maybe=Optional[int]):
    return {'count': None, 'maybe': None}


@C.component
def Unwritten(x: C.Parameter[int], text: C.OutputArtifact[SA.String]):
    return None


@C.component
def WrongJson(x: C.Parameter[int]) -> C.OutputDict(table=Dict[str, int]):
    return {'table': {'a': 'b'}}


def test_what_a_function_returns_wrongly_fails_its_node_naming_the_function_and_key(tmp_path):
    nodes = [WrongKey(x=1), WrongType(x=1), NotADict(x=1), NoneForInt(x=1), Unwritten(x=1), WrongJson(x=1)]
    pipeline = Pipeline(name='wrong', pipeline_root=str(tmp_path / 'root'), components=nodes, retry=Retry(attempts=2))
    result = LocalDagRunner(progress=False).run(pipeline)
    store = MetadataStore(pipeline.metadata)
    assert {r.node_id: (r.state, r.error) for r in store.executions(result.run_id)} == {
        'WrongKey': ('FAILED', "ReturnValueError: @component WrongKey returned the key 'cuont', which its OutputDict "
                               "does not declare; did you mean 'count'? It declares: count."),
        'WrongType': ('FAILED', "ReturnValueError: @component WrongType returned str '1' for 'count', declared int."),
        'NotADict': ('FAILED', 'ReturnValueError: @component NotADict returned int 1; it returns a dict of count (its '
                               'OutputDict).'),
        'NoneForInt': ('FAILED', "ReturnValueError: @component NoneForInt returned None for 'count', declared int "
                                 '(Optional[int] allows None).'),
        'Unwritten': ('FAILED', 'ReturnValueError: @component Unwritten did not set text.value (its output String).'),
        'WrongJson': ('FAILED', "ReturnValueError: @component WrongJson returned dict {'a': 'b'} for 'table', declared "
                                'Dict[str, int].'),
    }  # one execution each: a retry cannot fix code
    assert [store.node_outputs(result.run_id, n.id) for n in nodes] == [None] * len(nodes)  # nothing published
    assert not any(files for _, _, files in os.walk(tmp_path / 'root' / 'Unwritten'))  # its output removed


# -- the value artifacts ---------------------------------------------------------------------------------
@pytest.mark.parametrize('cls, value, payload, recorded', [
    (String, 'héllo', 'héllo'.encode(), 'héllo'),
    (Integer, -12, b'-12', -12),
    (Integer, 2**70, str(2**70).encode(), None),  # more than an MLMD int holds: the file only
    (Float, 0.1, b'0.1', 0.1),
    (Float, float('-inf'), b'-Infinity', None),
    (Boolean, False, b'0', 0),
    (Bytes, b'\x00\xff', b'\x00\xff', None),
    (JsonValue, {'a': [1, None]}, b'{"a": [1, null]}', '{"a": [1, null]}'),
    (String, 'x' * 2000, b'x' * 2000, None),
])
def test_value_artifacts_write_tfx_payloads_and_record_small_values(tmp_path, cls, value, payload, recorded):
    artifact = cls(uri=str(tmp_path))
    artifact.value = value
    assert (tmp_path / 'value').read_bytes() == payload
    assert artifact.custom_properties.get('value') == recorded and artifact.custom_properties['__is_null__'] == 0
    assert cls(uri=str(tmp_path)).value == value  # read back from the file
    if recorded is not None:  # the files are gone: the store still says
        (tmp_path / 'value').unlink()
        assert cls(uri=str(tmp_path), **artifact.custom_properties).value == value


def test_value_artifacts_none_wrong_types_and_tfx_style_uris(tmp_path):
    artifact = Integer(uri=str(tmp_path))
    artifact.value = None
    assert (tmp_path / 'value').read_bytes() == b'' and artifact.custom_properties == {'__is_null__': 1}
    assert Integer(uri=str(tmp_path), __is_null__=1).value is None
    with pytest.raises(TypeError, match=r'^Integer holds an int; got bool True\.$'):
        artifact.value = True
    with pytest.raises(TypeError, match=r"^String holds a str; got bytes b'x'\.$"):
        String(uri=str(tmp_path)).value = b'x'
    with pytest.raises(ValueError, match=r'^String\(.*\) holds no value: .*/nothing/value does not exist \(nothing '
                                         r'set its \.value\)\.$'):
        _ = String(uri=str(tmp_path / 'nothing')).value
    (tmp_path / 'tfx' / 'value').parent.mkdir()
    (tmp_path / 'tfx' / 'value').write_bytes(b'2.5')  # TFX's own layout: the uri is the payload file
    assert Float(uri=str(tmp_path / 'tfx' / 'value')).value == 2.5
    assert (SA.String, SA.Integer, SA.Float, SA.Boolean, SA.Bytes, SA.JsonValue) == (
        String, Integer, Float, Boolean, Bytes, JsonValue)


# -- the names, as TFX has them ---------------------------------------------------------------------------
class Totals(TypedDict):
    total: int
    mean: Optional[float]


@C.component
def Sum(numbers: C.Parameter[List[int]], rows: C.InputArtifact[List[Examples]] = None) -> Totals:
    return {'total': sum(numbers), 'mean': sum(numbers) / len(numbers) if numbers else None}


def test_the_decorator_makes_a_sluice_component_class_with_tfx_names():
    assert [name for name in C.__all__] == ['component', 'Parameter', 'InputArtifact', 'OutputArtifact', 'OutputDict',
                                            'BeamComponentParameter']
    assert tfx.dsl.components is fc and 'components' in tfx.dsl.__all__
    assert issubclass(Sum, Component) and issubclass(Sum, fc.FunctionComponent) and Sum.__name__ == 'Sum'
    assert {k: v.type for k, v in Sum.INPUTS.items()} == {'rows': Examples}
    assert {k: v.type for k, v in Sum.OUTPUTS.items()} == {'total': Integer, 'mean': Float}
    assert list(Sum.PARAMETERS) == ['numbers'] and Sum.INPUTS['rows'].optional
    node = Sum(numbers=[1, 2])
    assert (node.id, node.component_type, node.with_id('sums').id) == ('Sum', 'Sum', 'sums')
    assert Sum.test_call(numbers=[1, 2, 3]) == {'total': 6, 'mean': 2.0}
    with pytest.raises(tfx.NotOffered, match=r"^tfx.dsl.components.AsyncOutputArtifact is not offered by Sluice: "
                                             r"Sluice publishes a component's outputs when its function returns; "
                                             r"write them with OutputArtifact\[T\]$"):
        _ = C.AsyncOutputArtifact
    with pytest.raises(AttributeError, match=r"^module 'tfx.dsl' has no attribute 'component'\. Did you mean "
                                             r"'components'\?"):
        _ = tfx.dsl.component
    with pytest.raises(tfx.NotOffered, match=r'^@component\(component_annotation=...\) is not offered by Sluice'):
        C.component(component_annotation=object)(lambda: None)
    with pytest.raises(WiringError, match=r'^Parameter is written Parameter\[T\] in an annotation \(as in TFX\), '
                                          r'not called\.$'):
        C.Parameter(int)


# TFX's older module paths (the lines proposed for sluice.tfx.TREE; applied here in a fresh process).
PROPOSED_TREE = {
    'dsl.components': 'sluice.tfx.v1.dsl.function_component',
    'dsl.component': (),
    'dsl.component.experimental': (),
    'dsl.component.experimental.decorators': {'component': 'sluice.tfx.v1.dsl.function_component:component',
                                              '*': 'sluice.tfx.v1.dsl.function_component'},
    'dsl.component.experimental.annotations': {
        **{name: f'sluice.tfx.v1.dsl.function_component:{name}'
           for name in ('Parameter', 'InputArtifact', 'OutputArtifact', 'OutputDict', 'BeamComponentParameter')},
        '*': 'sluice.tfx.v1.dsl.function_component'},
    'types.value_artifact': {'ValueArtifact': 'sluice.metadata.artifact:ValueArtifact',
                             '*': 'sluice.tfx.v1.types.standard_artifacts'},
}


def test_tfx_import_paths_of_function_components_with_the_proposed_tree_lines():
    code = textwrap.dedent(f'''\
        import sluice.tfx
        sluice.tfx.TREE.update({PROPOSED_TREE!r})
        from sluice.tfx.dsl.component.experimental.decorators import component
        from sluice.tfx.dsl.component.experimental.annotations import OutputDict, Parameter
        from sluice.tfx.dsl.components import InputArtifact
        from sluice.tfx.dsl.components.common.resolver import Resolver
        from sluice.tfx.types.value_artifact import ValueArtifact
        from sluice.tfx.types.standard_artifacts import Integer
        import sluice.tfx.dsl as dsl
        from sluice.tfx.v1.dsl import function_component as fc
        assert component is fc.component and InputArtifact is fc.InputArtifact and dsl.components.component is component
        assert issubclass(Integer, ValueArtifact)

        @component
        def F(n: Parameter[int]) -> OutputDict(m=int):
            return {{'m': n}}

        print(F(n=1).outputs['m'], F.test_call(n=2))
        ''')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "F.outputs['m'] {'m': 2}\n"), done.stderr
