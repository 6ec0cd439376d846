"""Partial runs (``sluice run --from/--to/--only``): the earlier outputs the selected nodes consume.

The nodes a selection consumes from without running them (its *providers*) are all taken from one
earlier run: the newest run of the pipeline in which every one of them succeeded and whose outputs
are still LIVE and on disk. Taking each provider's newest output on its own could hand a model
trained in one run the examples of another. A provider that has a newer output elsewhere (a run
that did not produce the others with it) is named in the plan as not used.

Each reused node's cache key is computed again from the inputs it recorded and today's code and
parameters; when it differs, the plan says what changed since. The outputs are reused all the same
(that is what a partial run asks for); ``--from`` that node runs it again.
"""
from __future__ import annotations

from sluice.components.driver import PipelineInfo
from sluice.dsl.pipeline import Pipeline, PipelineError
from sluice.metadata.records import DONE_STATES, ExecutionRecord
from sluice.metadata.store import MetadataStore
from sluice.orchestration.resume import Step, key_changes


def providers(pipeline: Pipeline, store: MetadataStore, selected: set[str]) -> tuple[dict[str, ExecutionRecord], dict[str, str]]:
    """The nodes ``selected`` consumes from but does not run, each with its execution in the one
    earlier run they are all taken from, and a note per node on what the plan should say besides
    (a newer output not used). A clear error when no earlier run produced them all."""
    needed = sorted({u.id for c in pipeline.components if c.id in selected for u in c.upstream
                     if u.id not in selected}, key=pipeline.node_ids.index)
    if not needed:
        return {}, {}
    done = {n: [r for r in store.node_executions_across_runs(pipeline.name, n) if _usable(r)] for n in needed}
    missing = [n for n in needed if not done[n]]
    if missing:
        users = {n: [c.id for c in pipeline.components if c.id in selected and n in {u.id for u in c.upstream}]
                 for n in missing}
        raise PipelineError(
            'This partial run needs outputs that no earlier run of pipeline '
            f"'{pipeline.name}' in {store.url} produced: "
            + '; '.join(f'{", ".join(users[n])} needs {n}, which has never produced an output (or its files are gone)'
                        for n in missing)
            + f'. Include {" and ".join(missing)} in the run (e.g. --from {missing[0]}), or run the whole pipeline once.')
    by_run: dict[str, dict[str, ExecutionRecord]] = {}
    for node_id, records in done.items():
        for record in records:  # oldest first: a run's newest execution of the node wins
            by_run.setdefault(record.run_id, {})[node_id] = record
    together = {run: found for run, found in by_run.items() if len(found) == len(needed)}
    if not together:
        newest = '; '.join(f'{n} in run {done[n][-1].run_id}' for n in needed)
        raise PipelineError(
            f'This partial run needs the outputs of {", ".join(needed)} from one earlier run (so that they '
            f'belong together), but no run of pipeline \'{pipeline.name}\' in {store.url} has them all with '
            f'their files still on disk (the newest: {newest}). Include {needed[0]} in the run '
            f'(e.g. --from {needed[0]}), or run the whole pipeline once.')
    chosen = max(together, key=lambda run: max(r.id for r in together[run].values()))
    notes = {n: f'{n} has a newer output (run {done[n][-1].run_id}) that is not used: that run did not '
                f'produce {", ".join(m for m in needed if m not in by_run[done[n][-1].run_id])} with it'
             for n in needed if done[n][-1].run_id != chosen}
    return together[chosen], notes


def _usable(record: ExecutionRecord) -> bool:
    return record.state in DONE_STATES and all(
        a.state == 'LIVE' and a.exists() for group in record.outputs.values() for a in group)


def changes_since(pipeline: Pipeline, store: MetadataStore, record: ExecutionRecord) -> list[str]:
    """What changed since ``record`` was made, in words: its key computed again from the inputs it
    recorded and the node's code and parameters as they are now (empty: nothing changed)."""
    component = pipeline.node(record.node_id)
    info = PipelineInfo(pipeline.name, pipeline.pipeline_root, record.run_id, tuple(pipeline.beam_pipeline_args))
    driver = type(component).driver(component, store, info)
    inputs = {k: (record.inputs.get(k) or [None])[0] if ch is not None else None
              for k, ch in component.inputs.items()}
    try:
        parts = driver.cache_key_parts(inputs)
    except Exception as e:  # its module file is gone or broken: say so, the run itself does not need it
        return [f'its key cannot be computed now ({e})']
    return key_changes(store, pipeline.name, record, parts)


def record_reuse(store: MetadataStore, pipeline: Pipeline, run_id: str, record: ExecutionRecord,
                 note: str | None = None) -> Step:
    """Record, in a partial run, a node taken from an earlier run: a CACHED execution with the same
    inputs and LIVE outputs as that run's, marked ``reused_from_run``; the step says what changed
    since it was made, if anything."""
    node_id = record.node_id
    component = pipeline.node(node_id)
    props = {k: record.properties[k] for k in ('cache_key', 'cache_key_parts', 'component_version')
             if k in record.properties}
    execution_id = store.record_cached_execution(
        component.component_type, pipeline.name, run_id, node_id, record.inputs, record.outputs,
        {**props, 'reused_from_run': record.run_id, 'reused_execution': record.id})
    if not store.all_live([a.id for group in record.outputs.values() for a in group]):  # see sluice.ops.gc
        store.withdraw_cached_execution(execution_id, f'the outputs of {node_id} in run {record.run_id} were being '
                                        'deleted by sluice gc when this partial run took them')
        raise PipelineError(f'{node_id}: its outputs in run {record.run_id} were deleted by sluice gc while this '
                            'partial run started; start it again (it takes them from another run, or says what to '
                            'include).')
    reason = f'reused from run {record.run_id} (execution #{record.id})'
    changes = changes_since(pipeline, store, record)
    if changes:
        reason += f'; changed since: {"; ".join(changes)} (--from {node_id} runs it again)'
    if note:
        reason += f'; {note}'
    return Step(node_id, 'reuse', reason, store.execution(execution_id))


def describe(steps: dict[str, Step]) -> list[str]:
    """What a partial run prints before it starts about the nodes it reuses, when there is more to
    say than where they came from."""
    return [f'Partial run: {s.node_id} {s.reason}' for s in steps.values() if s.action == 'reuse' and ';' in s.reason]

