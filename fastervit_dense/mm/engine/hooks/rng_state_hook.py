"""Hooks that make interrupted training resume exactly.

mmengine 0.10.7 saves the seed in checkpoints but not the random-number generators' states, so after
``--resume`` drop path, dropout and random sampling in the model draw different numbers than the
uninterrupted run would have. :class:`RNGStateHook` saves the torch (CPU and CUDA), numpy and Python
generator states with every checkpoint and restores them at the first iteration after resuming,
after mmengine has advanced the dataloader past the data already seen.

In distributed training only the main process writes checkpoints, so at every iteration that ends
with a checkpoint the hook first gathers each process's states and saves them all; each process of
the resumed run restores its own (they differ when ``randomness.diff_rank_seed=True``).

Data augmentation runs in dataloader workers seeded from the run's seed (``randomness.seed``), so it
repeats by itself. With ``num_workers=0`` augmentation shares the main process's generators, and
resumed runs then match only approximately.
"""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
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
    """Saves generator states in checkpoints; restores them when training resumes.

    Its priority is above :class:`~mmengine.hooks.CheckpointHook`'s so that, in distributed runs, the
    states of every process are gathered before the main process saves the checkpoint.
    """

    priority = 'LOW'

    def __init__(self):
        self._pending = None
        self._gathered = None

    def _checkpoint_follows(self, runner, by_epoch: bool) -> bool:
        """Whether a CheckpointHook saves a checkpoint at the end of this iteration (or epoch)."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                return bool(hook.every_n_epochs(runner, hook.interval, hook.save_begin)
                            or (hook.save_last and hook.is_last_train_epoch(runner)))
            return bool(hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                        or (hook.save_last and hook.is_last_train_iter(runner)))
        return False

    def _gather_if_saving(self, runner, by_epoch: bool):
        # Every process takes the same decision, so all of them enter the collective.
        if get_world_size() > 1 and self._checkpoint_follows(runner, by_epoch):
            self._gathered = all_gather_object(capture_rng_states())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = dict(capture_rng_states(), iter=runner.iter + 1)
        if self._gathered is not None:
            states['ranks'] = self._gathered
            self._gathered = None
        checkpoint['rng_states'] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_states')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            if self._pending.get('iter') == runner.iter:
                ranks = self._pending.get('ranks') or []
                rank = get_rank()
                # A run resumed with another number of processes cannot repeat the old one's
                # randomness; each process then starts from the main process's states.
                same_world = len(ranks) == get_world_size()
                restore_rng_states(ranks[rank] if same_world else self._pending)
            self._pending = None
