"""Reading checkpoints safely, saving them atomically, and loading them into the kit's backbones.

Every path in the kit that reads a checkpoint goes through :func:`load_checkpoint_file`, which never
unpickles arbitrary objects: ``torch.load(weights_only=True)`` with only the extra types that published
checkpoints contain allowed (``argparse.Namespace``, the training arguments that timm-trained files
keep). Anything else is refused with a message that says what the file holds.

This module knows no model. What a backbone knows about foreign checkpoint layouts (key renames,
tensors it recomputes, how to tell its variants apart) is its :class:`CheckpointAdapter`, defined at
the end of the backbone's own file and reached as ``model.checkpoint_adapter``.

It needs only torch (and ``safetensors`` for ``.safetensors`` files); the OpenMMLab layer
(:mod:`fastervit_dense.mm`) adds the types mmengine's own training checkpoints hold.
"""
import argparse
import logging
import os
import pickle
import re
import tempfile
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from .hub import resolve_checkpoint

__all__ = ['CheckpointError', 'CheckpointAdapter', 'load_checkpoint_file', 'extract_state_dict',
           'load_pretrained', 'save_atomic', 'compare_with_model', 'SAFE_GLOBALS']

logger = logging.getLogger('fastervit_dense')

#: Types that published checkpoints need beyond tensors and containers.
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def load_checkpoint_file(path, map_location='cpu'):
    """Reads a ``torch.save`` (or ``.safetensors``) file without running code from it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist: fix the path, or name '
                                "an http(s):// URL or a Hugging Face Hub id ('hf-hub:OWNER/REPO') "
                                'to download it')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location))
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(f'cannot read safetensors checkpoint {path!r}: the file is '
                                  f'truncated or corrupted ({_first_line(error)})') from None
    # Added on every read rather than through torch.serialization.safe_globals(...): leaving that
    # context removes its entries from the process-wide allowlist even when they were there before.
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
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


def save_atomic(obj, dst) -> str:
    """``torch.save(obj, dst)`` through a temporary file in the same folder, renamed into place only
    once it is complete: an interrupted or failed save leaves no ``dst`` (and an existing ``dst``
    untouched)."""
    dst = os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(dst), suffix='.tmp')
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst


def _unsafe_global(error: BaseException) -> str:
    """The offending name from torch's weights-only error, e.g. 'GLOBAL builtins.open'."""
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


class CheckpointAdapter:
    """What the generic loader needs to know about one backbone's checkpoints.

    Each backbone file ends with a subclass; the backbone class names an instance as its
    ``checkpoint_adapter``. The defaults describe a model whose checkpoints already use its own keys.
    """

    #: The checkpoint kind: the converters' ``--kind`` and ``kind`` in converted files' metadata.
    kind: str = ''

    def convert(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """Foreign (published) or already converted weights -> the backbone's own keys."""
        return OrderedDict(state_dict)

    def may_be_missing(self, key: str) -> bool:
        """Backbone tensors a classification checkpoint may lack: the per-output norms, which dense
        prediction adds, and BatchNorm's batch counters."""
        return key.startswith('out_norm') or key.endswith('num_batches_tracked')

    def guess_arch(self, state_dict) -> Optional[str]:
        """The preset whose shapes the weights have, or None."""
        return None

    def is_fused(self, state_dict) -> bool:
        """Whether the weights are of the backbone's fused (deploy) structure."""
        return False

    def check(self, model: torch.nn.Module, state_dict, source: str) -> None:
        """Raises :class:`CheckpointError` where the weights cannot serve ``model`` as built."""

    def build(self, arch: str, state_dict) -> torch.nn.Module:
        """A backbone of ``arch`` that converted ``state_dict`` is meant for (for the converters)."""
        raise NotImplementedError


def compare_with_model(state_dict, own, adapter: CheckpointAdapter
                       ) -> Tuple[List[tuple], List[str], List[str]]:
    """How checkpoint weights relate to a model's ``own`` state dict: ``(mismatched, required,
    unexpected)``: tensors present in both with other shapes, as ``(key, checkpoint shape, model
    shape)``; model tensors the checkpoint lacks that it should have (see
    :meth:`CheckpointAdapter.may_be_missing`); checkpoint tensors the model does not have."""
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape]
    required = [k for k in own if k not in state_dict and not adapter.may_be_missing(k)]
    unexpected = [k for k in state_dict if k not in own]
    return mismatched, required, unexpected


