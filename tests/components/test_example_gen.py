"""CsvExampleGen and ImportExampleGen executors on small files (no store), and their bad-input errors."""
from __future__ import annotations

import glob
import gzip
import os
import random

import pytest

from sluice.components import CsvExampleGen, DataError, WiringError
from sluice.components.example_gen.csv_input import CsvExampleGenExecutor
from sluice.components.example_gen.tfrecord_input import ImportExampleGenExecutor
from sluice.metadata import Examples


def read_examples(examples: Examples, split: str) -> list[dict]:
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples.split_uri(split), 'data_tfrecord-*.gz')))
    assert files, f'no TFRecord files for split {split}'
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator():
        ex = tf.train.Example.FromString(record)
        row = {}
        for name, feature in ex.features.feature.items():
            kind = feature.WhichOneof('kind')
            values = list(getattr(feature, kind).value)
            row[name] = (kind, values[0] if len(values) == 1 else values)
        out.append(row)
    return out


def gen_csv(tmp_path, text: str | bytes, name: str = 'data.csv', ratios=None, subdir='in'):
    d = tmp_path / subdir
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / f'out-{random.random()}'
    out.mkdir()
    examples = Examples(uri=str(out))
    CsvExampleGenExecutor().run(input_base=str(d), split_ratios=ratios or {'train': 2, 'eval': 1},
                                examples=examples)
    return examples


CSV = 'id,size,name,score\n' + ''.join(f'{i},{i * 1.5},n{i},{"" if i % 4 == 0 else i}\n' for i in range(60))


def test_types_are_inferred_and_empty_cells_are_missing(tmp_path):
    examples = gen_csv(tmp_path, CSV)
    assert examples.split_names == ['train', 'eval']
    rows = read_examples(examples, 'train') + read_examples(examples, 'eval')
    assert len(rows) == 60
    by_id = {r['id'][1]: r for r in rows}
    assert by_id[3] == {'id': ('int64_list', 3), 'size': ('float_list', 4.5), 'name': ('bytes_list', b'n3'),
                        'score': ('int64_list', 3)}
    assert 'score' not in by_id[4]  # an empty cell is a missing value, not a zero
    assert examples.get('column_types') == '{"id": "int", "name": "string", "score": "int", "size": "float"}'
    counts = examples.get('row_counts')
    assert counts == (f'{{"eval": {len(read_examples(examples, "eval"))}, '
                      f'"train": {len(read_examples(examples, "train"))}}}')


def test_mixed_columns_widen_int_to_float_to_string(tmp_path):
    examples = gen_csv(tmp_path, 'a,b,c\n1,1,x\n2,2.5,3\n3,,4\n', ratios={'all': 1})
    rows = {r['a'][1]: r for r in read_examples(examples, 'all')}
    assert rows[2]['b'] == ('float_list', 2.5) and rows[1]['b'] == ('float_list', 1.0)
    assert rows[2]['c'] == ('bytes_list', b'3') and 'b' not in rows[3]


def test_split_is_deterministic_and_follows_the_ratios(tmp_path):
    lines = [f'{i},{i % 7}' for i in range(3000)]
    first = gen_csv(tmp_path, 'x,y\n' + '\n'.join(lines) + '\n', subdir='a')
    random.Random(0).shuffle(lines)  # same rows, other order, other file name
    second = gen_csv(tmp_path, 'x,y\n' + '\n'.join(lines) + '\n', name='other.csv', subdir='b')
    for split in ('train', 'eval'):
        ids1 = sorted(r['x'][1] for r in read_examples(first, split))
        ids2 = sorted(r['x'][1] for r in read_examples(second, split))
        assert ids1 == ids2
    n_eval = len(read_examples(first, 'eval'))
    assert 900 < n_eval < 1100  # 1/3 of 3000, give or take the hash


def test_several_files_and_blank_lines(tmp_path):
    d = tmp_path / 'in'
    d.mkdir()
    (d / 'a.csv').write_text('k,v\n1,a\n\n2,b\n')
    (d / 'b.csv').write_text('k,v\r\n3,c\r\n')
    out = tmp_path / 'out'
    out.mkdir()
    examples = Examples(uri=str(out))
    CsvExampleGenExecutor().run(input_base=str(d), split_ratios={'all': 1}, examples=examples)
    assert sorted((r['k'][1], r['v'][1]) for r in read_examples(examples, 'all')) == [(1, b'a'), (2, b'b'), (3, b'c')]


