"""Resolvers: nodes whose inputs reach back into earlier runs of the same pipeline.

    >>> gen = CsvExampleGen(input_base='data', pattern='span-{SPAN}/*.csv')     # the newest span
    >>> window = LatestSpans(gen, n=3)                                          # it and the 2 before
    >>> transform = Transform(examples=window, schema=schema.outputs['schema'], module_file=module)
    >>> evaluator = Evaluator(examples=gen.outputs['examples'], model=...)      # measures the newest span

``LatestSpans`` is a real node (list it in the pipeline's components) and also stands for its own
output, so it can be passed wherever a channel of Examples is expected (``window`` and
``window.outputs['examples']`` are the same channel). Its driver takes the Examples the source node
published in this run and, from ML-Metadata, the ones it published in earlier runs of the pipeline
for the next lower spans (each span once: its highest version, then its newest artifact; artifacts
whose files are gone are passed over), up to ``n`` spans, and records all of them as INPUT events of
its execution (``source`` for this run's, ``span_<k>`` for span k). The window ends at this run's
span: a run pinned to span 2 trains on spans 2, 1, 0, not on newer ones. The executor hard-links
(copies, across filesystems) every span's split files into its own ``Split-<split>/`` directories,
so every reader works unchanged, and records ``span`` (the newest), ``version``, ``spans`` (the list
included) and summed ``row_counts``. The cache key covers each member's fingerprint, so it changes
exactly when the set of spans (or a span's data) changes.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

from sluice.components.component import Channel, Component, Input, Output, Parameter, WiringError
from sluice.components.driver import Driver
from sluice.components.executor import Executor
from sluice.metadata.artifact import Artifact, Examples


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f'n is the number of spans in the window, 1 or more; got {n}')


def covered_spans(examples: Artifact) -> list[int]:
    """The spans an Examples artifact holds: its ``spans`` list (a range or a window), else its span."""
    raw = examples.get('spans')
    if raw:
        try:
            spans = json.loads(raw) if isinstance(raw, str) else list(raw)
            return sorted(int(s) for s in spans)
        except (TypeError, ValueError):
            pass
    return [int(examples.get('span', 0) or 0)]


def same_source(a: Artifact, b: Artifact) -> bool:
    """Whether two ExampleGen outputs read the same data (same input_base and pattern, when recorded)."""
    return all(a.get(k) is None or b.get(k) is None or a.get(k) == b.get(k) for k in ('input_base', 'pattern'))


class LatestSpansDriver(Driver):
    """Resolves the window: this run's span from the source node, and the next lower spans from the
    source node's outputs in earlier runs of this pipeline."""

    def resolve_inputs(self) -> dict[str, Artifact | None]:
        resolved = super().resolve_inputs()
        source = resolved['source']
        assert source is not None
        channel = self.component.inputs['source']
        assert channel is not None
        n = self.component.parameters['n']
        have = covered_spans(source)
        best: dict[int, Artifact] = {}  # span -> the artifact that stands for it
        for record in self.store.node_executions_across_runs(self.pipeline.name, channel.producer.id):
            for artifact in record.outputs.get(channel.key, []):
                if artifact.state != 'LIVE' or artifact.id == source.id or not same_source(artifact, source):
                    continue
                spans = covered_spans(artifact)
                if max(spans) >= min(have):
                    continue
                top = max(spans)
                current = best.get(top)
                rank = (int(artifact.get('version', 0) or 0), artifact.id or 0)
                if current is None or rank > (int(current.get('version', 0) or 0), current.id or 0):
                    best[top] = artifact
        self._skipped: list[str] = []
        for top in sorted(best, reverse=True):
            if len(have) >= n:
                break
            artifact = best[top]
            spans = covered_spans(artifact)
            if set(spans) & set(have):
                continue
            if not artifact.exists():
                self._skipped.append(f'span {top} ({artifact!r}: files gone)')
                continue
            resolved[f'span_{top}'] = artifact
            have = sorted(set(have) | set(spans))
        self._window = have
        return resolved

    def execution_properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {'spans': json.dumps(getattr(self, '_window', []))}
        if getattr(self, '_skipped', None):
            props['spans_passed_over'] = json.dumps(self._skipped)
        return props


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(src, dst)


