"""``tfx.types``: only ``standard_artifacts`` (Sluice's artifact types under TFX's names)."""
from __future__ import annotations

from sluice.tfx.v1._common import module_getattr
from sluice.tfx.v1.types import standard_artifacts

_CUSTOM = ('write a function component (@tfx.dsl.components.component) or a custom component with '
           'components.Component and Input/Output/Parameter declarations (README, "A pipeline file")')
_MISSING = {name: _CUSTOM for name in ('BaseBeamComponent', 'BaseComponent', 'BaseFunctionalComponent',
                                       'BaseFunctionalComponentFactory', 'BaseNode')}
_MISSING['BaseChannel'] = "Sluice's channel type is components.Channel (component.outputs['key'])"
__getattr__ = module_getattr('tfx.types', lambda: ['standard_artifacts'], _MISSING)
__all__ = ['standard_artifacts']
