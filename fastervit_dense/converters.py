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
