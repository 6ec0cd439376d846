"""ModelValidator, the gate's decision: TFMA's verdict on the evaluation (``tfma_validation``), the
first-run policy when there is no baseline, and the ModelBlessing it always writes (BLESSED or
NOT_BLESSED, reasons.json), bound to the candidate and to the production version it was measured
against. See the package docstring for the threshold semantics.
"""
from __future__ import annotations

import json
import os
from typing import Any

from sluice.components.component import Component, Input, Output, Parameter
from sluice.components.evaluator import OVERALL, json_safe, load_metrics_summary
from sluice.components.executor import Executor
from sluice.components.model_validator.thresholds import normalize_threshold
from sluice.components.model_validator.tfma_validation import validate_evaluation
from sluice.metadata.artifact import Model, ModelBlessing, ModelEvaluation


def _check_thresholds(thresholds: dict | None) -> None:
    for metric, spec in (thresholds or {}).items():
        normalize_threshold(metric, spec)


def _check_policy(value: str) -> None:
    if value not in ('bless', 'reject'):
        raise ValueError(f"no_baseline must be 'bless' or 'reject'; got {value!r}")


def blessing_identity(model: Model, summary: dict) -> dict[str, Any]:
    """What a blessing is bound to (for reasons.json): the candidate, and the production version it was
    measured against (destination, version, content fingerprint, origin) as the evaluation recorded it,
    with the evaluation's overall metrics (which a push record keeps)."""
    return {'candidate_model_id': model.id, 'baseline_model_id': summary.get('baseline_model_id') or 0,
            **{k: summary.get(k) or '' for k in ('push_destination', 'baseline_version', 'baseline_fingerprint')},
            'baseline_model': summary.get('baseline_model'), 'overall_metrics': summary['slices'].get(OVERALL)}


def set_blessing_identity(blessing: ModelBlessing, identity: dict[str, Any]) -> None:
    """The blessing's properties the Pusher's compare-and-swap reads."""
    blessing.set('current_model_id', identity['candidate_model_id'] or 0)
    for key in ('baseline_model_id', 'push_destination', 'baseline_version', 'baseline_fingerprint'):
        blessing.set(key, identity[key])


class ModelValidatorExecutor(Executor):
    imports = ('tensorflow', 'tensorflow_model_analysis')

    def run(self, *, model: Model, evaluation: ModelEvaluation, blessing: ModelBlessing, thresholds: dict | None,
            no_baseline: str) -> None:
        summary = load_metrics_summary(evaluation)
        if summary['candidate_model_id'] != model.id:
            raise ValueError(f'{evaluation!r} measured model #{summary["candidate_model_id"]}, not the candidate '
                             f'{model!r}; wire the same Trainer output into Evaluator and ModelValidator.')
        baseline_id = summary.get('baseline_model_id') or 0
        validation = validate_evaluation(evaluation, thresholds)  # TFMA's verdict, and why
        checks = validation.checks
        blessed = validation.validation_ok
        policy_reason = ''
        if not baseline_id and no_baseline == 'reject':
            blessed = False
            policy_reason = "no baseline model (nothing pushed yet) and no_baseline='reject'"
        identity = blessing_identity(model, summary)
        reasons = {'blessed': blessed, **identity, 'no_baseline': no_baseline, 'policy': policy_reason,
                   'checks': checks}
        reasons['tfma_validation_result'] = validation.result
        with open(os.path.join(blessing.uri, 'reasons.json'), 'w') as f:
            json.dump(json_safe(reasons), f, indent=2, allow_nan=False)
        with open(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w') as f:
            f.write('')
        blessing.set('blessed', int(blessed))
        set_blessing_identity(blessing, identity)
        verdict = 'BLESSED' if blessed else 'NOT_BLESSED'
        version = f" (version {identity['baseline_version']} at {identity['push_destination']})" \
            if identity['baseline_version'] else ''
        print(f'ModelValidator: {verdict} model #{model.id} against '
              + (f'baseline #{baseline_id}{version}' if baseline_id else 'no baseline'), flush=True)
        for c in checks:
            print(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['metric']} [{c['slice']}]: {c['reason']}", flush=True)
        if not validation.validation_ok and all(c['passed'] for c in checks):
            print(f"  FAIL TFMA's validation: {json.dumps(validation.result)}", flush=True)
        if policy_reason:
            print(f'  FAIL {policy_reason}', flush=True)


class ModelValidator(Component):
    """Blesses the candidate only if every threshold passes (TFMA semantics); always writes a blessing."""
    model = Input(Model)
    evaluation = Input(ModelEvaluation)
    blessing = Output(ModelBlessing)
    thresholds = Parameter(dict, default=None, check=_check_thresholds)
    no_baseline = Parameter(str, default='bless', check=_check_policy)
    libraries = ('tensorflow-model-analysis',)
    executor = ModelValidatorExecutor
