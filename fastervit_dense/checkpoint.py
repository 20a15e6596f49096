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
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch

from .hub import resolve_checkpoint

__all__ = ['CheckpointError', 'CheckpointAdapter', 'ADAPTERS', 'register_adapter', 'get_adapter',
           'FitReport', 'fit', 'load_fitted', 'load_checkpoint_file', 'extract_state_dict',
           'read_source', 'read_weights', 'Weights', 'load_pretrained', 'save_atomic', 'SAFE_GLOBALS']

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
    """What the one checkpoint pipeline needs to know about one layout of weights.

    Each layout has a subclass beside the model it serves (the backbones' at the end of their
    files, the timm classifier's in ``models/timm_models.py``, NVlabs' DINO detector's in
    ``models/dino.py``, mmengine checkpoints of the kit's configs in ``mm/checkpoint.py``), registered
    by ``kind`` in :data:`ADAPTERS`; a backbone class names its instance as ``checkpoint_adapter``.
    The defaults describe weights that already use the model's own keys.
    """

    #: The layout's name: the converters' ``--kind`` and ``kind`` in converted files' metadata.
    kind: str = ''
    #: Whether checkpoint tensors the model does not have are reported (True) or refused (False).
    unexpected_ok: bool = True
    #: What to do when converted weights do not fit their target (beyond the variant they look like).
    fit_hint: str = ''

    def convert(self, state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """Foreign (published) or already converted weights -> the model's own keys."""
        return OrderedDict(state_dict)

    def may_be_missing(self, key: str) -> bool:
        """Model tensors the checkpoint may lack (left as initialised): by default the per-output
        norms, which dense prediction adds to an ImageNet backbone, and BatchNorm's counters."""
        return key.startswith('out_norm') or key.endswith('num_batches_tracked')

    def may_skip(self, model: torch.nn.Module, key: str) -> bool:
        """Checkpoint tensors the model deliberately does not load (reported as ``skipped``): by
        default the weights of stages the backbone did not build."""
        return getattr(model, 'is_unbuilt_key', lambda k: False)(key)

    def prepare(self, model: torch.nn.Module, state_dict, source: str) -> List[str]:
        """Adapts converted weights to ``model`` as built, in place, before the fit is checked;
        raises :class:`CheckpointError` where they cannot serve it. Returns the keys it removed
        (reported as ``skipped``)."""
        return []

    def guess_arch(self, state_dict) -> Optional[str]:
        """The preset whose shapes the weights have, or None."""
        return None

    def is_fused(self, state_dict) -> bool:
        """Whether the weights are of a fused (deploy) structure."""
        return False

    def build(self, arch: str, state_dict) -> torch.nn.Module:
        """A model of ``arch`` that converted ``state_dict`` is meant for (the converters' target)."""
        raise NotImplementedError(f'{self.kind} weights are converted against a target model '
                                  'given by the caller')

    def describe(self, state_dict, report: 'FitReport') -> dict:
        """What a converted file's metadata records about the weights beyond source and kind."""
        return dict(fused=self.is_fused(state_dict), missing_in_backbone=report.missing_all)


#: Checkpoint layout (``CheckpointAdapter.kind``) -> its adapter.
ADAPTERS: Dict[str, CheckpointAdapter] = {}


def register_adapter(adapter: CheckpointAdapter) -> CheckpointAdapter:
    """Makes ``adapter`` the one of its ``kind``. Returns it."""
    ADAPTERS[adapter.kind] = adapter
    return adapter


def get_adapter(kind) -> CheckpointAdapter:
    """The adapter of ``kind`` (an adapter instance is returned as it is)."""
    if isinstance(kind, CheckpointAdapter):
        return kind
    if kind not in ADAPTERS:
        raise ValueError(f'unknown checkpoint kind {kind!r}; known: {sorted(ADAPTERS)}')
    return ADAPTERS[kind]


@dataclass
class FitReport:
    """How a checkpoint's tensors relate to a model's: the one answer to "do these weights fit?",
    from :func:`fit` wherever the kit loads, converts or checks weights.

    ``loaded``: tensors in both with the same shapes; ``mismatched``: ``(key, checkpoint shape,
    model shape)`` of tensors in both with other shapes; ``missing``: model tensors the checkpoint
    lacks (BatchNorm counters aside), of which ``required`` are those the check does not allow to be
    missing; ``unexpected``: checkpoint tensors the model does not have; ``skipped``: checkpoint
    tensors deliberately not loaded (stages not built, a head of another class count).
    """
    source: str
    target: str
    loaded: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, tuple, tuple]] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    required: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    unexpected_ok: bool = True
    #: tells the preset the weights look like (asked only for an error message: for FastViT it
    #: builds every preset's shapes)
    guess_arch: Optional[Callable[[], Optional[str]]] = field(default=None, repr=False)
    #: the local file read
    path: Optional[str] = None
    #: every model tensor the checkpoint lacks, BatchNorm counters included
    missing_all: List[str] = field(default_factory=list)

    @property
    def problems(self) -> List[str]:
        """What keeps the weights from fitting, one phrase per kind of problem."""
        parts = []
        if self.mismatched:
            parts.append(f'{len(self.mismatched)} tensors with other shapes ('
                         + _names([f'{k}: checkpoint {a} vs model {b}'
                                   for k, a, b in self.mismatched], 6, '; ') + ')')
        if self.required:
            parts.append(f'{len(self.required)} missing ({_names(self.required, 6)})')
        if self.unexpected and not self.unexpected_ok:
            parts.append(f'{len(self.unexpected)} unexpected ({_names(self.unexpected, 6)})')
        return parts

    def message(self, hint: str = '') -> str:
        """The one error text: source, target, each problem with its keys and shapes, the preset
        the weights look like, and ``hint`` (what to do)."""
        if not self.loaded and not self.mismatched:
            text = (f'{self.source}: no tensor in the checkpoint matches {self.target} (checkpoint '
                    f'keys start {_names(self.unexpected + self.skipped, 5)})')
        else:
            text = f'{self.source} does not fit {self.target}: ' + '; '.join(self.problems)
        guess = self.guess_arch() if self.guess_arch else None
        if guess:
            text += f'; the weights look like arch {guess!r}'
        return text + (f'; {hint}' if hint else '')

    def check(self, hint: str = '') -> 'FitReport':
        """Raises :class:`CheckpointError` (:meth:`message`) unless the weights fit. Returns self."""
        if self.problems or not (self.loaded or self.mismatched):
            raise CheckpointError(self.message(hint))
        return self

    def summary(self) -> str:
        """The one log line of a load."""
        return (f'{self.target}: loaded {len(self.loaded)} tensors from {self.source}; missing '
                f'{len(self.missing)}: {_names(self.missing)}; unexpected {len(self.unexpected)}: '
                f'{_names(self.unexpected)}' + (f'; skipped {len(self.skipped)}: '
                                                 f'{_names(self.skipped, 4)}' if self.skipped else ''))

    def as_dict(self) -> dict:
        """The loading report the backbones' ``load_pretrained`` returns: ``loaded`` (a count),
        ``missing``, ``unexpected``, ``skipped``, ``path``."""
        return dict(loaded=len(self.loaded), missing=list(self.missing),
                    unexpected=list(self.unexpected), skipped=list(self.skipped), path=self.path)


