from .fastervit import FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FasterViT
from .fastvit import FASTVIT_ARCHS, FASTVIT_WEIGHTS, FastViT

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FASTERVIT_WEIGHTS', 'FastViT', 'FASTVIT_ARCHS',
           'FASTVIT_WEIGHTS', 'BACKBONES']

#: Checkpoint kind (``checkpoint_adapter.kind``, also the prefix of names such as ``fastvit-sa12``)
#: -> backbone class: what the converters, the export command line and the OpenMMLab layer serve.
BACKBONES = {cls.checkpoint_adapter.kind: cls for cls in (FasterViT, FastViT)}
