"""Norm layers for backbone outputs."""
from typing import Optional

import torch.nn as nn
from timm.layers import LayerNorm2d

_CHANNEL_LAYER_NORMS = ('LN2d', 'LayerNorm2d')


def build_output_norm(cfg: Optional[dict], channels: int) -> nn.Module:
    """A norm over the channels of a (B, C, H, W) map; ``None`` gives an identity.

    ``dict(type='LN2d', eps=...)`` is a channel LayerNorm (as on the outputs of mmdet's Swin); other
    types go through mmcv's ``build_norm_layer`` (``'BN'``, ``'SyncBN'``, ``'GN'``, ...).
    """
    if cfg is None:
        return nn.Identity()
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'out_norm_cfg must be None or a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    if cfg['type'] in _CHANNEL_LAYER_NORMS:
        cfg.pop('type')
        cfg.pop('requires_grad', None)
        return LayerNorm2d(channels, **cfg)
    from mmcv.cnn import build_norm_layer
    return build_norm_layer(cfg, channels)[1]
