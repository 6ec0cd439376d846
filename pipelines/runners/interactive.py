"""InteractiveContext: run components one at a time in a notebook, and look at every artifact.

    >>> context = InteractiveContext(pipeline_root='runs/penguin', pipeline_name='penguin')
    >>> gen = CsvExampleGen(input_base='data/penguins')
    >>> context.run(gen)
    >>> context.show(gen.outputs['examples'])

Each ``run`` goes through the same core as the runners (lease, launcher, store and cache), in one
run of the context. With the pipeline's name, root and store, a component already run here is a cache hit
when the pipeline is later run with ``sluice run`` (and the other way round).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Sequence

from sluice.metadata import storage
from sluice.components.component import Channel, Component
from sluice.metadata.artifact import Artifact
from sluice.metadata.store import MetadataStore
from sluice.orchestration.core import Session
from sluice.orchestration.launcher import NodeResult
from sluice.dsl.pipeline import Pipeline
from sluice.orchestration.run import new_run_id
from sluice.ui.visuals import View, history_view, lineage_view, render, run_view


class InteractiveError(RuntimeError):
    """A component cannot run yet, or failed; the message says what to do."""


class InteractiveContext:
    def __init__(self, pipeline_root: str | None = None, metadata: str | None = None,
                 pipeline_name: str = 'interactive', beam_pipeline_args: Sequence[str] = ('--direct_num_workers=1',),
                 enable_cache: bool = True) -> None:
        self.pipeline_root = storage.normalize(pipeline_root or tempfile.mkdtemp(prefix='sluice-interactive-'))
        self.metadata = metadata or f'sqlite:///{os.path.join(storage.local_dir(self.pipeline_root), "metadata.db")}'
        self.pipeline_name = pipeline_name
        self.enable_cache = enable_cache
        self.store = MetadataStore(self.metadata)
        self.run_id = f'interactive-{new_run_id()}'
        self.beam_pipeline_args = list(beam_pipeline_args)
        self._components: dict[str, Component] = {}
        self._results: dict[int, NodeResult] = {}
        self._ids: dict[str, int] = {}
        self._order: list[str] = []

    def run(self, component: Component) -> NodeResult:
        """Launch one component (its upstream components must have run in this context), then the
        nodes it brings along (a Trainer's ONNX export, ``Trainer.onnx``); returns the component's result."""
        for up in component.upstream:
            done = self._results.get(id(up))
            if done is None:
                raise InteractiveError(f'{component.id} needs {up.id}, which has not been run in this context yet; '
                                       f'run context.run({_var(up)}) first.')
            if not done.ok:
                raise InteractiveError(f'{component.id} needs {up.id}, which {done.state}; fix it and run it again.')
        if self._ids.get(component.id, id(component)) != id(component):
            raise InteractiveError(f"Another component with the id '{component.id}' already ran in this context; "
                                   f"give this one its own id with .with_id('{component.id.lower()}_2').")
        if not self._order:
            self.store.register_run(self.pipeline_name, self.run_id,
                                    {'node_ids': '[]', 'pipeline_root': self.pipeline_root, 'runner': 'interactive'})
        if component.id not in self._order:
            self._order.append(component.id)
            self.store.update_run(self.run_id, {'node_ids': json.dumps(self._order)})
        started = time.time()
        # The components run so far and this one, as a pipeline, through the same core as the runners.
        done = [c for c in self._components.values() if c is not component]
        pipeline = Pipeline(self.pipeline_name, self.pipeline_root, [*done, component], metadata=self.store.connect_url,
                            enable_cache=self.enable_cache, beam_pipeline_args=self.beam_pipeline_args)
        with Session.open(pipeline, self.store, self.run_id, 'interactive') as session:
            result = session.node(component, [self._results[id(up)] for up in component.upstream])
        self._components[component.id] = component
        self._ids[component.id] = id(component)
        self._results[id(component)] = result
        print(f'{component.id}: {result.state} in {time.time() - started:.1f}s (execution #{result.execution_id})')
        if result.state == 'FAILED':
            raise InteractiveError(f'{component.id} failed: {result.error}')
        for companion in component.companions:  # a Trainer's ONNX export: part of running a Trainer here
            self.run(companion)
        return result

    # -- looking at things ----------------------------------------------------------------------
    def artifact(self, item: Channel | Artifact) -> Artifact:
        if isinstance(item, Artifact):
            return item
        if isinstance(item, Channel):
            result = self._results.get(id(item.producer))
            if result is None:
                raise InteractiveError(f'{item!r} has no artifact yet: run context.run({_var(item.producer)}) first.')
            return result.outputs[item.key]
        raise TypeError(f'show() takes a channel (component.outputs[...]), an artifact, a component or a run; '
                        f'got {type(item).__name__}')

    def view(self, item: Any = None, facets: bool = False) -> View | list[View]:
        """The view(s) of an item: a channel or artifact, a component (all its outputs), or None / a
        run id / a run result for a run's DAG with node states and its timeline. Statistics are drawn
        with their anomalies marked, and an evaluation with its validator's bounds and verdict, when
        the run that produced them has those."""
        if item is None or isinstance(item, str) or hasattr(item, 'run_id'):
            run_id = item if isinstance(item, str) else getattr(item, 'run_id', None) or self.run_id
            executions = self.store.executions(run_id)
            return run_view(self.store.run(run_id), executions)
        if isinstance(item, Component):
            result = self._results.get(id(item))
            if result is None:
                raise InteractiveError(f'{item.id} has not been run in this context yet.')
            return [render(a, facets=facets, related=self._related(a)) for a in result.outputs.values()]
        artifact = self.artifact(item)
        return render(artifact, facets=facets, related=self._related(artifact))

    def _related(self, artifact: Artifact) -> list[Artifact]:
        """The other outputs of the run that produced an artifact (what its view can draw on)."""
        if not artifact.id:
            return []
        try:
            producer = self.store.producing_execution(artifact.id)
            records = self.store.executions(producer.run_id) if producer is not None and producer.run_id else []
        except Exception:  # noqa: BLE001 - a view without extras rather than no view
            return []
        return [a for r in records for group in r.outputs.values() for a in group if a.id != artifact.id]

    def show(self, item: Any = None, facets: bool = False) -> None:
        """Display ``view(item)``: HTML with plots in Jupyter (self-contained: nothing is loaded from
        the network), text in a terminal. ``facets=True`` adds TFDV's facets view to statistics (it
        loads the facets web components from the internet, as TFDV does)."""
        views = self.view(item, facets=facets)
        for view in views if isinstance(views, list) else [views]:
            _display(view)

    def history(self, destination: str | None = None) -> None:
        """Show the pipeline's history: each node's duration across its runs, and for a push
        destination, the models pushed there over time and the drift of the data they were served."""
        _display(history_view(self.store, self.pipeline_name, destination))

    def lineage(self, item: Channel | Artifact) -> None:
        """Draw what produced an artifact, back to its sources."""
        _display(lineage_view(self.store.lineage(self.artifact(item).id)))


def _var(component: Component) -> str:
    return component.id[0].lower() + component.id[1:]


def _display(view: View) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None and type(get_ipython()).__name__ != 'TerminalInteractiveShell':
            display(view)
            return
    except ImportError:
        pass
    print(view)
