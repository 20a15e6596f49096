from .no_decay_constructor import DEFAULT_NO_DECAY_NAMES, NoDecayOptimWrapperConstructor

__all__ = ['NoDecayOptimWrapperConstructor', 'DEFAULT_NO_DECAY_NAMES']
