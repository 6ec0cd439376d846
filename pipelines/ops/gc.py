"""Garbage collection: delete the files of artifacts nothing still needs (``sluice gc``).

An artifact is kept when any of these still needs it:

- a **kept run**: one of the newest ``keep_runs`` runs of its pipeline, a run newer than
  ``older_than_days``, or a run whose nodes are still running. Every artifact a kept run's executions
  read or wrote is kept, including those its CACHED executions reuse from older runs, so the cache
  of a kept run's inputs still hits;
- a **production version**: the Model artifact of this store that any version at a push destination
  recorded in the store was pushed from (the destination's own copy is never touched).

Everything else that an execution of an older run wrote under that run's pipeline root is deleted:
first marked DELETED in ML-Metadata (so no cache lookup can pick it from then on), then its files
removed. Lineage still lists it, marked deleted. Files outside the pipeline root (input CSVs, push
destinations, artifacts standing for files elsewhere) are never deleted.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

from sluice.metadata.artifact import Artifact
from sluice.metadata.records import RunSummary
from sluice.metadata.store import MetadataStore


@dataclass
class Plan:
    kept_runs: list[RunSummary] = field(default_factory=list)
    old_runs: list[RunSummary] = field(default_factory=list)
    delete: list[tuple[Artifact, str, int]] = field(default_factory=list)  # artifact, run id, bytes
    kept_for_production: set[int] = field(default_factory=set)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.delete)


def size_of(path: str) -> int:
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


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return bool(root) and os.path.commonpath([path, root]) == root and path != root


def plan(store: MetadataStore, keep_runs: int = 5, older_than_days: float | None = None,
         now: float | None = None) -> Plan:
    """What ``collect`` would delete, and why the rest is kept."""
    if keep_runs < 1:
        raise ValueError(f'--keep-runs {keep_runs}: keep at least the newest run (its outputs are what the cache '
                         'reuses); give 1 or more.')
    now = time.time() if now is None else now
    result = Plan()
    by_pipeline: dict[str, list[RunSummary]] = {}
    for run in store.runs():
        by_pipeline.setdefault(run.pipeline_name, []).append(run)
    for runs in by_pipeline.values():
        runs.sort(key=lambda r: (r.create_time, r.run_id))
        for i, run in enumerate(runs):
            newest = i >= len(runs) - keep_runs
            recent = older_than_days is not None and now - run.create_time < older_than_days * 86400
            (result.kept_runs if newest or recent or run.state == 'RUNNING' else result.old_runs).append(run)

    needed: set[int] = set()
    for run in result.kept_runs:
        for record in store.executions(run.run_id):
            needed |= {a.id for group in [*record.inputs.values(), *record.outputs.values()] for a in group}
    result.kept_for_production = _production_models(store)
    needed |= result.kept_for_production

    seen: set[int] = set()
    for run in result.old_runs:
        root = run.properties.get('pipeline_root') or ''
        for record in store.executions(run.run_id):
            for artifact in (a for group in record.outputs.values() for a in group):
                if artifact.id in needed or artifact.id in seen or artifact.state != 'LIVE' or artifact.external_id:
                    continue
                seen.add(artifact.id)
                if artifact.uri and root and _inside(artifact.uri, root):
                    result.delete.append((artifact, run.run_id, size_of(artifact.uri) if artifact.exists() else 0))
    return result


def _production_models(store: MetadataStore) -> set[int]:
    """Model artifacts of this store that a version at a known push destination was pushed from."""
    from sluice.components.production.destination import inspect_version, versions
    from sluice.components.production.record import store_identity

    me = store_identity(store, create=False)
    destinations = {a.get('pushed_destination') for a in store.artifacts_of_type('PushedModel')
                    if a.get('pushed_destination')}
    keep: set[int] = set()
    for destination in destinations:
        for number in versions(destination):
            version = inspect_version(destination, number)
            origin = version.origin if version is not None else {}
            if origin.get('artifact_id') and origin.get('store_id') in (me, None):
                keep.add(int(origin['artifact_id']))
    return keep


def collect(store: MetadataStore, gc_plan: Plan) -> None:
    """Mark the planned artifacts DELETED in the store, then remove their files."""
    artifacts = [a for a, _, _ in gc_plan.delete]
    store.mark_deleted(artifacts)
    for artifact in artifacts:
        if os.path.isdir(artifact.uri):
            shutil.rmtree(artifact.uri, ignore_errors=True)
        elif os.path.exists(artifact.uri):
            os.remove(artifact.uri)


def describe(gc_plan: Plan, dry_run: bool) -> list[str]:
    mb = gc_plan.bytes / 1e6
    runs = sorted({run for _, run, _ in gc_plan.delete})
    verb = 'Would delete' if dry_run else 'Deleted'
    lines = [f'{verb} {len(gc_plan.delete)} artifacts of {len(runs)} runs, {mb:.1f} MB'
             + (f" (runs {', '.join(runs)})" if runs else '') + '.']
    for artifact, run, size in gc_plan.delete:
        lines.append(f'  {artifact.type_name()} #{artifact.id}  {size / 1e6:8.2f} MB  run {run}  {artifact.uri}')
    lines.append(f'Kept {len(gc_plan.kept_runs)} runs and everything they use'
                 + (f', and {len(gc_plan.kept_for_production)} models pushed to production' if gc_plan.kept_for_production
                    else '') + '.')
    if dry_run and gc_plan.delete:
        lines.append('Nothing was deleted (--dry-run).')
    return lines
