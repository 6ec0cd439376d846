"""What every runner shares: starting a run in the store, its result, and progress output."""
from __future__ import annotations

import datetime
import json
import os
import secrets
import time
import sys
from dataclasses import dataclass, field
from typing import TextIO

from components.driver import PipelineInfo
from metadata.store import MetadataStore
from pipelines.launcher import NodeResult
from pipelines.pipeline import Pipeline


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261122-101500-3f9a``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f'{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}'


@dataclass
class RunResult:
    """The outcome of a pipeline run: its id, overall state and each node's result."""
    run_id: str
    pipeline_name: str
    metadata: str
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    lost_to: str = ''  # set when another process took the run over while this one drove it

    @property
    def state(self) -> str:
        return 'COMPLETE' if self.nodes and all(n.ok for n in self.nodes.values()) else 'FAILED'

    def __getitem__(self, node_id: str) -> NodeResult:
        return self.nodes[node_id]

    def node_states(self) -> dict[str, str]:
        return {k: n.state for k, n in self.nodes.items()}

    def ids_in_state(self, state: str) -> list[str]:
        return [k for k, n in self.nodes.items() if n.state == state]


class Progress:
    """Prints what a run is doing, one line per event."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream, self.enabled = stream, enabled
        self.started = time.time()

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream or sys.stdout, flush=True)

    def run_started(self, pipeline: Pipeline, run_id: str, store: MetadataStore) -> None:
        self.started = time.time()
        self.say(f"Run {run_id} of pipeline '{pipeline.name}': {len(pipeline.components)} nodes, "
                 f'store {store.url}')

    def _tty(self) -> bool:
        stream = self.stream or sys.stdout
        return self.enabled and hasattr(stream, 'isatty') and stream.isatty()

    def node_started(self, index: int, total: int, node_id: str) -> None:
        line = f'[{index}/{total}] {node_id} running ... ({time.time() - self.started:.0f}s into the run)'
        if self._tty():  # a live line, overwritten when the node finishes
            print(line, end='\r', file=self.stream or sys.stdout, flush=True)
        else:
            self.say(line)

    def node_finished(self, index: int, total: int, result: NodeResult) -> None:
        detail = f'  {result.error}' if result.error else (' (reused from earlier in this run)' if result.reused else '')
        line = f'[{index}/{total}] {result.node_id:<20} {result.state:<9} {result.duration:6.1f}s{detail}'
        self.say(line + '\x1b[K' if self._tty() else line)  # on a terminal, also clear the live line

    def run_finished(self, result: RunResult, elapsed: float) -> None:
        nodes = result.nodes.values()
        reused = sum(1 for n in nodes if n.reused)
        counts = {s: sum(1 for n in nodes if n.state == s and not n.reused)
                  for s in ('COMPLETE', 'CACHED', 'FAILED', 'SKIPPED')}
        self.say(f'Run {result.run_id} {result.state} in {elapsed:.1f}s: {counts["COMPLETE"]} executed, '
                 f'{counts["CACHED"]} cached, {counts["FAILED"]} failed, {counts["SKIPPED"]} skipped'
                 + (f', {reused} reused from earlier in this run' if reused else ''))


def start_run(pipeline: Pipeline, store: MetadataStore, run_id: str | None, runner: str) -> PipelineInfo:
    """Register a new run (pipeline and pipeline_run contexts) and return what launches need."""
    from pipelines.resume import definition_properties
    from pipelines.pipeline import PipelineError

    try:
        os.makedirs(pipeline.pipeline_root, exist_ok=True)
    except OSError as e:
        raise PipelineError(f'Cannot create the pipeline root {pipeline.pipeline_root}: {e.strerror}. Choose a '
                            'writable directory as pipeline_root.') from None
    run_id = run_id or new_run_id()
    store.register_run(pipeline.name, run_id, {
        'node_ids': json.dumps(pipeline.node_ids),
        'pipeline_root': pipeline.pipeline_root,
        'runner': runner,
        **definition_properties(pipeline),
    })
    return PipelineInfo(name=pipeline.name, root=pipeline.pipeline_root, run_id=run_id,
                        beam_pipeline_args=tuple(pipeline.beam_pipeline_args))


def skipped(node_id: str, component_type: str, failed_upstream: list[str]) -> NodeResult:
    return NodeResult(node_id, component_type, 'SKIPPED',
                      error=f'not run: upstream {", ".join(failed_upstream)} did not succeed')
