"""The one place that knows foreign checkpoint layouts and turns them into the kit's naming.

FasterViT: the kit keeps the published parameter names, so conversion drops the classifier (``head``,
the final ``norm``) and everything the kit recomputes from the input (position-bias caches,
coordinate and index tables, an alias of the carrier tokenizer's conv).

FastViT: the kit keeps timm's names. Apple's files (``network.{k}``, ``patch_embed``, ...) and
MobileCLIP image encoders go through timm's own ``checkpoint_filter_fn``; fused (``_reparam``) Apple
files need two renames it lacks. timm ``features_only`` names (``stem_0``, ``stages_3``) are unflattened.
"""
import re
from collections import OrderedDict
from types import SimpleNamespace
from typing import Dict, Optional

import torch

from .models.fastervit import FASTERVIT_ARCHS, is_recomputable_key

__all__ = ['convert_to_kit', 'convert_fastervit', 'guess_arch']

_FASTERVIT_CLASSIFIER = ('head.', 'norm.')


def convert_fastervit(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Published (or already converted) FasterViT weights -> the kit's backbone keys."""
    return OrderedDict((k, v) for k, v in state_dict.items()
                       if not k.startswith(_FASTERVIT_CLASSIFIER) and not is_recomputable_key(k))


_FASTVIT_TRUNK = ('stem.', 'stages.')


def convert_fastvit(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """timm, Apple (fused or unfused), MobileCLIP or converted FastViT weights -> the kit's keys."""
    from timm.models.fastvit import checkpoint_filter_fn
    state_dict = OrderedDict(
        (re.sub(r'^(stem|stages)_(\d+)\.', r'\1.\2.', k), v) for k, v in state_dict.items())
    if not any(k.startswith(_FASTVIT_TRUNK) for k in state_dict):
        # timm's filter reads ``model.head`` only for CLIP projections, which the backbone drops.
        state_dict = checkpoint_filter_fn(state_dict, SimpleNamespace(head=None))
        renamed = OrderedDict()
        for k, v in state_dict.items():
            k = k.replace('lkb_reparam', 'reparam_conv')
            # A fused positional conv sits directly under its ``network`` entry; timm's filter files
            # it with the stage's blocks.
            k = re.sub(r'^stages\.(\d+)\.blocks\.reparam_conv\.', r'stages.\1.pos_emb.reparam_conv.', k)
            renamed[k] = v
        state_dict = renamed
    return OrderedDict((k, v) for k, v in state_dict.items() if k.startswith(_FASTVIT_TRUNK))


_CONVERTERS = {'fastervit': convert_fastervit, 'fastvit': convert_fastvit}


def convert_to_kit(state_dict, kind: str):
    if kind not in _CONVERTERS:
        raise ValueError(f'unknown checkpoint kind {kind!r}; known: {sorted(_CONVERTERS)}')
    return _CONVERTERS[kind](state_dict)


def _fastervit_signature(state_dict) -> Optional[tuple]:
    stem = state_dict.get('patch_embed.conv_down.3.weight')
    if stem is None:
        return None
    depths = []
    for level in range(4):
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(rf'levels\.{level}\.blocks\.(\d+)\.', k)] if m}
        depths.append(max(blocks) + 1 if blocks else 0)
    heads = state_dict.get('levels.2.blocks.0.attn.pos_emb_funct.cpb_mlp.2.weight')
    num_heads = heads.shape[0] if heads is not None else None
    has_hat = any(k.startswith('levels.2.global_tokenizer.') for k in state_dict)
    return tuple(stem.shape[:2]), tuple(depths), num_heads, has_hat


_FASTERVIT_CARRIER_LAYERS = re.compile(r'\.(hat_[a-z_]+\d?|gamma1|gamma2|global_tokenizer)(\.|$)')


def may_be_missing(key: str, kind: str) -> bool:
    """Backbone tensors an ImageNet checkpoint may lack: the per-output norms (dense-prediction
    additions) and, for FasterViT, carrier-token layers (the 21K models were trained without them)."""
    if key.startswith('out_norm') or key.endswith('num_batches_tracked'):
        return True
    return kind == 'fastervit' and _FASTERVIT_CARRIER_LAYERS.search(key) is not None


def _shape_signature(state_dict) -> dict:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _guess_fastvit(state_dict) -> Optional[str]:
    from .models.fastvit import FASTVIT_ARCHS
    import timm
    ours = _shape_signature(state_dict)
    for arch in FASTVIT_ARCHS:
        for deploy in (False, True):
            with torch.device('meta'):
                trunk = timm.create_model(f'fastvit_{arch}', fork_feat=True, inference_mode=deploy)
            reference = {k: v for k, v in _shape_signature(trunk.state_dict()).items()
                         if k.startswith(_FASTVIT_TRUNK)}
            if reference.keys() == ours.keys() and reference == ours:
                return arch + (' (fused)' if deploy else '')
    return None