def _member_name(name: str, span: int) -> str:
    """``data_tfrecord-00000-of-00001.gz`` of span 3 -> ``data_tfrecord-span3-00000-of-00001.gz``
    (same prefix and suffix, so globs and compression detection work as before)."""
    stem, sep, rest = name.partition('-')
    return f'{stem}-span{span}-{rest}' if sep else f'span{span}-{name}'


class LatestSpansExecutor(Executor):
    def run(self, *, source: Examples, examples: Examples, n: int, **earlier: Examples) -> None:
        members = sorted([source, *earlier.values()], key=lambda a: max(covered_spans(a)))
        types: dict[str, tuple[str, int]] = {}
        for member in members:
            raw = member.get('column_types')
            for column, kind in (json.loads(raw) if raw else {}).items():
                if kind == 'missing':
                    continue
                seen = types.setdefault(column, (kind, max(covered_spans(member))))
                if seen[0] != kind:
                    raise ValueError(
                        f"LatestSpans: column '{column}' is {seen[0]} in span {seen[1]} but {kind} in span "
                        f'{max(covered_spans(member))}; the window would mix feature types. CsvExampleGen infers '
                        'types per span: write the column alike in every span (e.g. 1.0 rather than 1 for floats).')
        splits: list[str] = []
        rows: dict[str, int] = {}
        for member in members:
            if not member.split_names:
                raise ValueError(f'LatestSpans: {member!r} records no split_names; it was not written by an ExampleGen.')
            span = max(covered_spans(member))
            counts = json.loads(member.get('row_counts') or '{}')
            for split in member.split_names:
                if split not in splits:
                    splits.append(split)
                target = examples.split_uri(split)
                os.makedirs(target, exist_ok=True)
                directory = member.split_uri(split)
                for name in sorted(os.listdir(directory)):
                    path = os.path.join(directory, name)
                    if os.path.isfile(path):
                        _link_or_copy(path, os.path.join(target, _member_name(name, span)))
                if split in counts:
                    rows[split] = rows.get(split, 0) + int(counts[split])
        spans = sorted({s for m in members for s in covered_spans(m)})
        examples.set('split_names', splits)
        examples.set('span', max(spans))
        examples.set('version', int(source.get('version', 0) or 0))
        examples.set('spans', json.dumps(spans))
        if rows:
            examples.set('row_counts', rows)
        for key in ('column_types', 'input_base', 'pattern'):
            if source.get(key) is not None:
                examples.set(key, source.get(key))
        print(f'LatestSpans: spans {", ".join(map(str, spans))} ({len(spans)} of n={n})', flush=True)


class LatestSpans(Component, Channel):
    """The Examples of the ``n`` newest spans up to this run's, as one artifact: a rolling window.

        LatestSpans(gen, n=3)                      # gen: an ExampleGen (its 'examples' output)
        LatestSpans(gen.outputs['examples'], n=3)  # or any channel of Examples

    Pass it (or ``.outputs['examples']``) as the ``examples=`` of Transform, Trainer or StatisticsGen,
    and list it in the pipeline's components. Fewer spans than ``n`` exist at first: the window holds
    those there are (its ``spans`` property lists them)."""
    source = Input(Examples)
    examples = Output(Examples)
    n = Parameter(int, default=3, check=_check_n)
    driver = LatestSpansDriver
    executor = LatestSpansExecutor

    def __init__(self, source: Any = None, n: int = 3, **kwargs: Any) -> None:
        if isinstance(source, Component) and not isinstance(source, Channel):
            found = [k for k, d in type(source).OUTPUTS.items() if issubclass(d.type, Examples)]
            if len(found) != 1:
                raise WiringError(f'LatestSpans({source.id}): {source.id} has {len(found) or "no"} Examples outputs'
                                  + (f" ({', '.join(found)}); pass one, e.g. {source.id}.outputs['{found[0]}']."
                                     if found else '; pass an ExampleGen or a channel of Examples.'))
            source = source.outputs[found[0]]
        Component.__init__(self, source=source, n=n, **kwargs)
        Channel.__init__(self, self, 'examples', Examples)


__all__ = ['LatestSpans']
