"""fastervit_dense: FasterViT and FastViT backbones for mmdetection 3.x and mmsegmentation 1.x.

Importing the package registers the backbones in both frameworks' MODELS registries and makes
mmengine's training checkpoints loadable with ``weights_only=True`` (see ``checkpoint.py``).
"""
from . import hooks, optim  # noqa: F401  (register RNGStateHook, NoDecayOptimWrapperConstructor)
from .checkpoint import install_safe_checkpoint_support
from .models import FASTERVIT_ARCHS, FASTVIT_ARCHS, FasterViT, FastViT
from .registry import register_backbones
from .version import __version__

register_backbones(FasterViT, FastViT)
install_safe_checkpoint_support()

__all__ = ['FasterViT', 'FastViT', 'FASTERVIT_ARCHS', 'FASTVIT_ARCHS', '__version__']
