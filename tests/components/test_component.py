"""The component model: declarations, wiring checks and their messages, executor signatures."""
from __future__ import annotations

import os

import pytest

from sluice.components import Component, Examples, Executor, Input, Output, Parameter, WiringError
from dummies import ApplyModule, Count, Join, Source, Text, Upper


def test_declarations_are_collected_once_per_class():
    assert list(Upper.INPUTS) == ['text'] and Upper.INPUTS['text'].type is Text
    assert list(Upper.OUTPUTS) == ['result']
    assert list(Upper.PARAMETERS) == ['suffix'] and Upper.PARAMETERS['suffix'].default == ''
    assert Join.INPUTS['extra'].optional


def test_outputs_are_typed_channels_and_ids_default_to_the_class_name(text_dir):
    src = Source(input_base=str(text_dir))
    up = Upper(text=src.outputs['text'], suffix='!')
    assert up.id == 'Upper' and repr(up.inputs['text']) == "Source.outputs['text']"
    assert up.outputs['result'].type is Text and up.outputs['result'].producer is up
    assert up.with_id('shout') is up and up.id == 'shout'
    assert repr(up.outputs['result']) == "shout.outputs['result']"
    assert up.parameters == {'suffix': '!'}
    assert up.upstream == [src]


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = Source(input_base='data')
    assert src.parameters['input_base'] == os.path.join(str(tmp_path), 'data')


def _src():
    return Source(input_base='/data')


def _counter():
    return Count(text=_src().outputs['text'])


WIRING_ERRORS = [
    # (what the user wrote, the message that must explain it)
    (lambda: Upper(text=_counter().outputs['count']),
     r"^Upper\(text=\.\.\.\) expects a channel of Text; got Number from Count\.outputs\['count'\]\.$"),
    (lambda: Upper(text=_src()),
     r"^Upper\(text=\.\.\.\) expects a channel of Text; got the component Source itself\. "
     r"Pass Source\.outputs\['text'\]\.$"),
    (lambda: Upper(text='/some/path'),
     r"^Upper\(text=\.\.\.\) expects a channel of Text, such as producer\.outputs\['\.\.\.'\]; got str '/some/path'\.$"),
    (lambda: Upper(txt=_src().outputs['text']),
     r"^Upper\(\) got an unexpected argument 'txt'; did you mean 'text'\? It takes: text, suffix\.$"),
    (lambda: Upper(),
     r"^Upper\(\) is missing the required input 'text' \(a channel of Text\)\.$"),
    (lambda: Source(),
     r"^Source\(\) is missing the required parameter 'input_base' \(str\)\.$"),
    (lambda: Count(text=_src().outputs['text'], minimum='3'),
     r"^Count\(minimum=\.\.\.\) expects int; got str '3'\.$"),
    (lambda: Count(text=_src().outputs['text'], minimum=True),
     r"^Count\(minimum=\.\.\.\) expects int; got bool True\.$"),
    (lambda: _src().outputs['txt'],
     r"^Source has no output 'txt'; did you mean 'text'\? Its outputs: text\.$"),
    (lambda: _src().with_id('no spaces'),
     r"^Source\.with_id\('no spaces'\): an id is a letter or _ followed by letters, digits, _, \. or -\.$"),
]


@pytest.mark.parametrize('build, message', WIRING_ERRORS)
def test_wiring_errors_name_component_input_expected_and_given(build, message):
    with pytest.raises(WiringError, match=message):
        build()


def test_optional_inputs_may_be_left_out():
    src = _src()
    join = Join(left=src.outputs['text'], right=src.outputs['text'])
    assert join.inputs['extra'] is None and join.upstream == [src]


class _Exec(Executor):
    def run(self, *, examples, out, flag):
        pass


@pytest.mark.parametrize('body, message', [
    (dict(examples=Input(Examples), out=Output(Text)),
     r'_Exec\.run\(\) must take one keyword argument per input, output and parameter of Broken '
     r'\(not declared by Broken: flag\)'),
    (dict(examples=Input(Examples), out=Output(Text), flag=Parameter(bool), more=Parameter(int)),
     r'_Exec\.run\(\) must take .* of Broken \(missing more\)'),
    (dict(id=Parameter(str)), r"Broken declares 'id', a name Component reserves; rename it\."),
    (dict(), r'_Exec\.run\(\) must take .* \(not declared by Broken: examples, flag, out\)'),
])
def test_executor_signature_is_checked_when_the_class_is_defined(body, message):
    with pytest.raises(WiringError, match=message):
        type('Broken', (Component,), {**body, 'executor': _Exec})


def test_executor_must_be_an_executor_class():
    with pytest.raises(WiringError, match=r'Broken\.executor must be an Executor subclass; got 42'):
        type('Broken', (Component,), {'out': Output(Text), 'executor': 42})


def test_subclasses_inherit_and_extend_declarations():
    class Loud(Upper):
        times = Parameter(int, default=1)
        executor = type('LoudExec', (Executor,), {'run': lambda self, *, text, result, suffix, times: None})

    assert list(Loud.PARAMETERS) == ['suffix', 'times'] and list(Upper.PARAMETERS) == ['suffix']


def test_user_code_parameters_are_listed(tmp_path):
    module = tmp_path / 'm.py'
    module.write_text('def transform(t):\n    return t\n')
    comp = ApplyModule(text=_src().outputs['text'], module_file=str(module))
    assert list(comp.user_code_files()) == [('module_file', str(module))]