def test_a_file_read_in_many_ranges_gives_every_row_once(tmp_path, monkeypatch):
    """A large CSV is read in ranges (several Beam workers parse it at once), cut at arbitrary
    bytes: each row is read exactly once, the header never as a row, and a bad row far into the file
    is still reported at its own line."""
    from sluice.components.example_gen import csv_input

    monkeypatch.setattr(csv_input, 'MIN_RANGE', 1)
    rows = [f'{i},{"x" * (i % 13)},{i % 5}' for i in range(2000)]
    text = 'id,pad,k\r\n' + '\r\n'.join(rows) + '\r\n'
    examples = gen_csv(tmp_path, text, ratios={'all': 1})
    assert csv_input.read_bundle_bytes([str(tmp_path / 'in' / 'data.csv')]) == len(text) // 16  # 16 ranges
    assert sorted(r['id'][1] for r in read_examples(examples, 'all')) == list(range(2000))
    assert examples.get('row_counts') == '{"all": 2000}'
    rows[1700] = '1700,bad'
    with pytest.raises(DataError, match=r"data\.csv line 1702 has 2 fields but the header has 3: '1700,bad'"):
        gen_csv(tmp_path, 'id,pad,k\n' + '\n'.join(rows) + '\n', subdir='bad')


def test_examples_are_written_byte_for_byte_as_tensorflows_proto_writes_them():
    """CsvExampleGen writes tf.Examples without TensorFlow (``example_wire``): the bytes must be the
    ones TensorFlow's own proto serializes deterministically, for every kind of value a CSV cell can
    hold (int64 limits, negatives, floats beyond float32, NaN, infinities, unicode, names out of
    byte order, missing cells)."""
    import tensorflow as tf

    from sluice.components.example_gen.csv_input import to_example

    rng = random.Random(7)
    header = ['b', 'a', 'Z', 'é', 'a_long_name', '数', 'x1', 'x10', 'x2']
    cells = {'int': ['0', '-1', '1', str(2 ** 63 - 1), str(-2 ** 63), '127', '128', '-300', '16384'],
             'float': ['0.0', '-0.0', '1.5', '1e40', '-1e40', 'nan', 'inf', '-inf', '3.4028235e38', '1e-46',
                       '0.1', '123456789.123'],
             'string': ['x', 'é', '数据', ' ', 'a,b', '"q"', 'x' * 300]}
    for _ in range(300):
        kinds = [rng.choice(['int', 'float', 'string', None]) for _ in header]
        values = [rng.choice(cells[k] + ['']) if k else '' for k in kinds]
        expected = tf.train.Example()
        for name, kind, value in zip(header, kinds, values):
            if value == '':
                continue
            feature = expected.features.feature[name]
            if kind == 'int':
                feature.int64_list.value.append(int(value))
            elif kind == 'float':
                feature.float_list.value.append(float(value))
            else:
                feature.bytes_list.value.append(value.encode('utf-8'))
        assert to_example(values, header, kinds) == expected.SerializeToString(deterministic=True), (kinds, values)


def test_csv_example_gen_imports_no_tensorflow(tmp_path):
    """The first node of most runs, and every Beam worker running it, never waits for TensorFlow's
    import (seconds): checked in a fresh process, from its sys.modules."""
    import subprocess
    import sys

    (tmp_path / 'in').mkdir()
    (tmp_path / 'in' / 'd.csv').write_text('a,b,c\n1,x,0.5\n2,y,\n')
    (tmp_path / 'out').mkdir()
    script = ('import sys\n'
              'from sluice.components.example_gen.csv_input import CsvExampleGenExecutor\n'
              'from sluice.metadata import Examples\n'
              f'examples = Examples(uri={str(tmp_path / "out")!r})\n'
              f'CsvExampleGenExecutor().run(input_base={str(tmp_path / "in")!r}, split_ratios={{"all": 1}}, '
              'examples=examples)\n'
              'print(examples.get("row_counts"), sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))\n')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[-2] == '{"all": 2} []'


BAD_INPUTS = [
    # (files in the input directory, the message that must explain it)
    ({}, r'no \*\.csv files in .*/in; put the data there or pass another input_base'),
    ({'a.csv': ''}, r'/in/a\.csv is empty \(line 1 has no header\); every CSV file needs a header row'),
    ({'a.csv': 'a,b\n'}, r'the CSV files in .*/in have a header but no rows; add data rows'),
    ({'a.csv': 'a,b\n1,2\n3,4,5\n6,7\n'},
     r"bad rows in the input .*\n  .*/in/a\.csv line 3 has 3 fields but the header has 2: '3,4,5'"),
    ({'a.csv': 'a,b\n1,2\n3\n'}, r'/in/a\.csv line 3 has 1 fields but the header has 2'),
    ({'a.csv': b'a,b\n1,2\n3,caf\xe9\n'}, r"/in/a\.csv line 3 is not UTF-8 \(byte 6 of the line\)"),
    ({'a.csv': b'a,\xff\n1,2\n'}, r'/in/a\.csv line 1 is not UTF-8 \(byte 3\); save the file as UTF-8'),
    ({'a.csv': 'a,b\n1,2\n', 'b.csv': 'a,c\n1,2\n'},
     r'the header of .*/in/b\.csv \(a,c\) differs from the header of .*/in/a\.csv \(a,b\); all CSV files'),
    ({'a.csv': 'a,,c\n1,2,3\n'}, r'a\.csv line 1: column 2 of the header has no name'),
    ({'a.csv': 'a,b,a\n1,2,3\n'}, r'a\.csv line 1: the header repeats a; column names must be unique'),
]


