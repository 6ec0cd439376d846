"""The driver: resolves a component's inputs from the store, decides cache reuse, registers the
execution and prepares its output directories. Framework code; components specialise it only to
add what their cache key depends on outside the store (ExampleGen: its input files) or to resolve
special inputs (Evaluator: the baseline model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Protocol

from sluice.metadata import storage
from sluice.components import fingerprint as fp
from sluice.components.conditions import NodeSkipped
from sluice.metadata.artifact import Artifact
from sluice.metadata.store import MetadataStore


class StaleCodeError(RuntimeError):
    """A component's code changed on disk after it was loaded into this process."""
    retryable = False


class InputError(RuntimeError):
    """An input cannot be resolved (its producer has not run in this run, or its files are gone)."""
    retryable = False


class ComponentView(Protocol):
    """What a driver reads of the component it launches (``component.Component`` has it all). The
    driver types against this, not Component, because component.py names Driver as the default
    ``driver`` of every component: driver.py stays below component.py."""
    OUTPUTS: ClassVar[dict[str, Any]]  # output key -> Output declaration (its artifact ``type``)
    version: ClassVar[str]
    inputs: dict[str, Any]  # input key -> Channel (``producer``, ``key``), or None if not wired
    parameters: dict[str, Any]

    @property
    def id(self) -> str: ...

    @property
    def component_type(self) -> str: ...

    def user_code_files(self) -> Iterator[tuple[str, str]]: ...


@dataclass
class PipelineInfo:
    """What a launch needs to know about the pipeline around the component."""
    name: str
    root: str
    run_id: str
    beam_pipeline_args: tuple[str, ...] = ()
    lease: str = ''  # the run's lease held by the launching process; its executions are fenced by it


