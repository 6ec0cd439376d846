"""``tfx.orchestration``: ``LocalDagRunner`` (Sluice's) and ``metadata`` (connection configs)."""
from __future__ import annotations

import shlex
from typing import Any

from sluice.runners.beam import BeamDagRunner as _SluiceBeamDagRunner
from sluice.runners.local import LocalDagRunner as _SluiceLocalDagRunner
from sluice.orchestration.run import RunResult
from sluice.tfx.v1._common import module_getattr
from sluice.tfx.v1.orchestration import metadata


class RunFailed(RuntimeError):
    """A run through ``tfx.orchestration.LocalDagRunner`` failed (TFX's runner raises too); ``result``
    is Sluice's RunResult, and the run can be continued with ``sluice resume RUN_ID``."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


def _raise_on_failure(result: RunResult, pipeline: Any) -> RunResult:
    failed = {n.node_id: n.error or n.state for n in result.nodes.values()
              if not n.ok}
    if failed:
        errors = '; '.join(f'{node}: {error}' for node, error in failed.items())
        raise RunFailed(f'Run {result.run_id} of pipeline {pipeline.name!r} failed ({errors}). Fix it and continue '
                        f'the same run with: sluice resume {result.run_id} --metadata {shlex.quote(result.metadata)}',
                        result)
    return result


class LocalDagRunner(_SluiceLocalDagRunner):
    """Sluice's LocalDagRunner (same launcher, store, cache, leases and resume). As TFX's does,
    ``run`` raises when a node failed (``RunFailed``, naming the nodes and the ``sluice resume``
    command); otherwise it returns Sluice's RunResult (``run_id``, ``state``, ``node_states()``)."""

    def run(self, pipeline: Any, *args: Any, **kwargs: Any) -> RunResult:  # type: ignore[override]
        return _raise_on_failure(super().run(pipeline, *args, **kwargs), pipeline)


class BeamDagRunner(_SluiceBeamDagRunner):
    """Sluice's BeamDagRunner (``tfx.orchestration.beam.beam_dag_runner.BeamDagRunner``): the DAG runs as a
    Beam pipeline, each node through the same launcher as LocalDagRunner; ``run`` raises as above."""

    def run(self, pipeline: Any, *args: Any, **kwargs: Any) -> RunResult:  # type: ignore[override]
        return _raise_on_failure(super().run(pipeline, *args, **kwargs), pipeline)


_OFFERED = ['LocalDagRunner', 'metadata']
_MISSING = {
    'experimental': "Sluice's other ways of running are pipelines.BeamDagRunner, `sluice export airflow` and "
                    "`sluice export kfp` (README, 'Runners')",
}
__getattr__ = module_getattr('tfx.orchestration', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
