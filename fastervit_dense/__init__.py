"""fastervit_dense: FasterViT and FastViT backbones for mmdetection 3.x and mmsegmentation 1.x.

Importing the package registers the backbones in both frameworks' MODELS registries.
"""
from . import optim  # noqa: F401  (registers NoDecayOptimWrapperConstructor)
from .models import FASTERVIT_ARCHS, FASTVIT_ARCHS, FasterViT, FastViT
from .registry import register_backbones
from .version import __version__

register_backbones(FasterViT, FastViT)

__all__ = ['FasterViT', 'FastViT', 'FASTERVIT_ARCHS', 'FASTVIT_ARCHS', '__version__']
