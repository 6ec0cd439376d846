"""Pusher: puts a blessed model into production, atomically, and only over the baseline it beat.

    >>> pusher = Pusher(model=trainer.outputs['model'], blessing=validator.outputs['blessing'],
    ...                 push_destination='serving/penguin')

The destination is the truth of what is in production (``sluice.components.production.destination``:
the highest-numbered complete version). A push copies the model (its ``Format-Serving`` SavedModel
to the version's root, where TF Serving loads it, and its ONNX copy beside it: the ``onnx_model`` the
Trainer's OnnxExporter made, wired by itself when ``model`` is a Trainer's) into a new
version the way every change of production is written (``sluice.components.production.changes``:
staged, then renamed into place, and appended to the destination's history). Under a lock on the
destination it happens only if the model in production is still the version (and fingerprint) the
blessing was measured against (compare-and-swap); if the model in production is the candidate
itself, the push is already done. Otherwise, or when the
blessing is NOT_BLESSED, or an ``infra_blessing`` (the InfraValidator's) is INFRA_NOT_BLESSED,
nothing is pushed and the PushedModel records ``pushed=0`` and why.

The destination may be on an object store (``push_destination='s3://bucket/prefix'``): there the
compare-and-swap is made with exclusive creates instead of a lock (see ``changes.change``), with the
same outcome: of two pushes over one baseline, one is pushed and the other records ``pushed=0``.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.executor import Executor
from sluice.components.onnx_exporter import WithOnnxDriver, check_onnx_of, onnx_dir, wire_onnx
from sluice.metadata import storage
from sluice.components.production import objectstore
from sluice.components.production.changes import PushError, Write, change, copy_model, new_record
from sluice.components.production.destination import (SERVING_DIR, Production, Version, describe_ref,
                                                      inspect_version, location, pushed_directory)
from sluice.components.production.identity import holds_model
from sluice.components.production.destination import push_destination as destination_of
from sluice.components.production.record import store_identity
from sluice.metadata.artifact import Artifact, InfraBlessing, Model, ModelBlessing, OnnxModel, PushedModel


def _blessing_summary(blessing: ModelBlessing) -> tuple[dict, dict | None]:
    """The verdict and reasons of a blessing, and the overall metrics of its evaluation (reasons.json)."""
    reasons: dict = {}
    path = os.path.join(blessing.uri, 'reasons.json')
    if os.path.isfile(path):
        with open(path) as f:
            reasons = json.load(f)
    summary = {'artifact_id': blessing.id, 'verdict': 'BLESSED' if blessing.get('blessed') else 'NOT_BLESSED',
               'checks': [{k: c.get(k) for k in ('metric', 'slice', 'passed', 'reason')}
                          for c in reasons.get('checks', [])],
               'policy': reasons.get('policy') or ''}
    return summary, reasons.get('overall_metrics')


# -- the component ---------------------------------------------------------------------------------
class PusherDriver(WithOnnxDriver):
    """Finds the model's ONNX copy (``WithOnnxDriver``), records who pushes (store identity, pipeline,
    run) on the PushedModel, and re-checks the
    destination before reusing a cached push: a cached ``pushed=1`` whose version is gone or no
    longer holds the pushed files is not reused, so the Pusher runs again and the compare-and-swap
    decides."""

    def output_artifacts(self, execution_id: int, key: str) -> dict[str, Artifact]:
        outputs = super().output_artifacts(execution_id, key)
        pushed = outputs['pushed_model']
        pushed.set('store_id', store_identity(self.store))
        pushed.set('pipeline', self.pipeline.name)
        pushed.set('run_id', self.pipeline.run_id)
        return outputs

    def cache_key_parts(self, inputs: dict[str, Artifact | None]) -> dict[str, Any]:
        """Adds the gates' verdicts: an input's fingerprint comes from the key of the execution that
        made it, and a gate run again (``--no-cache InfraValidator``: its verdict depends on where it ran
        as well as on its key) can reach another verdict under the same key."""
        parts = super().cache_key_parts(inputs)
        verdicts = {f'{name}.blessed': str(artifact.get('blessed')) for name, artifact in inputs.items()
                    if artifact is not None and 'blessed' in artifact.PROPERTIES}
        parts['external'] = {**parts['external'], **verdicts}
        return parts

    def cached_outputs(self, key: str) -> dict[str, Artifact] | None:
        outputs = super().cached_outputs(key)
        if outputs is None:
            return None
        pushed = outputs['pushed_model']
        if pushed.get('pushed') == 1:
            version = inspect_version(destination_of(pushed), pushed.get('pushed_version') or 0) \
                if str(pushed.get('pushed_version') or '').isdigit() else None
            expected = pushed.get('pushed_fingerprint')
            if version is None or not version.complete or (expected and version.fingerprint != expected):
                where = pushed_directory(pushed)
                why = 'is gone' if version is None else 'no longer holds the pushed model'
                print(f'{self.component.id}: the cached push ({pushed!r}) says pushed, but {where} {why}; '
                      'pushing again', flush=True)
                return None
        return outputs


class PusherExecutor(Executor):
    def run(self, *, model: Model, blessing: ModelBlessing | None, pushed_model: PushedModel,
            push_destination: str, infra_blessing: InfraBlessing | None = None,
            onnx_model: OnnxModel | None = None) -> None:
        destination = location(push_destination)
        check_onnx_of(onnx_model, model, 'Pusher')
        onnx_uri = onnx_dir(onnx_model)
        pushed_model.set('push_destination', destination)  # the destination; pushed_destination: the version (TFX)
        pushed_model.set('pushed_destination', '')
        if infra_blessing is not None:
            if infra_blessing.get('current_model_id') != model.id:
                raise ValueError(f'{infra_blessing!r} checked model #{infra_blessing.get("current_model_id")}, not '
                                 f'{model!r}; wire the same Trainer output into InfraValidator and Pusher.')
            if not infra_blessing.get('blessed'):
                return self._not_pushed(pushed_model, 'the model failed its infra check: '
                                        f'{infra_blessing.get("reason") or "see its infra_validation.json"}; the '
                                        'destination is unchanged')
        if blessing is None:  # TFX's Pusher without model_blessing: every model is pushed, and that is said
            pushed_model.set('gated', 0)
            return self._push(model, onnx_uri, pushed_model, destination)
        if blessing.get('current_model_id') != model.id:
            raise ValueError(f'{blessing!r} blesses model #{blessing.get("current_model_id")}, not {model!r}; wire '
                             'the same Trainer output into ModelValidator and Pusher.')
        measured_at = blessing.get('push_destination') or ''
        if measured_at and location(measured_at) != destination:
            raise ValueError(f'{blessing!r} was measured against the model in production at {measured_at}, but this '
                             f'Pusher pushes to {destination}; give the Evaluator push_destination={destination!r}.')
        if not blessing.get('blessed'):
            return self._not_pushed(pushed_model, 'the model is NOT_BLESSED (see the blessing\'s reasons.json); '
                                                  'the destination is unchanged')
        return self._push(model, onnx_uri, pushed_model, destination, blessing, measured_at)

    def _push(self, model: Model, onnx_uri: str | None, pushed_model: PushedModel, destination: str,
              blessing: ModelBlessing | None = None,
              measured_at: str = '') -> None:
        """Copy the model into a new version under the destination's lock. Gated (a blessing): only if
        production is still the version the blessing was measured against (compare-and-swap)."""
        if not os.path.isfile(os.path.join(model.uri, SERVING_DIR, 'saved_model.pb')):
            raise PushError(f'{model!r} holds no {SERVING_DIR}/saved_model.pb; there is nothing to push.')
        baseline = None
        if blessing is not None:
            measured_version = str(blessing.get('baseline_version') or '')
            if measured_version.isdigit():
                baseline = {'version': int(measured_version), 'fingerprint': blessing.get('baseline_fingerprint')}
        ungated = '' if blessing is not None else '; no blessing gated this push (the Pusher has no blessing input)'

        def decide(now: Production) -> Any:
            for note in now.notes():
                print(f'Pusher: {note}', flush=True)
            current = now.current
            if current is not None and holds_model(current, model.uri, onnx_uri):
                # e.g. a push whose record in the store was cut off by a crash
                return current, f'already in production as version {current.number} (pushed earlier; nothing copied)'
            if blessing is not None and (current.ref() if current else None) != baseline and not (
                    current is not None and holds_model(current, model.uri, saved_model_only=True)
                    and (current.record or {}).get('baseline') == baseline):
                # (The model in production with another ONNX copy, e.g. the export's code changed: the
                # Evaluator measured it against that version's own baseline, which still holds.)
                return None, self._changed(baseline, now, measured_at)
            summary, metrics = _blessing_summary(blessing) if blessing is not None else (None, None)
            identity = {'store_id': pushed_model.get('store_id'), 'artifact_id': model.id,
                        'pipeline': pushed_model.get('pipeline'), 'run_id': pushed_model.get('run_id'),
                        'uri': model.stored_uri}
            record = new_record('push', identity, current, baseline=baseline, blessing=summary, metrics=metrics,
                                destination=destination)
            return Write(copy_model(model.uri, onnx_uri), record)

        now, outcome = change(destination, decide)
        if isinstance(outcome, tuple):
            version, reason = outcome
            if version is None:
                return self._not_pushed(pushed_model, reason)
            return self._pushed(pushed_model, model, version, reason + ungated)
        current = now.current
        over = f'over {current.describe()}' if current else '(the first model at this destination)'
        return self._pushed(pushed_model, model, outcome, f'pushed as version {outcome.number} {over}{ungated}')

    @staticmethod
    def _changed(baseline: dict | None, now: Production, measured_at: str) -> str:
        current = now.current
        by = ''
        if current is not None:
            model = (current.record or {}).get('model') or {}
            by = {'rollback': f', a rollback to version {((current.record or {}).get("target") or {}).get("version")}',
                  'promote': f', promoted by hand ({(current.record or {}).get("reason")})',
                  'hand-pushed': ', pushed by hand or by another tool',
                  'copied': f', {current.copied_from()} made by hand'}.get(
                current.kind, f", pushed by pipeline {model.get('pipeline')} run {model.get('run_id')}"
                if model.get('pipeline') else '')
        notes = ''.join(f'; {n}' for n in now.notes())
        hint = ''
        if baseline is None and not measured_at:
            hint = (' (its evaluation names no push destination: give the Evaluator push_destination=... or put '
                    'Evaluator and Pusher in one Pipeline)')
        after = (f'run the pipeline again (a new run or sluice resume) to measure it against {current.describe()}'
                 if current is not None else 'run the pipeline again to measure it against an empty destination')
        return (f'the model in production changed since this model was evaluated (it was measured against '
                f'{describe_ref(baseline)}{hint}, production at {now.destination} is now {now.describe()}{by}{notes}); '
                f'{after}')

    @staticmethod
    def _pushed(pushed_model: PushedModel, model: Model, version: Version, reason: str) -> None:
        if storage.is_remote(version.path):  # the artifact keeps a copy of what was pushed (not the claim)
            objectstore.download(version.path, pushed_model.uri, lambda rel: '/' not in rel and rel.startswith('.'))
        for part in [] if storage.is_remote(version.path) else os.listdir(version.path):
            src = os.path.join(version.path, part)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(pushed_model.uri, part))
        pushed_model.set('pushed', 1)
        pushed_model.set('pushed_destination', version.path)
        pushed_model.set('pushed_version', str(version.number))
        pushed_model.set('pushed_fingerprint', version.fingerprint or '')
        pushed_model.set('reason', reason)
        print(f'Pusher: model #{model.id} {reason}: {version.path}', flush=True)

    @staticmethod
    def _not_pushed(pushed_model: PushedModel, reason: str) -> None:
        pushed_model.set('pushed', 0)
        pushed_model.set('pushed_version', '')
        pushed_model.set('reason', reason)
        with open(os.path.join(pushed_model.uri, 'NOT_PUSHED'), 'w') as f:
            f.write(reason + '\n')
        print(f'Pusher: not pushed: {reason}', flush=True)


class Pusher(Component):
    """Pushes a BLESSED model to ``push_destination/<version>/``, atomically and compare-and-swap.
    Without a ``blessing`` input (as TFX allows), every model is pushed; the PushedModel records
    ``gated=0`` and the run's output says that no blessing gated the push."""
    model = Input(Model)
    blessing = Input(ModelBlessing, optional=True)  # None: every model is pushed (TFX's Pusher without a blessing)
    infra_blessing = Input(InfraBlessing, optional=True)  # given: nothing is pushed unless it is INFRA_BLESSED
    onnx_model = Input(OnnxModel, optional=True)  # the model's ONNX copy; a Trainer's is wired by itself
    pushed_model = Output(PushedModel)
    push_destination = Parameter(str, path=True)
    libraries = ()  # copies files: no library shapes its output
    executor = PusherExecutor
    driver = PusherDriver

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**wire_onnx(kwargs))
