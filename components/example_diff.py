"""ExampleDiff: example-by-example skew between two sets of examples, paired by identifier features.

    >>> diff = ExampleDiff(examples=serving_log_gen.outputs['examples'],
    ...                    baseline_examples=gen.outputs['examples'], identifier_features=['trip_id'])

Each example of a split of ``examples`` (the test side) is paired with the example of a split of
``baseline_examples`` that has the same values of ``identifier_features``, and every other feature is
compared (TFDV's feature skew detector, on Beam): how many pairs match, differ, or have the feature on
one side only. For each pair of splits (every test split with every baseline split, or ``split_pairs``)
``SplitPair-<test>_<baseline>/`` holds TFDV's records as TFX's ExampleDiff writes them
(``skew_stats-*``: FeatureSkew per feature; ``match_stats-*``: how many identifiers matched;
``sample_pairs-*``: up to ``skew_sample_size`` skewed pairs; ``confusion-*`` for ``confusion_features``)
and ``skew.json``, the same figures as plain JSON. The artifact's ``skewed_features`` property lists
the features with a mismatch or a one-sided value in any pair of splits.
"""
from __future__ import annotations

import json
import os

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.metadata.artifact import Examples, ExamplesDiff

RECORDS = {'skew_results': 'skew_stats', 'match_stats': 'match_stats', 'skew_pairs': 'sample_pairs',
           'confusion_pairs': 'confusion'}


def pair_dir(test_split: str, baseline_split: str) -> str:
    return f'SplitPair-{test_split}_{baseline_split}'


def _pairs(examples: Examples, baseline: Examples, wanted: list) -> list[tuple[str, str]]:
    for side, artifact in (('examples', examples), ('baseline_examples', baseline)):
        if not artifact.split_names:
            raise ValueError(f'{side} ({artifact!r}) records no split_names; it was not written by an ExampleGen.')
    every = [(t, b) for t in examples.split_names for b in baseline.split_names]
    if not wanted:
        return every
    pairs = [tuple(p) for p in wanted]
    missing = [f'{t}/{b}' for t, b in pairs if (t, b) not in every]
    if missing:
        raise ValueError(f'split_pairs {", ".join(missing)} not found: examples has splits '
                         f'{examples.split_names}, baseline_examples has {baseline.split_names}.')
    return pairs


class ExampleDiffExecutor(Executor):
    imports = ('tensorflow', 'tensorflow_data_validation')

    def run(self, *, examples: Examples, baseline_examples: Examples, example_diff: ExamplesDiff,
            identifier_features: list, ignore_features: list, skew_sample_size: int, float_round_ndigits: int,
            allow_duplicate_identifiers: bool, confusion_features: list, split_pairs: list) -> None:
        import apache_beam as beam
        import tensorflow as tf
        from tensorflow_data_validation.skew import feature_skew_detector as skew

        def parse(record: bytes) -> tf.train.Example:
            return tf.train.Example.FromString(record)

        pairs = _pairs(examples, baseline_examples, split_pairs)
        detector = dict(identifier_features=list(identifier_features), features_to_ignore=list(ignore_features),
                        sample_size=skew_sample_size, float_round_ndigits=float_round_ndigits or None,
                        allow_duplicate_identifiers=allow_duplicate_identifiers,
                        confusion_configs=[skew.ConfusionConfig(name) for name in confusion_features])
        sinks = {'skew_results': skew.skew_results_sink, 'match_stats': skew.match_stats_sink,
                 'skew_pairs': skew.skew_pair_sink, 'confusion_pairs': skew.confusion_count_sink}
        with self.beam_pipeline() as p:
            for test, base in pairs:
                out = os.path.join(example_diff.uri, pair_dir(test, base))
                os.makedirs(out, exist_ok=True)
                step = f'{test}_{base}'
                read = {side: (p | f'Read{side}[{step}]' >> beam.io.ReadFromTFRecord(
                    os.path.join(artifact.split_uri(split), '*'))
                    | f'Parse{side}[{step}]' >> beam.Map(parse))
                    for side, artifact, split in (('Base', baseline_examples, base), ('Test', examples, test))}
                found = (read['Base'], read['Test']) | f'Skew[{step}]' >> skew.DetectFeatureSkewImpl(**detector)
                for key, collection in found.items():
                    _ = collection | f'Write{key}[{step}]' >> sinks[key](os.path.join(out, RECORDS[key]))
        skewed = set()
        for test, base in pairs:
            out = os.path.join(example_diff.uri, pair_dir(test, base))
            summary = _summary(skew, out)
            skewed |= {f['feature_name'] for f in summary['features']
                       if f.get('mismatch_count') or f.get('base_only') or f.get('test_only')}
            with open(os.path.join(out, 'skew.json'), 'w') as f:
                json.dump(summary, f, indent=2, sort_keys=True)
        example_diff.set('split_pairs', json.dumps([list(p) for p in pairs]))
        example_diff.set('skewed_features', json.dumps(sorted(skewed)))
        print(f'ExampleDiff: {len(pairs)} split pair(s); features with skew: {", ".join(sorted(skewed)) or "none"}',
              flush=True)


