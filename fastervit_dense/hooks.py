"""Hooks that make interrupted training resume exactly.

mmengine 0.10.7 saves the seed in checkpoints but not the random-number generators' states, so after
``--resume`` drop path, dropout and random sampling in the model draw different numbers than the
uninterrupted run would have. :class:`RNGStateHook` saves the torch (CPU and CUDA), numpy and Python
generator states with every checkpoint and restores them at the first iteration after resuming,
after mmengine has advanced the dataloader past the data already seen.

Data augmentation runs in dataloader workers seeded from the run's seed (``randomness.seed``), so it
repeats by itself. With ``num_workers=0`` augmentation shares the main process's generators, and
resumed runs then match only approximately.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def capture_rng_states() -> dict:
    states = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                  python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict):
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['python'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves generator states in checkpoints; restores them when training resumes."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = dict(capture_rng_states(), iter=runner.iter + 1)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_states')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            if self._pending.get('iter') == runner.iter:
                restore_rng_states(self._pending)
            self._pending = None
