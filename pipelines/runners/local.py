"""LocalDagRunner: runs a pipeline's nodes in this process, independent ones at once (up to ``parallel``)."""
from __future__ import annotations

from typing import Sequence

from sluice.metadata.store import MetadataStore
from sluice.orchestration.core import Session
from sluice.orchestration.launcher import NodeResult
from sluice.dsl.pipeline import Pipeline
from sluice.orchestration.run import Progress, RunResult
from sluice.orchestration.schedule import run_nodes


class LocalDagRunner:
    """Runs every node of a pipeline in this process.

        >>> result = LocalDagRunner().run(pipeline)
        >>> result.run_id, result.state, result.node_states()
        >>> LocalDagRunner().resume(None, result.run_id, metadata=url)   # after a failure or a kill

    Nodes the DAG does not order run at once, up to ``parallel`` (default: the cores this process may
    use; 1: one after another in the pipeline's order), each in a thread of this process
    (``sluice.orchestration.schedule``). A node that fails stops the nodes downstream of it (SKIPPED);
    independent branches still run. What each node does (reuse, skip, launch, fenced by the run's
    lease) is decided by ``sluice.orchestration.core.Session``; a runner only schedules.
    """

    name = 'local'

    def __init__(self, progress: bool | Progress = True, parallel: int | None = None) -> None:
        self.progress = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
        if parallel is not None and parallel < 1:
            raise ValueError(f'parallel={parallel}: give how many nodes may run at once, 1 or more.')
        self.parallel = parallel

    def run(self, pipeline: Pipeline, run_id: str | None = None, store: MetadataStore | None = None, *,
            from_nodes: Sequence[str] = (), to_nodes: Sequence[str] = (), only: Sequence[str] = ()) -> RunResult:
        """A new run of ``pipeline`` (``run_id`` to choose its id). ``from_nodes``/``to_nodes``/``only``
        make it a partial run (see ``Pipeline.select``): the nodes it consumes from are reused from
        the newest earlier run where they succeeded."""
        selected = pipeline.select(from_nodes, to_nodes, only)
        store = store or MetadataStore(pipeline.metadata)
        with Session.start(pipeline, store, run_id, self.name, self.progress, selected) as session:
            return session.finish(self._schedule(session))

    def run_node(self, pipeline: Pipeline, run_id: str, node_id: str, store: MetadataStore | None = None,
                 retries: bool = True, attempt: int | None = None) -> NodeResult:
        """Run one node of run ``run_id`` in this process (``sluice run-node``): the run is created if
        it does not exist yet; the node's upstream nodes must have succeeded in it; a node already
        done is reused. ``retries=False`` when the caller (Airflow, KFP) does the retrying; ``attempt``:
        the caller's try number, which lets a retry take over the node from an earlier try at once."""
        store = store or MetadataStore(pipeline.metadata)
        with Session.for_node(pipeline, store, run_id, node_id, self.progress, attempt) as session:
            session.retries = retries
            component = session.pipeline.node(node_id)
            upstream = [NodeResult(u.id, u.component_type, 'COMPLETE') for u in component.upstream]
            result = session.node(component, upstream)
            session.lease.release()
            session.node_task_ended(result)
            return result

    def resume(self, pipeline: Pipeline | None, run_id: str, store: MetadataStore | None = None,
               metadata: str | None = None, take_over: bool = False) -> RunResult:
        """Continue ``run_id``: reuse what finished, run what failed, never started or was abandoned,
        with the run's own settings (root, Beam arguments, cache flag). ``pipeline=None`` uses the
        definition stored with the run (its store: ``metadata`` URL). Refuses while another live
        process drives the run, unless ``take_over``."""
        if store is None:
            url = metadata or (pipeline.metadata if pipeline is not None else None)
            if url is None:
                raise ValueError('resume(None, run_id) needs the store: pass metadata=URL or store=...')
            store = MetadataStore(url, create=False)
        with Session.resume(pipeline, run_id, store, self.name, self.progress, take_over) as session:
            if session.complete_already:
                return session.finish({})
            return session.finish(self._schedule(session))

    def _schedule(self, session: Session) -> dict[str, NodeResult]:
        return run_nodes(session, self.parallel)