def _summary(skew, out: str) -> dict:
    from google.protobuf import json_format

    def read(iterator, name):
        return [json_format.MessageToDict(m, preserving_proto_field_name=True)
                for m in iterator(os.path.join(out, RECORDS[name]))]

    [match] = read(skew.match_stats_iterator, 'match_stats') or [{}]
    features = sorted(read(skew.skew_results_iterator, 'skew_results'), key=lambda f: f['feature_name'])
    return {'match_stats': match, 'features': features}


def load_example_diff(example_diff: ExamplesDiff, test_split: str, baseline_split: str) -> dict:
    """The figures of one pair of splits (``skew.json``): match_stats and, per feature, its counts."""
    path = os.path.join(example_diff.uri, pair_dir(test_split, baseline_split), 'skew.json')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{example_diff!r} has no split pair {test_split}/{baseline_split} ({path}); its '
                                f'pairs: {example_diff.get("split_pairs")}.')
    with open(path) as f:
        return json.load(f)


def _names(key: str, required: bool = False):
    def check(value: list) -> None:
        if not all(isinstance(v, str) and v for v in value):
            raise ValueError(f'{key} takes feature names (non-empty strings), got {value!r}')
        if required and not value:
            raise ValueError(f'{key} needs at least one feature: the features whose values pair an example of '
                             'examples with one of baseline_examples (e.g. an id)')
    return check


def _check_pairs(value: list) -> None:
    if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in value):
        raise ValueError(f'split_pairs takes [test split, baseline split] pairs, got {value!r}')


def _check_not_negative(value: int) -> None:
    if value < 0:
        raise ValueError(f'must be 0 or more, got {value}')


class ExampleDiff(Component):
    """Example-by-example skew between ``examples`` and ``baseline_examples``, paired by identifiers."""
    examples = Input(Examples)
    baseline_examples = Input(Examples)
    example_diff = Output(ExamplesDiff)
    identifier_features = Parameter(list, check=_names('identifier_features', required=True))
    ignore_features = Parameter(list, default=[], check=_names('ignore_features'))
    skew_sample_size = Parameter(int, default=0, check=_check_not_negative)
    float_round_ndigits = Parameter(int, default=0, check=_check_not_negative)  # 0: compared as they are
    allow_duplicate_identifiers = Parameter(bool, default=False)
    confusion_features = Parameter(list, default=[], check=_names('confusion_features'))
    split_pairs = Parameter(list, default=[], check=_check_pairs)  # []: every test split with every baseline split
    libraries = ('tensorflow-data-validation', 'apache-beam')
    executor = ExampleDiffExecutor
