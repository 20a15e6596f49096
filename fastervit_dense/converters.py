"""File-to-file conversion of published checkpoints into the kit's format (the command lines are
``tools/model_converters/{fastervit,fastvit}2mm.py``, ``convert_backbone.py`` and ``dino2mm.py``).

One function serves every layout: :func:`convert_file` reads a source (a local file, a URL or an
``hf-hub:`` id) safely, converts it with the layout's adapter
(:class:`~fastervit_dense.checkpoint.CheckpointAdapter`, by kind), checks that it fills its target
exactly (:func:`~fastervit_dense.checkpoint.fit`: a backbone variant, or a model the caller
describes, such as an mmdet config's detector) and writes ``{'state_dict': ..., 'meta': ...}`` of
plain tensors atomically.
"""
import os
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

from .checkpoint import CheckpointError, fit, get_adapter, read_weights, save_atomic
from .hub import DownloadError, sha256_of
from .models import BACKBONES  # noqa: F401  (registers the backbones' adapters)

__all__ = ['convert_file', 'check_fits', 'describe_conversion', 'CONVERSION_ERRORS']

#: what a conversion raises for bad input (a command line reports these as one line)
CONVERSION_ERRORS = (CheckpointError, DownloadError, FileNotFoundError, ValueError)

CONVERTER_VERSION = 1


def check_fits(state_dict, kind, arch: Optional[str] = None,
               target: Optional[Tuple[str, Mapping]] = None, source: str = 'the weights'):
    """Raises :class:`CheckpointError` unless converted weights fill their target exactly (apart
    from what the adapter of ``kind`` allows to be missing, such as the per-output norms an ImageNet
    model lacks). The target is ``(name, state dict or key -> shaped tensor)``, or else the model of
    ``arch`` that the adapter builds. Returns the :class:`~fastervit_dense.checkpoint.FitReport`."""
    adapter = get_adapter(kind)
    if target is None:
        target = (f'{adapter.kind} arch {arch!r}', adapter.build(arch, state_dict).state_dict())
    name, own = target
    return fit(state_dict, own, source, name, adapter, unexpected_ok=False).check(adapter.fit_hint)


def convert_file(src, dst, kind, arch: Optional[str] = None, use_ema: bool = False,
                 sha256: Optional[str] = None, target: Optional[Tuple[str, Mapping]] = None,
                 meta: Optional[dict] = None) -> dict:
    """Converts a checkpoint (a local path, a URL or an ``hf-hub:`` id) of layout ``kind`` (a
    registered kind or an adapter) into the kit's format, atomically: a failed conversion leaves no
    ``dst``. Without ``target`` the weights must fill the backbone of ``arch`` (inferred from the
    weights when None). ``meta`` is added to the file's metadata. Returns the metadata."""
    adapter = get_adapter(kind)
    path, name, state_dict, _ = read_weights(src, adapter, sha256=sha256, use_ema=use_ema)
    if not state_dict:
        raise CheckpointError(f'{name}: no {adapter.kind} weights found in the checkpoint')
    if target is None and arch is None:
        guess = adapter.guess_arch(state_dict)
        if guess is None:
            raise CheckpointError(f'{name}: cannot tell which {adapter.kind} variant these weights '
                                  'are; pass --arch')
        arch = guess.split(' ')[0]
    report = check_fits(state_dict, adapter, arch, target, source=name)
    state_dict = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    info = dict(source=os.path.basename(os.fspath(src)), source_sha256=sha256_of(path),
                kind=adapter.kind, converter_version=CONVERTER_VERSION)
    if target is None:
        info.update(arch=arch, ema=use_ema, **adapter.describe(state_dict, report))
    info.update(meta or {})
    save_atomic({'state_dict': state_dict, 'meta': info}, dst)
    return info


def describe_conversion(meta: dict, dst, arch_given: bool = True) -> str:
    """What a converter writes on success: the arch (given or inferred) and the file."""
    return (f'arch: {meta["arch"]}{"" if arch_given else " (inferred)"}\n'
            f'wrote {dst}: {meta["kind"]} backbone weights, source sha256 '
            f'{meta["source_sha256"][:12]}; layers the ImageNet model lacks: '
            f'{", ".join(meta["missing_in_backbone"]) or "-"}')
