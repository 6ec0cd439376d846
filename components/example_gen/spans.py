"""Which input files an ExampleGen reads: ``pattern``, a glob relative to ``input_base`` that may hold
``{SPAN}`` and ``{VERSION}``; the checks of the span parameters; ``select_files``, which picks the
newest span (or the pinned one, or a range) at its newest (or pinned) version; and ``DataError``,
raised for input that cannot be read as asked, naming what exists and how to fix it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from sluice.metadata import storage


class DataError(ValueError):
    """The input data cannot be read as asked; the message names the file, the line and the fix."""
    retryable = False  # bad input: a retry reads the same bytes


def input_files(input_base: str, pattern: str, component: str) -> list[str]:
    return select_files(input_base, pattern, None, None, component).files


_PLACEHOLDER = re.compile(r'\{(SPAN|VERSION)(?::(\d+))?\}')


def check_pattern(pattern: str | None) -> None:
    if pattern is None:
        return
    if not pattern or os.path.isabs(pattern) or pattern.startswith('..'):
        raise ValueError(f'pattern {pattern!r} must be a glob relative to input_base, e.g. "span-{{SPAN}}/*.csv"')
    stray = re.sub(_PLACEHOLDER, '', pattern)
    if re.search(r'\{[A-Z]+(:[^}]*)?\}', stray):
        bad = re.search(r'\{[A-Z]+(:[^}]*)?\}', stray).group(0)
        raise ValueError(f'pattern {pattern!r}: unknown placeholder {bad}; the placeholders are {{SPAN}} and '
                         '{VERSION} (optionally with a width: {SPAN:4})')
    names = [m.group(1) for m in _PLACEHOLDER.finditer(pattern)]
    if 'VERSION' in names and 'SPAN' not in names:
        raise ValueError(f'pattern {pattern!r} has {{VERSION}} but no {{SPAN}}; a version is a version of a span')


def check_span(span: Any) -> None:
    if span is None:
        return
    if isinstance(span, bool):
        raise ValueError(f'span must be a span number, (lo, hi) or None; got {span!r}')
    if isinstance(span, int):
        if span < 0:
            raise ValueError(f'span must be 0 or more; got {span}')
        return
    if isinstance(span, (tuple, list)) and len(span) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in span) and span[0] <= span[1]:
        return
    raise ValueError(f'span must be a span number, a range (lo, hi) with 0 <= lo <= hi, or None for the newest; '
                     f'got {span!r}')


def check_version(version: Any) -> None:
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f'span_version must be a version number (0 or more) or None for the newest; got {version!r}')


def pattern_regex(pattern: str) -> tuple[str, re.Pattern]:
    """The glob that finds candidate files and the regex that reads span and version off their paths
    (relative to input_base, '/'-separated)."""
    glob_parts, regex_parts, seen = [], [], set()
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        literal = pattern[pos:m.start()]
        glob_parts.append(literal)
        regex_parts.append(_glob_to_regex(literal))
        name, width = m.group(1), m.group(2)
        glob_parts.append('[0-9]' * int(width) if width else '*')
        digits = r'\d{%d}' % int(width) if width else r'\d+'
        group = name.lower()
        regex_parts.append(f'(?P={group})' if group in seen else f'(?P<{group}>{digits})')
        seen.add(group)
        pos = m.end()
    glob_parts.append(pattern[pos:])
    regex_parts.append(_glob_to_regex(pattern[pos:]))
    return ''.join(glob_parts), re.compile('^' + ''.join(regex_parts) + '$')


def _glob_to_regex(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            end = text.find(']', i + 2 if text[i + 1:i + 2] in ('!', ']') else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = text[i + 1:end]
                body = '^' + body[1:] if body.startswith('!') else body
                out.append('[' + body.replace('\\', '\\\\') + ']')
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return ''.join(out)


@dataclass
class Selection:
    """The files an ExampleGen ingests: one span (at one version) or a range of spans."""
    files: list[str]
    span: int = 0  # the highest span ingested
    version: int = 0
    spans: list[int] = field(default_factory=list)
    versions: dict[int, int] = field(default_factory=dict)
    has_spans: bool = False

    def describe(self) -> str:
        if not self.has_spans:
            return f'{len(self.files)} files'
        which = f'span {self.span}' if len(self.spans) == 1 else f'spans {", ".join(map(str, self.spans))}'
        version = f' version {self.version}' if len(self.spans) == 1 and self.versions.get(self.span) is not None else ''
        return f'{which}{version} ({len(self.files)} files)'


def has_placeholders(pattern: str) -> bool:
    return bool(_PLACEHOLDER.search(pattern))


def placeholder_names(pattern: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(pattern)}


def available_spans(input_base: str, pattern: str) -> dict[int, dict[int | None, list[str]]]:
    """span -> version (None without {VERSION}) -> files, for the files under input_base that match."""
    glob_pattern, regex = pattern_regex(pattern)
    found: dict[int, dict[int | None, list[str]]] = {}
    for path in storage.glob_files(storage.join(input_base, glob_pattern)):
        m = regex.match(_relative(path, input_base))
        if m is None:
            continue
        groups = m.groupdict()
        span = int(groups['span']) if groups.get('span') is not None else 0
        version = int(groups['version']) if groups.get('version') is not None else None
        found.setdefault(span, {}).setdefault(version, []).append(path)
    return found


def _relative(path: str, base: str) -> str:
    if storage.is_remote(base):
        return path[len(base.rstrip('/')) + 1:]
    return os.path.relpath(path, base).replace(os.sep, '/')


def select_files(input_base: str, pattern: str, span: Any, version: Any, component: str) -> Selection:
    """The files of the selected span (newest by default) at the selected version (newest by default),
    or of every span in a (lo, hi) range; DataError names input_base, the pattern and what exists."""
    if not storage.isdir(input_base):
        hint = ' It is a file; pass the directory that holds it.' if storage.isfile(input_base) else ''
        raise DataError(f'{component}: input_base {input_base} does not exist or is not a directory.{hint} '
                        f'Pass the directory that holds the {pattern} files.')
    if not has_placeholders(pattern):
        files = storage.glob_files(storage.join(input_base, pattern))
        if not files:
            raise DataError(f'{component}: no {pattern} files in {input_base}; put the data there or pass '
                            'another input_base.')
        return Selection(files)
    found = available_spans(input_base, pattern)
    if not found:
        raise DataError(f"{component}: no file in {input_base} matches the pattern '{pattern}' ({{SPAN}} and "
                        '{VERSION} stand for digits); put the span directories or files there, or fix the pattern.')
    spans = sorted(found)
    listing = ', '.join(map(str, spans))
    if span is None:
        chosen = [spans[-1]]
    elif isinstance(span, int):
        if span not in found:
            raise DataError(f"{component}: span {span} does not exist in {input_base} (pattern '{pattern}'); "
                            f'the spans there are {listing}.')
        chosen = [span]
    else:
        lo, hi = span
        chosen = [s for s in spans if lo <= s <= hi]
        if not chosen:
            raise DataError(f"{component}: no span from {lo} to {hi} exists in {input_base} (pattern '{pattern}'); "
                            f'the spans there are {listing}.')
    if version is not None and len(chosen) > 1:
        raise DataError(f'{component}: span_version={version} pins the version of one span, but spans '
                        f'{", ".join(map(str, chosen))} were selected; pin a single span.')
    files: list[str] = []
    versions: dict[int, int | None] = {}
    for s in chosen:
        by_version = found[s]
        if version is not None:
            if version not in by_version:
                known = ', '.join(str(v) for v in sorted(v for v in by_version if v is not None)) or 'none'
                raise DataError(f"{component}: span {s} has no version {version} in {input_base} (pattern "
                                f"'{pattern}'); its versions are {known}.")
            v = version
        else:
            v = max(by_version, key=lambda x: -1 if x is None else x)
        versions[s] = v
        files.extend(by_version[v])
    top = chosen[-1]
    return Selection(sorted(files), span=top, version=versions[top] or 0, spans=chosen, versions=versions,
                     has_spans=True)


def select_inputs(input_base: str, pattern: str, input_splits: dict[str, str], span: Any, version: Any,
                  component: str) -> tuple[Selection, dict[str, list[str]]]:
    """``select_files`` for ``pattern``, or, with ``input_splits`` ({split: pattern}), for each split's
    pattern: then every split must select the same spans at the same versions, no file may match two
    splits, and the Selection holds every split's files ({split: its files} beside it)."""
    if not input_splits:
        return select_files(input_base, pattern, span, version, component), {}
    chosen = {name: select_files(input_base, p, span, version, component) for name, p in input_splits.items()}
    (first_name, first), *rest = chosen.items()
    for name, selection in rest:
        if (selection.spans, selection.versions) != (first.spans, first.versions):
            raise DataError(f'{component}: split {name} ({input_splits[name]}) selects {selection.describe()} but '
                            f'split {first_name} ({input_splits[first_name]}) selects {first.describe()} in '
                            f'{input_base}; every split must have the same spans (and versions).')
    owner: dict[str, str] = {}
    for name, selection in chosen.items():
        for path in selection.files:
            if path in owner:
                raise DataError(f'{component}: {path} matches the patterns of split {owner[path]} '
                                f'({input_splits[owner[path]]}) and of split {name} ({input_splits[name]}); a file '
                                'belongs to one split: make the patterns exclusive.')
            owner[path] = name
    combined = Selection(sorted(owner), span=first.span, version=first.version, spans=first.spans,
                         versions=first.versions, has_spans=first.has_spans)
    return combined, {name: selection.files for name, selection in chosen.items()}
