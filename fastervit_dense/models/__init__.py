from .fastervit import FASTERVIT_ARCHS, FasterViT
from .fastvit import FASTVIT_ARCHS, FastViT

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FastViT', 'FASTVIT_ARCHS']
