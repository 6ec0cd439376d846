"""``render``: the view of an artifact, chosen by its type, with what other artifacts of the same run
say about it (the anomalies of statistics, the bounds and verdict of an evaluation).
"""
from __future__ import annotations

from typing import Sequence

from sluice.metadata.artifact import Artifact
from sluice.ui.visuals.data import anomalies_view, anomalous_features, examples_view, schema_view, statistics_view
from sluice.ui.visuals.models import blessing_of, blessing_view, evaluation_view, model_view, pushed_view
from sluice.ui.visuals.page import View, esc


def render(artifact: Artifact, facets: bool = False, related: Sequence[Artifact] = (),
           flagged: dict[str, str] | None = None) -> View:
    """The view of an artifact, chosen by its type. ``related``: other artifacts of the same run, for
    what a view can show about this one (the anomalies of statistics, the bounds and verdict of an
    evaluation); ``flagged``: more features to mark in statistics (feature -> why)."""
    kind = artifact.type_name()
    renderer = {'ExampleStatistics': lambda a: statistics_view(a, facets, anomalous_features(related, flagged)),
                'Schema': schema_view, 'ExampleAnomalies': anomalies_view,
                'ModelEvaluation': lambda a: evaluation_view(a, blessing_of(a, related)),
                'ModelBlessing': blessing_view, 'PushedModel': pushed_view, 'Examples': examples_view,
                'Model': model_view, 'OnnxModel': model_view}.get(kind)
    if renderer is None:
        return View(f'<p>{esc(kind)} #{esc(artifact.id)} at <code>{esc(artifact.uri)}</code></p>',
                    f'{kind} #{artifact.id} at {artifact.uri}')
    return renderer(artifact)