class Driver:
    """Default driver: inputs are the LIVE outputs of their producer nodes in the same run."""

    attempt = 1  # which try of the node this launch is (retries); recorded on the execution

    def __init__(self, component: ComponentView, store: MetadataStore, pipeline: PipelineInfo) -> None:
        self.component, self.store, self.pipeline = component, store, pipeline

    # -- inputs -------------------------------------------------------------------------------
    def resolve_inputs(self) -> dict[str, Artifact | None]:
        """The inputs' artifacts in this run. Raises NodeSkipped when a condition of the node is false
        or an input comes from a skipped node (sluice.components.conditions)."""
        for predicate in getattr(self.component, 'conditions', ()):  # () in a pipeline stored before conditions
            held, text = predicate.holds(self._artifact_of(predicate.channel, 'its condition'))
            if not held:
                raise NodeSkipped(f'condition {text}')
        resolved: dict[str, Artifact | None] = {}
        for key, channel in self.component.inputs.items():
            if channel is None:
                resolved[key] = None
                continue
            artifact = self._artifact_of(channel, f"input '{key}'")
            producer = channel.producer.id
            if not artifact.exists():
                raise InputError(
                    f"{self.component.id}: input '{key}' ({artifact!r} from {producer}) is recorded in "
                    f'the store but its files at {artifact.uri} are gone; rerun {producer} '
                    '(a new run recomputes it).')
            resolved[key] = artifact
        return resolved

    def _artifact_of(self, channel: Any, what: str) -> Artifact:
        producer = channel.producer.id
        record = self.store.node_done(self.pipeline.run_id, producer)
        if record is not None and record.properties.get('skipped'):
            raise NodeSkipped(f'{what} comes from {producer}, which was skipped')
        artifacts = [a for a in (record.outputs if record else {}).get(channel.key, []) if a.state == 'LIVE']
        if not artifacts:
            raise InputError(f'{self.component.id}: {what} comes from {channel!r}, which has no published '
                             f'output in run {self.pipeline.run_id}; run {producer} first.')
        return artifacts[0]

    # -- cache --------------------------------------------------------------------------------
    def external_fingerprints(self) -> dict[str, str]:
        """What the outputs depend on besides inputs, parameters and code (e.g. input files)."""
        return {}

    def execution_properties(self) -> dict[str, Any]:
        """Extra facts to record on the execution (e.g. the input files an ExampleGen read)."""
        return {}

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        """What the cache key is made of (see sluice.components.fingerprint), as a JSON-ready dict:
        the ``fp.KEY_FIELDS`` entries, plus ``producers`` (input key -> producer node id) for
        explanations (not hashed)."""
        comp = self.component
        entries = fp.closure(type(comp))  # the files the component runs: checked, then keyed
        stale = fp.stale_code_message(comp.id, type(comp), entries)
        if stale:
            raise StaleCodeError(stale)
        code = {k: fp.code_parts(path) for k, path in comp.user_code_files()}
        params = {k: v for k, v in comp.parameters.items() if k not in code}
        return {
            'pipeline': self.pipeline.name, 'node': comp.id, 'component': comp.component_type,
            'implementation': fp.implementation_parts(type(comp), files=fp.implementation_files(type(comp),
                                                                                               entries=entries)),
            'parameters': fp.canonical(params),
            'inputs': {k: (a.fingerprint if a is not None else '') for k, a in inputs.items()},
            'code': code, 'external': self.external_fingerprints(),
            'producers': {k: ch.producer.id for k, ch in comp.inputs.items() if ch is not None},
        }

    def cache_key(self, inputs: dict[str, Artifact | None]) -> str:
        parts = self.cache_key_parts(inputs)
        key = fp.key_of(parts)
        self._key_parts = (key, parts)  # recorded by register()
        return key

    def cached_outputs(self, key: str) -> dict[str, Artifact] | None:
        """The outputs of an earlier COMPLETE execution with this key, if all are LIVE and on disk."""
        declared = type(self.component).OUTPUTS
        for record in self.store.cache_candidates(self.pipeline.name, self.component.id, key):
            outputs = {k: v[0] for k, v in record.outputs.items() if v}
            if set(outputs) != set(declared):
                continue
            if all(a.state == 'LIVE' and a.exists() for a in outputs.values()):
                return outputs
        return None

    # -- registration -------------------------------------------------------------------------
    def key_properties(self, inputs: dict[str, Artifact | None], key: str) -> dict[str, Any]:
        """What every execution of this launch records, RUNNING or CACHED: its cache key and the key's
        parts (``cache_key_parts``, JSON, for ``sluice show``), the component version, and the lease."""
        known = getattr(self, '_key_parts', None)
        parts = known[1] if known is not None and known[0] == key else self.cache_key_parts(inputs)
        return {'cache_key': key, 'component_version': self.component.version,
                **({'cache_key_parts': fp.canonical_json(parts)} if fp.key_of(parts) == key else {}),
                **({'lease': self.pipeline.lease} if self.pipeline.lease else {})}

    def register(self, inputs: dict[str, Artifact | None], key: str) -> tuple[int, dict[str, Artifact]]:
        """Record a RUNNING execution with INPUT events and ``key_properties``; return its id and its
        output artifacts."""
        comp = self.component
        execution_id = self.store.register_execution(
            comp.component_type, self.pipeline.name, self.pipeline.run_id, comp.id,
            {k: [a] for k, a in inputs.items() if a is not None},
            {**self.key_properties(inputs, key), 'parameters': fp.canonical_json(comp.parameters),
             'attempt': self.attempt, **self.execution_properties()})
        return execution_id, self.output_artifacts(execution_id, key)

    def output_artifacts(self, execution_id: int, key: str) -> dict[str, Artifact]:
        outputs: dict[str, Artifact] = {}
        for out_key, decl in type(self.component).OUTPUTS.items():
            uri = storage.join(self.pipeline.root, self.component.id, out_key, str(execution_id))
            outputs[out_key] = decl.type(uri=uri, fingerprint=fp.output_fingerprint(key, out_key))
        return outputs

    @staticmethod
    def make_output_dirs(outputs: dict[str, Artifact]) -> None:
        for artifact in outputs.values():
            if storage.listdir(artifact.uri):
                raise InputError(
                    f'Output directory {artifact.uri} already exists and is not empty: this pipeline root '
                    'holds outputs recorded in another metadata store. Use a fresh pipeline_root, or the '
                    'metadata store that goes with this one.')
            storage.make_dirs(artifact.uri)

    def parameters(self) -> dict[str, Any]:
        return dict(self.component.parameters)
