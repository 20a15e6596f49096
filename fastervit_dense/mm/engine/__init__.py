"""Training-engine pieces for mmengine's runner, laid out as mmdet lays out its own."""
from .hooks import RNGStateHook
from .optimizers import CPUAmpOptimWrapper, NoDecayOptimWrapperConstructor

__all__ = ['RNGStateHook', 'CPUAmpOptimWrapper', 'NoDecayOptimWrapperConstructor']