@pytest.mark.parametrize('files, message', BAD_INPUTS)
def test_bad_csv_input_names_file_line_and_fix(tmp_path, files, message):
    d = tmp_path / 'in'
    d.mkdir()
    for name, content in files.items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(DataError, match=message):
        CsvExampleGenExecutor().run(input_base=str(d), split_ratios={'train': 2, 'eval': 1},
                                    examples=Examples(uri=str(out)))


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r'input_base .*/nope does not exist or is not a directory\. '
                                        r'Pass the directory that holds the \*\.csv files'):
        CsvExampleGenExecutor().run(input_base=str(tmp_path / 'nope'), split_ratios={'a': 1},
                                    examples=Examples(uri=str(tmp_path)))
    (tmp_path / 'f.csv').write_text('a\n1\n')
    with pytest.raises(DataError, match=r'It is a file; pass the directory that holds it'):
        CsvExampleGenExecutor().run(input_base=str(tmp_path / 'f.csv'), split_ratios={'a': 1},
                                    examples=Examples(uri=str(tmp_path)))


@pytest.mark.parametrize('ratios, message', [
    ({}, r"CsvExampleGen\(split_ratios=\.\.\.\): give at least one split"),
    ({'train': 0}, r"the weight of split 'train' must be a positive integer; got 0"),
    ({'train': 1.5}, r"the weight of split 'train' must be a positive integer; got 1\.5"),
    ({'tr ain': 1}, r"split name 'tr ain' must be letters, digits, _ or -"),
])
def test_split_ratios_are_checked_at_construction(ratios, message):
    with pytest.raises(WiringError, match=message):
        CsvExampleGen(input_base='/data', split_ratios=ratios)


def _write_tfrecords(path, rows, gz):
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type='GZIP' if gz else '')
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for row in rows:
            ex = tf.train.Example()
            ex.features.feature['x'].int64_list.value.append(row)
            writer.write(ex.SerializeToString())


def test_import_example_gen_reads_plain_and_gzipped_tfrecords(tmp_path):
    d = tmp_path / 'in'
    d.mkdir()
    _write_tfrecords(d / 'part1.tfrecord', range(0, 50), gz=False)
    _write_tfrecords(d / 'part2.tfrecord.gz', range(50, 100), gz=True)
    out = tmp_path / 'out'
    out.mkdir()
    examples = Examples(uri=str(out))
    ImportExampleGenExecutor().run(input_base=str(d), split_ratios={'train': 3, 'eval': 1}, examples=examples)
    xs = sorted(r['x'][1] for s in ('train', 'eval') for r in read_examples(examples, s))
    assert xs == list(range(100)) and examples.split_names == ['train', 'eval']
    with gzip.open(glob.glob(os.path.join(examples.split_uri('eval'), '*.gz'))[0]) as f:
        assert f.read(1)  # really gzipped


def test_import_example_gen_rejects_files_that_are_not_tfrecords(tmp_path):
    d = tmp_path / 'in'
    d.mkdir()
    (d / 'notes.txt').write_text('this is not a tfrecord file at all, just text\n' * 3)
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(Exception, match=r'ImportExampleGen: .*/in/notes\.txt is not a readable TFRecord file'):
        ImportExampleGenExecutor().run(input_base=str(d), split_ratios={'a': 1}, examples=Examples(uri=str(out)))


def test_spans_newest_by_default_a_range_in_one_artifact_and_clear_errors(tmp_path):
    data = tmp_path / 'in'
    for span, n in ((1, 30), (2, 40)):
        (data / f'span-{span}').mkdir(parents=True)
        (data / f'span-{span}' / 'a.csv').write_text('x,s\n' + ''.join(f'{span * 100 + i},v{i}\n' for i in range(n)))

    def gen(**kwargs):
        out = tmp_path / f'out-{random.random()}'
        out.mkdir()
        examples = Examples(uri=str(out))
        CsvExampleGenExecutor().run(input_base=str(data), split_ratios={'all': 1}, examples=examples,
                                    pattern='span-{SPAN}/*.csv', **kwargs)
        return examples

    newest = gen()
    assert (newest.get('span'), newest.get('version'), newest.get('spans')) == (2, 0, '[2]')
    assert sorted(r['x'][1] for r in read_examples(newest, 'all')) == list(range(200, 240))
    both = gen(span=(1, 2))
    assert (both.get('span'), both.get('spans')) == (2, '[1, 2]')
    assert len(read_examples(both, 'all')) == 70
    with pytest.raises(DataError, match=r"CsvExampleGen: span 3 does not exist in .*/in \(pattern 'span-\{SPAN\}/\*\.csv'\); "
                                        r'the spans there are 1, 2\.'):
        gen(span=3)
    (data / 'span-2' / 'a.csv').write_text('x,t\n1,2\n')
    with pytest.raises(DataError, match=r'the header of .*span-2/a\.csv \(x,t\) differs from the header of '
                                        r'.*span-1/a\.csv \(x,s\)'):
        gen(span=(1, 2))
