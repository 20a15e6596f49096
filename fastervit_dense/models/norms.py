"""Norm layers for backbone outputs, from OpenMMLab-style norm configs, in plain PyTorch."""
from typing import Optional

import torch.nn as nn
from timm.layers import LayerNorm2d

_CHANNEL_LAYER_NORMS = ('LN2d', 'LayerNorm2d')
_BATCH_NORMS = {'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}
_TYPES = _CHANNEL_LAYER_NORMS + tuple(_BATCH_NORMS) + ('GN', )


def build_output_norm(cfg: Optional[dict], channels: int) -> nn.Module:
    """A norm over the channels of a (B, C, H, W) map; ``None`` gives an identity.

    Accepts the norm configs of OpenMMLab (mmcv's ``build_norm_layer`` names): ``dict(type='LN2d',
    eps=...)`` a channel LayerNorm (as on the outputs of mmdet's Swin), ``'BN'`` / ``'SyncBN'``
    (``eps``, ``momentum``), ``'GN'`` (``num_groups``, ``eps``); ``requires_grad=False`` freezes it.
    """
    if cfg is None:
        return nn.Identity()
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'out_norm_cfg must be None or a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    kind = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    try:
        if kind in _CHANNEL_LAYER_NORMS:
            norm = LayerNorm2d(channels, **cfg)
        elif kind in _BATCH_NORMS:
            norm = _BATCH_NORMS[kind](channels, **cfg)
        elif kind == 'GN':
            if 'num_groups' not in cfg:
                raise ValueError('out_norm_cfg of type "GN" needs num_groups')
            norm = nn.GroupNorm(num_channels=channels, **cfg)
        else:
            raise ValueError(f'out_norm_cfg type {kind!r} is not supported; use one of '
                             f'{", ".join(_TYPES)}, or None')
    except TypeError as error:
        raise ValueError(f'out_norm_cfg {dict(type=kind, **cfg)!r}: {error}') from None
    for p in norm.parameters():
        p.requires_grad = requires_grad
    return norm
