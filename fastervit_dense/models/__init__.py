from .fastervit import FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FasterViT
from .fastvit import FASTVIT_ARCHS, FASTVIT_WEIGHTS, FastViT
from .timm_models import TIMM_NAMES, FasterViTClassifier, register_timm_models
from . import dino  # noqa: F401,E402  (NVlabs' DINO layout, the 'dino' checkpoint kind)

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FASTERVIT_WEIGHTS', 'FastViT', 'FASTVIT_ARCHS',
           'FASTVIT_WEIGHTS', 'BACKBONES', 'backbone_class', 'FasterViTClassifier', 'TIMM_NAMES']

#: Checkpoint kind (``checkpoint_adapter.kind``, also the prefix of names such as ``fastvit-sa12``)
#: -> backbone class: what the converters, the export command line and the OpenMMLab layer serve.
BACKBONES = {cls.checkpoint_adapter.kind: cls for cls in (FasterViT, FastViT)}


def backbone_class(name: str):
    """``'fastervit-ARCH'`` / ``'fastvit-ARCH'`` (``'fastervit-4-21k-224'``, ``'fastvit-sa12'``) ->
    (backbone class, arch); a ValueError naming the accepted form otherwise."""
    kind, _, arch = str(name).partition('-')
    if kind not in BACKBONES or not arch:
        raise ValueError(f'backbone name {name!r}: expected "fastervit-ARCH" (e.g. "fastervit-2") '
                         'or "fastvit-ARCH" (e.g. "fastvit-sa12")')
    return BACKBONES[kind], arch

# timm names for FasterViT (``fastervit_dense_*``): timm.create_model and the libraries that take a
# timm backbone by name reach the kit's FasterViT once the kit is imported.
register_timm_models()