def guess_arch(state_dict, kind: str = 'fastervit') -> Optional[str]:
    """The preset whose shapes the weights have, or None (``'4'`` and the 21K FasterViT models differ
    only in carrier-token layers)."""
    if kind == 'fastvit':
        return _guess_fastvit(state_dict)
    if kind != 'fastervit':
        return None
    signature = _fastervit_signature(state_dict)
    if signature is None:
        return None
    (dim, in_dim), depths, num_heads, has_hat = signature
    for name, arch in FASTERVIT_ARCHS.items():
        if (arch['dim'], arch['in_dim']) == (dim, in_dim) and tuple(arch['depths']) == depths and \
                (num_heads is None or arch['num_heads'][2] == num_heads) and \
                arch['hat'][2] == has_hat:
            return name
    return None


CONVERTER_VERSION = 1


def _build_backbone(kind: str, arch: str, deploy: bool = False):
    from .models import FasterViT, FastViT
    if kind == 'fastervit':
        return FasterViT(arch)
    return FastViT(arch, deploy=deploy)


def compare_with_model(state_dict, own, kind: str):
    """How checkpoint weights relate to a model's ``own`` state dict: ``(mismatched, required,
    unexpected)``: tensors present in both with other shapes, as ``(key, checkpoint shape, model
    shape)``; model tensors the checkpoint lacks that it should have (see :func:`may_be_missing`);
    checkpoint tensors the model does not have."""
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape]
    required = [k for k in own if k not in state_dict and not may_be_missing(k, kind)]
    unexpected = [k for k in state_dict if k not in own]
    return mismatched, required, unexpected


def check_fits(state_dict, kind: str, arch: str, deploy: bool = False):
    """Raises :class:`CheckpointError` unless the converted weights fill ``arch`` exactly (apart from
    the per-output norms, which ImageNet models do not have). Returns the missing keys."""
    from .checkpoint import CheckpointError
    own = _build_backbone(kind, arch, deploy).state_dict()
    mismatched, missing, unexpected = compare_with_model(state_dict, own, kind)
    mismatched = [f'{k}: checkpoint {a} vs model {b}' for k, a, b in mismatched]
    if mismatched or unexpected or missing:
        guess = guess_arch(state_dict, kind)
        raise CheckpointError(
            f'the weights do not fit {kind} arch {arch!r}'
            + (f'; they look like arch {guess!r}' if guess else '')
            + (f'; shape mismatches: {"; ".join(mismatched[:6])}' if mismatched else '')
            + (f'; unexpected: {", ".join(unexpected[:6])}' if unexpected else '')
            + (f'; missing: {", ".join(missing[:6])}' if missing else ''))
    return [k for k in own if k not in state_dict]


def convert_file(src: str, dst: str, kind: str, arch: Optional[str] = None,
                 use_ema: bool = False) -> dict:
    """Converts a published checkpoint file into the kit's format, atomically.

    Writes ``{'state_dict': ..., 'meta': {...}}`` of plain tensors to ``dst`` through a temporary
    file in the same folder, renamed into place only once everything succeeded: a failed conversion
    leaves no ``dst``. Returns the meta dict (with the arch, given or inferred).
    """
    import hashlib
    import os
    import tempfile

    from .checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file

    state_dict = convert_to_kit(extract_state_dict(load_checkpoint_file(src), use_ema=use_ema), kind)
    if not state_dict:
        raise CheckpointError(f'{src}: no {kind} backbone weights found in the checkpoint')
    deploy = kind == 'fastvit' and any('reparam_conv' in k for k in state_dict)
    if arch is None:
        guess = guess_arch(state_dict, kind)
        if guess is None:
            raise CheckpointError(f'{src}: cannot tell which {kind} variant these weights are; '
                                  'pass --arch')
        arch = guess.split(' ')[0]
    missing = check_fits(state_dict, kind, arch, deploy)
    state_dict = OrderedDict((k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    sha256 = hashlib.sha256()
    with open(src, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha256.update(chunk)
    meta = dict(source=os.path.basename(src), source_sha256=sha256.hexdigest(), kind=kind,
                arch=arch, fused=deploy, ema=use_ema, converter_version=CONVERTER_VERSION,
                missing_in_backbone=missing)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(dst), suffix='.tmp')
    os.close(handle)
    try:
        torch.save({'state_dict': state_dict, 'meta': meta}, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return meta


def converter_main(kind: str, argv=None, description: str = ''):
    """Command line shared by ``tools/model_converters/{fastervit,fastvit}2mm.py``."""
    import argparse
    import sys

    from .checkpoint import CheckpointError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='published checkpoint (as downloaded)')
    parser.add_argument('dst', help='output file for the kit (written atomically)')
    parser.add_argument('--arch', default=None, help='variant; inferred from the weights if omitted')
    if kind == 'fastervit':
        parser.add_argument('--ema', action='store_true', help='take the EMA weights')
    args = parser.parse_args(argv)
    try:
        meta = convert_file(args.src, args.dst, kind, args.arch, getattr(args, 'ema', False))
    except (CheckpointError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    inferred = '' if args.arch else ' (inferred)'
    print(f'arch: {meta["arch"]}{inferred}')
    print(f'wrote {args.dst}: {meta["kind"]} backbone weights, source sha256 '
          f'{meta["source_sha256"][:12]}; layers the ImageNet model lacks: '
          f'{", ".join(meta["missing_in_backbone"]) or "-"}')
    return 0