def fit(state_dict, own, source: str, target: str, adapter: Optional[CheckpointAdapter] = None,
        skip=None, unexpected_ok: Optional[bool] = None, skipped: Iterable[str] = (),
        path: Optional[str] = None) -> FitReport:
    """Compares checkpoint weights with a model's ``own`` state dict (tensors, or anything with a
    ``shape``) under ``adapter``'s strictness (:meth:`CheckpointAdapter.may_be_missing`,
    ``unexpected_ok``; no adapter: every tensor must match). ``skip(key)`` marks checkpoint tensors
    the model deliberately leaves out; ``skipped`` are keys already removed. Checks nothing: call
    :meth:`FitReport.check`."""
    may_be_missing = adapter.may_be_missing if adapter else (lambda key: False)
    skip = skip or (lambda key: False)
    skipped = list(skipped) + [k for k in state_dict if k not in own and skip(k)]
    missing_all = [k for k in own if k not in state_dict]
    return FitReport(
        source=str(source), target=target, path=path, skipped=skipped, missing_all=missing_all,
        loaded=[k for k, v in state_dict.items() if k in own and v.shape == own[k].shape],
        mismatched=[(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                    if k in own and v.shape != own[k].shape],
        missing=[k for k in missing_all if not k.endswith('num_batches_tracked')],
        required=[k for k in missing_all if not may_be_missing(k)],
        unexpected=[k for k in state_dict if k not in own and k not in skipped],
        unexpected_ok=unexpected_ok if unexpected_ok is not None else
        bool(adapter and adapter.unexpected_ok),
        guess_arch=(lambda: adapter.guess_arch(state_dict)) if adapter else None)


def load_fitted(model: torch.nn.Module, state_dict, report: FitReport, hint: str = ''
                ) -> FitReport:
    """Checks ``report`` (``hint``: what to do if it fails) and loads its ``loaded`` tensors into
    ``model``; logs its summary."""
    report.check(hint)
    model.load_state_dict(OrderedDict((k, state_dict[k]) for k in report.loaded), strict=False)
    logger.info(report.summary())
    return report


def read_source(source, sha256: Optional[str] = None, map_location='cpu', progress: bool = True):
    """Reads a checkpoint named by a local path, an ``http(s)://`` URL or an ``hf-hub:`` id
    (downloaded once into its cache, see :mod:`fastervit_dense.hub`). Returns ``(path, contents)``."""
    path = resolve_checkpoint(source, sha256=sha256, progress=progress)
    return path, load_checkpoint_file(path, map_location)


class Weights(NamedTuple):
    """A checkpoint as read: the local file, the name to report it by, its weights converted to
    the model's keys, and its own metadata (``meta``, if it has one)."""
    path: str
    name: str
    state_dict: 'OrderedDict[str, torch.Tensor]'
    meta: Optional[dict]


def read_weights(source, adapter, sha256: Optional[str] = None, use_ema: bool = False,
                 prefix: Optional[str] = None, own=None, map_location='cpu') -> Weights:
    """The first step of every weights operation: reads ``source`` safely, takes its weights
    (``prefix`` stripped; with ``own``, a model's state dict, a whole detector's or segmentor's
    ``backbone.`` when nothing else matches) and converts them with ``adapter`` (a kind or an
    adapter)."""
    path, checkpoint = read_source(source, sha256=sha256, map_location=map_location)
    state_dict = extract_state_dict(checkpoint, use_ema=use_ema)
    if prefix:
        state_dict = _strip_prefix(state_dict, prefix)
    elif own is not None and not any(k in own for k in state_dict) and any(
            k.startswith('backbone.') for k in state_dict):
        state_dict = _strip_prefix(state_dict, 'backbone.')
    name = source if isinstance(source, str) and source != path else path
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else None
    return Weights(path, name, get_adapter(adapter).convert(state_dict), meta)


def load_pretrained(model: torch.nn.Module, source, prefix: Optional[str] = None,
                    map_location='cpu', use_ema: bool = False, sha256: Optional[str] = None) -> dict:
    """Loads published, converted or detector/segmentor weights into a kit model, converting in
    memory with the model's :class:`CheckpointAdapter` (``model.checkpoint_adapter``).

    ``source`` is a local path, an ``http(s)://`` URL or an ``hf-hub:OWNER/REPO[/FILENAME]`` id;
    remote files are downloaded once into their cache and read through the same safe reader. The
    weights of a whole detector or segmentor are found under ``backbone.`` when nothing else
    matches. Raises :class:`CheckpointError` (:meth:`FitReport.message`) when tensors exist under
    matching names with other shapes, when tensors the model needs are missing, or when nothing
    matches. Logs one line (:meth:`FitReport.summary`) and returns the report as a dict
    (:meth:`FitReport.as_dict`).
    """
    adapter: CheckpointAdapter = model.checkpoint_adapter
    own = model.state_dict()
    path, name, state_dict, _ = read_weights(source, adapter, sha256=sha256, use_ema=use_ema,
                                             prefix=prefix, own=own, map_location=map_location)
    skipped = adapter.prepare(model, state_dict, name)
    report = fit(state_dict, own, name, type(model).__name__ + _arch_of(model), adapter,
                 skip=lambda key: adapter.may_skip(model, key), skipped=skipped, path=path)
    hint = ("is it a checkpoint of this model? For a whole detector or segmentor pass "
            "prefix='backbone.'" if not report.loaded and not report.mismatched else
            'is it a checkpoint of another variant?' if report.required else '')
    return load_fitted(model, state_dict, report, hint).as_dict()


def _arch_of(model) -> str:
    arch = getattr(model, 'arch', None)
    return f'(arch={arch!r})' if isinstance(arch, str) else ''


def _names(keys: Iterable[str], limit: int = 12, separator: str = ', ') -> str:
    keys = list(keys)
    if not keys:
        return '-'
    text = separator.join(keys[:limit])
    return text + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')
