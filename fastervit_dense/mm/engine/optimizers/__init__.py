from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper, bfloat16_instructions, cpu_bf16_is_fast
from .no_decay_constructor import DEFAULT_NO_DECAY_NAMES, NoDecayOptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'bfloat16_instructions', 'cpu_bf16_is_fast', 'NoDecayOptimWrapperConstructor',
           'DEFAULT_NO_DECAY_NAMES']
