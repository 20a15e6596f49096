from .rng_state_hook import RNGStateHook, capture_rng_states, restore_rng_states

__all__ = ['RNGStateHook', 'capture_rng_states', 'restore_rng_states']
