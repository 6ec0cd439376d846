"""Garbage collection: delete the files of artifacts nothing still needs (``sluice gc``).

An artifact is kept when any of these still needs it:

- a **kept run**: one of the newest ``keep_runs`` runs of its pipeline, a run newer than
  ``older_than_days``, or a run that is not finished and not abandoned: anything but COMPLETE (a
  partial run: until its selected nodes are done) with a sign of life (an execution recorded or
  ended, a lease's heartbeat) within ``abandoned_after_days``, so a run waiting between nodes (an
  orchestrator's next task, a retry's wait) or a failed run about to be resumed keeps its inputs.
  Every artifact a kept run's executions read or wrote is kept, including those its CACHED
  executions reuse from older runs, so the cache of a kept run's inputs still hits;
- a **production version**: the Model artifact of this store that any version at a push destination
  recorded in the store was pushed from (the destination's own copy is never touched).

Everything else that an execution of an older run wrote under that run's pipeline root is deleted,
but only inside the directories gc is given (``roots``: ``sluice gc --root DIR``, else the current
directory): the store says where a run's files are, and a store is not trusted to choose what gc
deletes. Each artifact is first marked DELETED in ML-Metadata (so no cache lookup can pick it from
then on), then its files are removed. Lineage still lists it, marked deleted.

A run that takes an artifact as a cache hit while gc runs: the run records its CACHED execution,
then checks the artifacts are still LIVE (else it withdraws the hit and executes the node); gc marks
them DELETED, then looks for executions newer than its plan that use them (and marks those LIVE
again and keeps their files). Each side writes before it reads what the other wrote, so one of the
two always sees the other.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

from sluice.metadata import storage
from sluice.metadata.artifact import Artifact
from sluice.metadata.records import DONE_STATES, RunSummary
from sluice.metadata.store import MetadataStore

DEFAULT_ABANDONED_DAYS = 7.0  # an unfinished run with no sign of life for this long is abandoned


@dataclass
class Plan:
    kept_runs: list[RunSummary] = field(default_factory=list)
    old_runs: list[RunSummary] = field(default_factory=list)
    delete: list[tuple[Artifact, str, int]] = field(default_factory=list)  # artifact, run id, bytes
    kept_for_production: set[int] = field(default_factory=set)
    unfinished: list[RunSummary] = field(default_factory=list)  # kept: not finished, not abandoned
    outside: dict[str, int] = field(default_factory=dict)  # a run's root outside the roots -> artifacts left
    roots: list[str] = field(default_factory=list)
    newest_execution: int = 0  # executions after it were recorded while gc ran
    rescued: list[Artifact] = field(default_factory=list)  # taken by a run while gc ran: kept

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.delete)


def size_of(path: str) -> int:
    if storage.is_remote(path):
        return storage.size(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except OSError:
                pass
    return total


def _inside(path: str, root: str, itself: bool = False) -> bool:
    """Is ``path`` under ``root`` (or ``root`` itself, with ``itself``), symbolic links resolved?"""
    if storage.is_remote(path) or storage.is_remote(root):
        path, root = path.rstrip('/'), root.rstrip('/')
        return bool(root) and (path + '/').startswith(root + '/') and (itself or path != root)
    path, root = os.path.realpath(path), os.path.realpath(root)
    return bool(root) and os.path.commonpath([path, root]) == root and (itself or path != root)


def plan(store: MetadataStore, keep_runs: int = 5, older_than_days: float | None = None,
         now: float | None = None, roots: Sequence[str] | None = None,
         abandoned_after_days: float = DEFAULT_ABANDONED_DAYS) -> Plan:
    """What ``collect`` would delete (only under ``roots``, default the current directory), and why
    the rest is kept."""
    if keep_runs < 1:
        raise ValueError(f'--keep-runs {keep_runs}: keep at least the newest run (its outputs are what the cache '
                         'reuses); give 1 or more.')
    now = time.time() if now is None else now
    result = Plan(roots=[r if storage.is_remote(r) else os.path.realpath(r)
                         for r in (roots if roots is not None else [os.getcwd()])],
                  newest_execution=store.newest_execution_id())  # before anything is read
    by_pipeline: dict[str, list[RunSummary]] = {}
    for run in store.runs():
        by_pipeline.setdefault(run.pipeline_name, []).append(run)
    for runs in by_pipeline.values():
        runs.sort(key=lambda r: (r.create_time, r.run_id))
        for i, run in enumerate(runs):
            newest = i >= len(runs) - keep_runs
            recent = older_than_days is not None and now - run.create_time < older_than_days * 86400
            alive = not newest and not recent and _unfinished_and_alive(store, run, now, abandoned_after_days)
            if alive:
                result.unfinished.append(run)
            (result.kept_runs if newest or recent or alive else result.old_runs).append(run)

    needed: set[int] = set()
    for run in result.kept_runs:
        for record in store.executions(run.run_id):
            needed |= {a.id for group in [*record.inputs.values(), *record.outputs.values()] for a in group}
    result.kept_for_production = _production_models(store)
    needed |= result.kept_for_production

    seen: set[int] = set()
    for run in result.old_runs:
        root = run.properties.get('pipeline_root') or ''
        allowed = bool(root) and any(_inside(root, r, itself=True) for r in result.roots)
        for record in store.executions(run.run_id):
            for artifact in (a for group in record.outputs.values() for a in group):
                if artifact.id in needed or artifact.id in seen or artifact.state != 'LIVE' or artifact.external_id:
                    continue
                seen.add(artifact.id)
                if not (artifact.uri and root and _inside(artifact.uri, root)):
                    continue  # not a file of the run (input data, a push destination): never gc's to delete
                if not allowed:
                    result.outside[root] = result.outside.get(root, 0) + 1
                    continue
                result.delete.append((artifact, run.run_id, size_of(artifact.uri) if artifact.exists() else 0))
    return result


def _unfinished_and_alive(store: MetadataStore, run: RunSummary, now: float, abandoned_after_days: float) -> bool:
    """Is the run not finished (anything but COMPLETE; a partial run: a selected node not done) and
    not abandoned (a sign of life within ``abandoned_after_days``: an execution recorded or ended,
    a lease heartbeat)?"""
    selected = run.properties.get('selected_nodes')
    if selected:
        latest = run.latest()
        if all(latest.get(n) is not None and latest[n].state in DONE_STATES for n in json.loads(selected)):
            return False
    elif run.state == 'COMPLETE':
        return False
    signs = [ex.update_time for ex in run.executions] + [run.create_time]
    for scope in [run.run_id] + [f'{run.run_id}/{n}' for n in run.node_ids]:
        lease = store.lease_latest(scope)
        if lease is not None:
            signs.append(lease.heartbeat)
    return now - max(signs) < abandoned_after_days * 86400


def _production_models(store: MetadataStore) -> set[int]:
    """Model artifacts of this store that a version at a known push destination was pushed from, and
    their ONNX copies (the OnnxModels made from them: what a promotion or a Pusher fed that model pushes)."""
    from sluice.components.production.destination import inspect_version, push_destination, versions
    from sluice.components.production.record import store_identity

    me = store_identity(store, create=False)
    destinations = {push_destination(a) for a in store.artifacts_of_type('PushedModel') if push_destination(a)}
    keep: set[int] = set()
    for destination in destinations:
        for number in versions(destination):
            version = inspect_version(destination, number)
            origin = version.origin if version is not None else {}
            if origin.get('artifact_id') and origin.get('store_id') in (me, None):
                keep.add(int(origin['artifact_id']))
    keep |= {a.id for a in store.artifacts_of_type('OnnxModel') if a.get('model_id') in keep}
    return keep


def collect(store: MetadataStore, gc_plan: Plan) -> None:
    """Mark the planned artifacts DELETED in the store, keep those a run took meanwhile (a cache hit
    recorded since the plan: marked LIVE again), then remove the others' files."""
    artifacts = [a for a, _, _ in gc_plan.delete]
    store.mark_deleted(artifacts)
    taken = store.referenced_after([a.id for a in artifacts], gc_plan.newest_execution)
    if taken:
        store.mark_live(taken)
        gc_plan.rescued = [a for a in artifacts if a.id in taken]
        for artifact in gc_plan.rescued:
            artifact.state = 'LIVE'
        gc_plan.delete = [d for d in gc_plan.delete if d[0].id not in taken]
    for artifact, _, _ in gc_plan.delete:
        storage.remove_tree(artifact.uri)


