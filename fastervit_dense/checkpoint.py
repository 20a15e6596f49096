"""Reading checkpoints safely and loading them into the kit's backbones.

Every path in the kit that reads a checkpoint goes through :func:`load_checkpoint_file`, which never
unpickles arbitrary objects: ``torch.load(weights_only=True)`` with only the extra types that published
checkpoints contain allowed (``argparse.Namespace``, the training arguments that timm-trained files
keep). Anything else is refused with a message that says what the file holds.

mmengine's own training checkpoints cannot be read that way as mmengine 0.10.7 writes them: its
``HistoryBuffer`` pickles the class-wide table of statistics functions, which needs ``getattr`` at
load time (allowing ``getattr`` would let a crafted file reach any attribute). Under torch >= 2.6
that breaks ``--resume``, ``load_from`` and testing. :func:`install_safe_checkpoint_support`, run on
``import fastervit_dense``, makes new checkpoints leave that table out (``__setstate__`` re-registers
the defaults anyway) and allowlists the plain data types mmengine writes (``HistoryBuffer``, numpy
arrays, dtypes and scalars), so mmengine's loader keeps ``weights_only=True`` and still works.
"""
import argparse
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, Optional

import torch
from mmengine.logging import print_log

__all__ = ['CheckpointError', 'load_checkpoint_file', 'extract_state_dict', 'load_pretrained']

def _data_types_of_mmengine_checkpoints() -> list:
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
    dtype_classes = {type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUS'}
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            *sorted(dtype_classes, key=lambda c: c.__name__)]


#: Types that published and mmengine-written checkpoints need beyond tensors and containers.
SAFE_GLOBALS = [argparse.Namespace] + _data_types_of_mmengine_checkpoints()


def _history_buffer_state(self) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def install_safe_checkpoint_support():
    """See the module docstring. Idempotent."""
    from mmengine.logging.history_buffer import HistoryBuffer
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    HistoryBuffer.__getstate__ = _history_buffer_state


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def load_checkpoint_file(path: str, map_location='cpu'):
    """Reads a ``torch.save`` file without running code from it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist: download the published '
                                'file to that path (see the README) or fix the path in the config')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location))
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(f'cannot read safetensors checkpoint {path!r}: the file is '
                                  f'truncated or corrupted ({_first_line(error)})') from None
    # Not torch.serialization.safe_globals(...): leaving that context removes its entries from the
    # process-wide allowlist even when they were there before, which broke mmengine's loader later.
    install_safe_checkpoint_support()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'refused to load {path!r}: it holds objects other than tensors and plain containers, '
            f'and unpickling them could run code ({_unsafe_global(error)}). If you trust the file, '
            'load it yourself, keep only its tensors (e.g. torch.save(ckpt["state_dict"], NEW)) and '
            'use NEW') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f'cannot read checkpoint {path!r}: the file is truncated or corrupted '
                              f'({_first_line(error)})') from None


def _unsafe_global(error: BaseException) -> str:
    """The offending name from torch's weights-only error, e.g. 'GLOBAL builtins.open'."""
    import re
    match = re.search(r'Unsupported global: (GLOBAL \S+)', str(error))
    return match.group(1) if match else _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def extract_state_dict(checkpoint, use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint: unwraps ``state_dict``/``model`` (or ``state_dict_ema`` when
    ``use_ema``) and strips a DataParallel ``module.`` prefix."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'a checkpoint must be a dict of tensors or hold one under '
                              f'"state_dict", got {type(checkpoint).__name__}')
    if use_ema:
        for key in ('state_dict_ema', 'model_ema', 'ema_state_dict'):
            if key in checkpoint:
                checkpoint = checkpoint[key]
                break
        else:
            raise CheckpointError(f'EMA weights requested but the checkpoint has none (keys: '
                                  f'{sorted(checkpoint)[:10]})')
    else:
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    state_dict = OrderedDict((k, v) for k, v in checkpoint.items() if isinstance(v, torch.Tensor))
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    return state_dict


def _strip_prefix(state_dict, prefix: str):
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))


def load_pretrained(model: torch.nn.Module, path: str, kind: str, prefix: Optional[str] = None,
                    map_location='cpu', use_ema: bool = False) -> dict:
    """Loads ImageNet (or detector/segmentor) weights into a kit backbone, converting in memory.

    Raises :class:`CheckpointError` when tensors exist under matching names with other shapes (it
    names each one, with both shapes, and the variant the weights look like) or when nothing matches.
    Logs one line: loaded, missing and unexpected counts and names. Returns that report.
    """
    from .converters import convert_to_kit

    state_dict = extract_state_dict(load_checkpoint_file(path, map_location), use_ema=use_ema)
    own = model.state_dict()
    if prefix:
        state_dict = _strip_prefix(state_dict, prefix)
    elif not any(k in own for k in state_dict) and any(k.startswith('backbone.') for k in state_dict):
        state_dict = _strip_prefix(state_dict, 'backbone.')
    state_dict = convert_to_kit(state_dict, kind)
    if kind == 'fastvit':
        fused = any('reparam_conv' in k for k in state_dict)
        if state_dict and fused != bool(getattr(model, 'deploy', False)):
            raise CheckpointError(
                f'{path} holds {"fused" if fused else "unfused"} FastViT weights but the backbone '
                f'was built with deploy={getattr(model, "deploy", False)}: set deploy={fused} '
                '(fused weights are for inference only; train from unfused ones)')

    from .converters import compare_with_model, guess_arch
    mismatched, required, unexpected = compare_with_model(state_dict, own, kind)
    if mismatched:
        listed = '; '.join(f'{k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:8])
        more = f' (and {len(mismatched) - 8} more)' if len(mismatched) > 8 else ''
        guess = guess_arch(state_dict, kind)
        hint = f'; the weights look like arch {guess!r}' if guess else ''
        raise CheckpointError(f'{path}: {len(mismatched)} tensors do not match the model\'s shapes '
                              f'({listed}{more}){hint}')
    loaded = [k for k in state_dict if k in own]
    if not loaded:
        raise CheckpointError(f'{path}: no tensor in the checkpoint matches the {type(model).__name__} '
                              f'backbone (checkpoint keys start {sorted(state_dict)[:5]}); is it a '
                              'checkpoint of this model? For a whole detector or segmentor pass '
                              "prefix='backbone.'")
    missing = [k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')]
    if required:
        guess = guess_arch(state_dict, kind)
        hint = f'; the weights look like arch {guess!r}' if guess else ''
        raise CheckpointError(f'{path}: the checkpoint lacks {len(required)} tensors of the '
                              f'{type(model).__name__} backbone ({_names(required, 6)}){hint}; is it '
                              'a checkpoint of another variant?')
    model.load_state_dict(state_dict, strict=False)
    report = dict(loaded=len(loaded), missing=missing, unexpected=unexpected)
    print_log(f'{type(model).__name__}: loaded {len(loaded)} tensors from {path}; missing '
              f'{len(missing)}: {_names(missing)}; unexpected {len(unexpected)}: '
              f'{_names(unexpected)}', logger='current')
    return report


def _names(keys: Iterable[str], limit: int = 12) -> str:
    keys = list(keys)
    if not keys:
        return '-'
    text = ', '.join(keys[:limit])
    return text + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')
