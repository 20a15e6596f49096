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

from ..checkpoint import SAFE_GLOBALS

__all__ = ['install_safe_checkpoint_support', 'mmengine_safe_globals']


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
