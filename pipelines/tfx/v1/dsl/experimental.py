"""``tfx.dsl.experimental``: the resolver strategies Sluice maps (see ``tfx.dsl.Resolver``)."""
from __future__ import annotations

from sluice.tfx.v1._common import module_getattr


class ResolverStrategy:
    """Base of the strategies below (markers: the mapping lives in ``tfx.dsl.Resolver``)."""


class LatestBlessedModelStrategy(ResolverStrategy):
    """In Sluice: the model in production at the Pusher's destination (the Evaluator's baseline)."""


class LatestArtifactStrategy(ResolverStrategy):
    """In Sluice: over a channel of this pipeline, that channel itself (this run's artifact is the latest)."""


class SpanRangeStrategy(ResolverStrategy):
    """In Sluice: ``RangeConfig(rolling_range=RollingRange(num_spans=n))`` -> ``LatestSpans(examples, n=n)``."""


_OFFERED = ['LatestBlessedModelStrategy', 'LatestArtifactStrategy', 'SpanRangeStrategy', 'ResolverStrategy']
_MISSING = {
    'RuntimeParameter': 'give values in the pipeline file (e.g. create_pipeline(train_steps=...)); '
                        '`sluice run FILE.py` calls create_pipeline()',
    'create_container_component': 'Sluice runs components in Python; write a custom component '
                                  '(README, "A pipeline file") that starts the container itself',
}
__getattr__ = module_getattr('tfx.dsl.experimental', lambda: _OFFERED, _MISSING)
__all__ = _OFFERED
