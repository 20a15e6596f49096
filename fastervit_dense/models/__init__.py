from .fastervit import FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FasterViT
from .fastvit import FASTVIT_ARCHS, FASTVIT_WEIGHTS, FastViT
from .timm_models import TIMM_NAMES, FasterViTClassifier, register_timm_models

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FASTERVIT_WEIGHTS', 'FastViT', 'FASTVIT_ARCHS',
           'FASTVIT_WEIGHTS', 'BACKBONES', 'FasterViTClassifier', 'TIMM_NAMES']

#: Checkpoint kind (``checkpoint_adapter.kind``, also the prefix of names such as ``fastvit-sa12``)
#: -> backbone class: what the converters, the export command line and the OpenMMLab layer serve.
BACKBONES = {cls.checkpoint_adapter.kind: cls for cls in (FasterViT, FastViT)}

# timm names for FasterViT (``fastervit_dense_*``): timm.create_model and the libraries that take a
# timm backbone by name reach the kit's FasterViT once the kit is imported.
register_timm_models()
