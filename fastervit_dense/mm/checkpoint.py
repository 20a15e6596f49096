"""mmengine's training checkpoints, loadable with ``weights_only=True``.

mmengine 0.10.7 cannot read its own checkpoints that way: its ``HistoryBuffer`` pickles the
class-wide table of statistics functions, which needs ``getattr`` at load time (allowing ``getattr``
would let a crafted file reach any attribute). Under torch >= 2.6 that breaks ``--resume``,
``load_from`` and testing. :func:`install_safe_checkpoint_support`, run when the OpenMMLab layer is
imported, makes new checkpoints leave that table out (``__setstate__`` re-registers the defaults
anyway) and allowlists the plain data types mmengine writes (``HistoryBuffer``, numpy arrays, dtypes
and scalars), so mmengine's loader keeps ``weights_only=True`` and still works.
"""
import torch

from ..checkpoint import (SAFE_GLOBALS, CheckpointAdapter, CheckpointError, fit, load_fitted,
                          read_weights, register_adapter)

__all__ = ['install_safe_checkpoint_support', 'mmengine_safe_globals', 'ConfigCheckpoints',
           'load_config_checkpoint']


class ConfigCheckpoints(CheckpointAdapter):
    """Checkpoints mmengine wrote for a model of a config (training, or fused by
    ``tools/deployment/reparameterize.py``): the model's own keys, every tensor required."""

    kind = 'mmengine'
    unexpected_ok = False

    def may_be_missing(self, key: str) -> bool:
        return key.endswith('num_batches_tracked')

    def is_fused(self, state_dict) -> bool:
        """Whether the model's FastViT backbone is fused in these weights."""
        from ..models import FastViT
        return FastViT.checkpoint_adapter.is_fused(state_dict)


_ADAPTER = register_adapter(ConfigCheckpoints())


def load_config_checkpoint(model: torch.nn.Module, checkpoint, fused: bool = True):
    """Loads a checkpoint of ``model``'s config into it strictly (key by key, shape by shape).
    ``fused``: a checkpoint whose FastViT backbone is fused is accepted, and the backbone fused to
    take it; False refuses one. Returns the checkpoint as read (:class:`~fastervit_dense.
    checkpoint.Weights`: its path and ``meta`` among others)."""
    weights = path, name, state_dict, _ = read_weights(checkpoint, _ADAPTER)
    backbone = getattr(model, 'backbone', None)
    if _ADAPTER.is_fused(state_dict) and not getattr(backbone, 'deploy', True):
        if not fused:
            raise CheckpointError(f'{name} holds a fused FastViT backbone: give the checkpoint '
                                  'as trained')
        backbone.switch_to_deploy()
    report = fit(state_dict, model.state_dict(), name, 'the model of the config',
                 _ADAPTER, path=path)
    load_fitted(model, state_dict, report, 'give the checkpoint trained with this config')
    return weights


def mmengine_safe_globals() -> list:
    """The types mmengine's checkpoints hold beyond tensors and containers."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
    dtype_classes = {type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUS'}
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            *sorted(dtype_classes, key=lambda c: c.__name__)]


def _history_buffer_state(self) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def install_safe_checkpoint_support():
    """See the module docstring. Idempotent."""
    from mmengine.logging.history_buffer import HistoryBuffer
    extra = [t for t in mmengine_safe_globals() if t not in SAFE_GLOBALS]
    # The core re-adds SAFE_GLOBALS before each of its reads, so these stay allowed with them.
    SAFE_GLOBALS.extend(extra)
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    HistoryBuffer.__getstate__ = _history_buffer_state