def describe(gc_plan: Plan, dry_run: bool) -> list[str]:
    mb = gc_plan.bytes / 1e6
    runs = sorted({run for _, run, _ in gc_plan.delete})
    verb = 'Would delete' if dry_run else 'Deleted'
    lines = [f'{verb} {len(gc_plan.delete)} artifacts of {len(runs)} runs, {mb:.1f} MB'
             + (f" (runs {', '.join(runs)})" if runs else '') + '.']
    for artifact, run, size in gc_plan.delete:
        lines.append(f'  {artifact.type_name()} #{artifact.id}  {size / 1e6:8.2f} MB  run {run}  {artifact.uri}')
    lines.append(f'Kept {len(gc_plan.kept_runs)} runs and everything they use'
                 + (f' ({len(gc_plan.unfinished)} of them unfinished: '
                    f"{', '.join(f'{r.run_id} ({r.state})' for r in gc_plan.unfinished)})" if gc_plan.unfinished else '')
                 + (f', and {len(gc_plan.kept_for_production)} models pushed to production' if gc_plan.kept_for_production
                    else '') + '.')
    if gc_plan.rescued:
        lines.append(f'Kept {len(gc_plan.rescued)} artifacts a run took as cache hits while gc ran: '
                     + ', '.join(f'#{a.id}' for a in gc_plan.rescued) + '.')
    for root, count in sorted(gc_plan.outside.items()):
        lines.append(f'Left {count} artifacts of old runs under {root}: outside the directories gc deletes in '
                     f"({', '.join(gc_plan.roots)}); run gc there or add --root {root}.")
    if dry_run and gc_plan.delete:
        lines.append('Nothing was deleted (--dry-run).')
    return lines