def _arch_hint(adapter: CheckpointAdapter, state_dict) -> str:
    guess = adapter.guess_arch(state_dict)
    return f'; the weights look like arch {guess!r}' if guess else ''


def read_source(source, sha256: Optional[str] = None, map_location='cpu', progress: bool = True):
    """Reads a checkpoint named by a local path, an ``http(s)://`` URL or an ``hf-hub:`` id
    (downloaded once into its cache, see :mod:`fastervit_dense.hub`). Returns ``(path, contents)``."""
    path = resolve_checkpoint(source, sha256=sha256, progress=progress)
    return path, load_checkpoint_file(path, map_location)


def load_pretrained(model: torch.nn.Module, source, prefix: Optional[str] = None,
                    map_location='cpu', use_ema: bool = False, sha256: Optional[str] = None) -> dict:
    """Loads published, converted or detector/segmentor weights into a kit backbone, converting in
    memory with the backbone's :class:`CheckpointAdapter`.

    ``source`` is a local path, an ``http(s)://`` URL or an ``hf-hub:OWNER/REPO[/FILENAME]`` id;
    remote files are downloaded once into their cache and read through the same safe reader.
    Raises :class:`CheckpointError` when tensors exist under matching names with other shapes (it
    names each one, with both shapes, and the variant the weights look like) or when nothing matches.
    Logs one line: loaded, missing and unexpected counts and names, and the weights ``skipped``
    because they belong to stages the backbone did not build. Returns that report.
    """
    adapter: CheckpointAdapter = model.checkpoint_adapter
    path, checkpoint = read_source(source, sha256=sha256, map_location=map_location)
    name = source if isinstance(source, str) and source != path else path
    state_dict = extract_state_dict(checkpoint, use_ema=use_ema)
    own = model.state_dict()
    if prefix:
        state_dict = _strip_prefix(state_dict, prefix)
    elif not any(k in own for k in state_dict) and any(k.startswith('backbone.') for k in state_dict):
        state_dict = _strip_prefix(state_dict, 'backbone.')
    state_dict = adapter.convert(state_dict)
    adapter.check(model, state_dict, name)

    mismatched, required, unexpected = compare_with_model(state_dict, own, adapter)
    is_unbuilt = getattr(model, 'is_unbuilt_key', lambda key: False)
    skipped = [k for k in unexpected if is_unbuilt(k)]
    unexpected = [k for k in unexpected if k not in skipped]
    if mismatched:
        listed = '; '.join(f'{k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:8])
        more = f' (and {len(mismatched) - 8} more)' if len(mismatched) > 8 else ''
        raise CheckpointError(f'{name}: {len(mismatched)} tensors do not match the model\'s shapes '
                              f'({listed}{more}){_arch_hint(adapter, state_dict)}')
    loaded = [k for k in state_dict if k in own]
    if not loaded:
        raise CheckpointError(f'{name}: no tensor in the checkpoint matches the {type(model).__name__} '
                              f'backbone (checkpoint keys start {sorted(state_dict)[:5]}); is it a '
                              'checkpoint of this model? For a whole detector or segmentor pass '
                              "prefix='backbone.'")
    missing = [k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')]
    if required:
        raise CheckpointError(f'{name}: the checkpoint lacks {len(required)} tensors of the '
                              f'{type(model).__name__} backbone ({_names(required, 6)})'
                              f'{_arch_hint(adapter, state_dict)}; is it a checkpoint of another '
                              'variant?')
    model.load_state_dict(state_dict, strict=False)
    report = dict(loaded=len(loaded), missing=missing, unexpected=unexpected, skipped=skipped,
                  path=path)
    logger.info(f'{type(model).__name__}: loaded {len(loaded)} tensors from {name}; missing '
                f'{len(missing)}: {_names(missing)}; unexpected {len(unexpected)}: '
                f'{_names(unexpected)}' + (f'; skipped {len(skipped)} of the stages after the '
                                           f'last output, not built: {_names(skipped, 4)}'
                                           if skipped else ''))
    return report


def _names(keys: Iterable[str], limit: int = 12) -> str:
    keys = list(keys)
    if not keys:
        return '-'
    text = ', '.join(keys[:limit])
    return text + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')
