"""File-to-file conversion of published checkpoints into the kit's backbone format (the command
lines are ``tools/model_converters/{fastervit,fastvit}2mm.py`` and ``convert_backbone.py``).

What each backbone knows about foreign layouts lives with it (its ``checkpoint_adapter``); this
module reads a source (a local file, a URL or an ``hf-hub:`` id), converts it, checks that it fills
the variant exactly, and writes ``{'state_dict': ..., 'meta': ...}`` of plain tensors atomically.
"""
import os
from collections import OrderedDict
from typing import Optional

from .checkpoint import (CheckpointError, compare_with_model, extract_state_dict, read_source,
                         save_atomic)
from .hub import DownloadError, sha256_of
from .models import BACKBONES

__all__ = ['convert_file', 'check_fits', 'describe_conversion', 'CONVERSION_ERRORS']

#: what a conversion raises for bad input (a command line reports these as one line)
CONVERSION_ERRORS = (CheckpointError, DownloadError, FileNotFoundError, ValueError)

CONVERTER_VERSION = 1


def _adapter(kind: str):
    if kind not in BACKBONES:
        raise ValueError(f'unknown checkpoint kind {kind!r}; known: {sorted(BACKBONES)}')
    return BACKBONES[kind].checkpoint_adapter


def check_fits(state_dict, kind: str, arch: str):
    """Raises :class:`CheckpointError` unless the converted weights fill ``arch`` exactly (apart from
    what an ImageNet model does not have, such as the per-output norms). Returns the missing keys."""
    adapter = _adapter(kind)
    own = adapter.build(arch, state_dict).state_dict()
    mismatched, missing, unexpected = compare_with_model(state_dict, own, adapter)
    mismatched = [f'{k}: checkpoint {a} vs model {b}' for k, a, b in mismatched]
    if mismatched or unexpected or missing:
        guess = adapter.guess_arch(state_dict)
        raise CheckpointError(
            f'the weights do not fit {kind} arch {arch!r}'
            + (f'; they look like arch {guess!r}' if guess else '')
            + (f'; shape mismatches: {"; ".join(mismatched[:6])}' if mismatched else '')
            + (f'; unexpected: {", ".join(unexpected[:6])}' if unexpected else '')
            + (f'; missing: {", ".join(missing[:6])}' if missing else ''))
    return [k for k in own if k not in state_dict]


def convert_file(src, dst, kind: str, arch: Optional[str] = None, use_ema: bool = False,
                 sha256: Optional[str] = None) -> dict:
    """Converts a published checkpoint (a local path, a URL or an ``hf-hub:`` id) into the kit's
    format, atomically: a failed conversion leaves no ``dst``. Returns the meta dict (with the arch,
    given or inferred)."""
    adapter = _adapter(kind)
    path, checkpoint = read_source(src, sha256=sha256)
    state_dict = adapter.convert(extract_state_dict(checkpoint, use_ema=use_ema))
    if not state_dict:
        raise CheckpointError(f'{src}: no {kind} backbone weights found in the checkpoint')
    if arch is None:
        guess = adapter.guess_arch(state_dict)
        if guess is None:
            raise CheckpointError(f'{src}: cannot tell which {kind} variant these weights are; '
                                  'pass --arch')
        arch = guess.split(' ')[0]
    missing = check_fits(state_dict, kind, arch)
    state_dict = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    meta = dict(source=os.path.basename(os.fspath(src)), source_sha256=sha256_of(path), kind=kind,
                arch=arch, fused=adapter.is_fused(state_dict), ema=use_ema, converter_version=CONVERTER_VERSION,
                missing_in_backbone=missing)
    save_atomic({'state_dict': state_dict, 'meta': meta}, dst)
    return meta


def describe_conversion(meta: dict, dst, arch_given: bool = True) -> str:
    """What a converter writes on success: the arch (given or inferred) and the file."""
    return (f'arch: {meta["arch"]}{"" if arch_given else " (inferred)"}\n'
            f'wrote {dst}: {meta["kind"]} backbone weights, source sha256 '
            f'{meta["source_sha256"][:12]}; layers the ImageNet model lacks: '
            f'{", ".join(meta["missing_in_backbone"]) or "-"}')
