from .fastervit import FASTERVIT_ARCHS, FASTERVIT_WEIGHTS, FasterViT
from .fastvit import FASTVIT_ARCHS, FASTVIT_WEIGHTS, FastViT

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FASTERVIT_WEIGHTS', 'FastViT', 'FASTVIT_ARCHS',
           'FASTVIT_WEIGHTS']
