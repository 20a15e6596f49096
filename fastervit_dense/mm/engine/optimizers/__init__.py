from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper, cpu_bf16_is_fast
from .no_decay_constructor import DEFAULT_NO_DECAY_NAMES, NoDecayOptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'cpu_bf16_is_fast', 'NoDecayOptimWrapperConstructor',
           'DEFAULT_NO_DECAY_NAMES']
