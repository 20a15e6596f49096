"""FasterViT as a multi-scale backbone that runs at any input size.

Architecture (Hatamizadeh et al., "FasterViT: Fast Vision Transformers with Hierarchical Attention",
arXiv 2306.06189): a two-conv stem at stride 4, two convolutional stages, then two stages of windowed
attention. In a stage with hierarchical attention (HAT) every window also owns ``ct_size**2`` carrier
tokens, pooled from the stage's feature map; in each block all carrier tokens first attend to each
other globally, then join their window's tokens for window attention.

What this implementation adds over the published code: every grid (the window grid, the carrier grid,
the pooling that makes carrier tokens, the position terms) is derived from the input of each forward,
so one instance serves every input size, square or not, without rebuilding anything or storing
size-dependent state. Where the published any-resolution model runs with a square window grid, the
outputs are the same to float rounding; state-dict keys follow the published checkpoints.
"""
import copy
import re
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_

from ..checkpoint import CheckpointAdapter, register_adapter
from .base import (DenseBackbone, check_frozen_stages, check_out_indices, drop_unbuilt_entries,
                   freeze)
from .norms import build_output_norm
from .windows import (carrier_grid_to_windows, carrier_pooling_matrix, carrier_windows_to_grid,
                      pad_to_window_multiple, window_partition, window_reverse)
from .position import PositionEmbeddingMLP, RelativePositionBias

__all__ = ['FasterViT', 'FASTERVIT_ARCHS', 'FASTERVIT_WEIGHTS']

_BASE_0_TO_2 = dict(num_heads=[2, 4, 8, 16], window_size=[7, 7, 7, 7], ct_size=2, mlp_ratio=4.,
                    hat=[False, False, True, False], layer_scale=None, propagation=False)
_BASE_3_TO_6 = dict(_BASE_0_TO_2, layer_scale=1e-5, propagation=True)
_BASE_4_21K = dict(_BASE_3_TO_6, depths=[3, 3, 12, 5], num_heads=[4, 8, 16, 32], dim=196, in_dim=64,
                   drop_path_rate=0.3, hat=[False, False, False, False])

#: The published variants. The 21K FasterViT-4 models were trained with windows as large as their
#: stage maps at the training size (stages 3-4 attend globally there) and without carrier tokens.
FASTERVIT_ARCHS: Dict[str, dict] = {
    '0': dict(_BASE_0_TO_2, depths=[2, 3, 6, 5], dim=64, in_dim=64, drop_path_rate=0.2),
    '1': dict(_BASE_0_TO_2, depths=[1, 3, 8, 5], dim=80, in_dim=32, drop_path_rate=0.2),
    '2': dict(_BASE_0_TO_2, depths=[3, 3, 8, 5], dim=96, in_dim=64, drop_path_rate=0.2),
    '3': dict(_BASE_3_TO_6, depths=[3, 3, 12, 5], dim=128, in_dim=64, drop_path_rate=0.3),
    '4': dict(_BASE_3_TO_6, depths=[3, 3, 12, 5], num_heads=[4, 8, 16, 32], dim=196, in_dim=64,
              drop_path_rate=0.3),
    '5': dict(_BASE_3_TO_6, depths=[3, 3, 12, 5], num_heads=[4, 8, 16, 32], dim=320, in_dim=64,
              drop_path_rate=0.3),
    '6': dict(_BASE_3_TO_6, depths=[3, 3, 16, 8], num_heads=[4, 8, 16, 32], dim=320, in_dim=64,
              drop_path_rate=0.5),
    '4-21k-224': dict(_BASE_4_21K, window_size=[7, 7, 14, 7]),
    '4-21k-384': dict(_BASE_4_21K, window_size=[7, 7, 24, 12]),
    '4-21k-512': dict(_BASE_4_21K, window_size=[7, 7, 32, 16]),
    '4-21k-768': dict(_BASE_4_21K, window_size=[7, 7, 48, 24]),
}
_WEIGHTS_URL = 'https://huggingface.co/ahatamiz/FasterViT/resolve/main/'
#: The published ImageNet weights of each preset, by tag (the official files, as the official
#: package names them; the tags are the kit's timm models' pretrained tags):
#: ``FasterViT(arch).load_pretrained()`` loads the first tag's.
FASTERVIT_WEIGHTS: Dict[str, Dict[str, str]] = {
    **{str(i): {'in1k': f'{_WEIGHTS_URL}fastervit_{i}_224_1k.pth.tar'} for i in range(7)},
    **{f'4-21k-{size}': {'in21k_ft_in1k': f'{_WEIGHTS_URL}fastervit_4_21k_{size}_w{window}.pth.tar'}
       for size, window in ((224, 14), (384, 24), (512, 32), (768, 48))},
}
_ARCH_KEYS = ('depths', 'num_heads', 'window_size', 'ct_size', 'dim', 'in_dim', 'mlp_ratio', 'hat',
              'layer_scale', 'propagation', 'drop_path_rate')
_NUM_STAGES = 4
#: Sequence length up to which attention on CPU uses matrix products rather than the fused kernel.
_SMALL_ATTENTION = 64


def run_checkpointed(module: nn.Module, *args, enabled: bool):
    """``module(*args)``, under gradient checkpointing when ``enabled`` and something in it trains:
    its activations are then recomputed in the backward pass instead of being kept."""
    if enabled and module.training and torch.is_grad_enabled() and (
            any(a.requires_grad for a in args if isinstance(a, torch.Tensor))
            or any(p.requires_grad for p in module.parameters())):
        return cp.checkpoint(module, *args, use_reentrant=False)
    return module(*args)


class GELU(nn.GELU):
    """Exact GELU that works in place when no gradient is being recorded (inference), sparing a
    fresh output as large as the MLP's hidden layer; otherwise :class:`torch.nn.GELU`."""

    def forward(self, x):
        if (torch.is_grad_enabled() and x.requires_grad) or torch.jit.is_tracing():
            return super().forward(x)
        return torch.ops.aten.gelu_(x)


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn(conv(x))``. When ``bn`` uses its running statistics (evaluation, or ``norm_eval``) the
    BatchNorm is folded into the convolution's weights for this call, which saves a pass over the
    map; the result is the same to float rounding, gradients reach every parameter, and nothing is
    stored. A norm of another kind put in ``bn``'s place (a frozen BatchNorm, as some detection
    libraries swap in) is applied as it is."""
    if bn.training or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), bias, conv.stride, conv.padding,
                    conv.dilation, conv.groups)


class Stem(nn.Module):
    """Two stride-2 3x3 convolutions with BatchNorm (eps 1e-4) and ReLU: stride 4.

    The ReLUs work in place (BatchNorm's backward needs its input, not its output), which saves a
    full-resolution map per ReLU in training; the ``conv_down`` indices match the published weights.
    """

    def __init__(self, in_channels: int, in_dim: int, dim: int):
        super().__init__()
        self.conv_down = nn.Sequential(
            nn.Conv2d(in_channels, in_dim, 3, 2, 1, bias=False), nn.BatchNorm2d(in_dim, eps=1e-4),
            nn.ReLU(inplace=True), nn.Conv2d(in_dim, dim, 3, 2, 1, bias=False),
            nn.BatchNorm2d(dim, eps=1e-4), nn.ReLU(inplace=True))

    def forward(self, x):
        layers = self.conv_down
        x = layers[2](conv_bn(x, layers[0], layers[1]))
        return layers[5](conv_bn(x, layers[3], layers[4]))


class Downsample(nn.Module):
    """Channel LayerNorm then a stride-2 3x3 convolution that doubles the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.reduction = nn.Sequential(nn.Conv2d(dim, 2 * dim, 3, 2, 1, bias=False))

    def forward(self, x):
        return self.reduction(self.norm(x))


class ConvBlock(nn.Module):
    """Residual conv-BN-GELU-conv-BN block of stages 1-2, with optional layer scale."""

    def __init__(self, dim: int, drop_path: float = 0., layer_scale: Optional[float] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5)
        self.act1 = GELU()
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5)
        if layer_scale is not None:
            self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        else:
            self.gamma = None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x):
        y = conv_bn(self.act1(conv_bn(x, self.conv1, self.norm1)), self.conv2, self.norm2)
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)


class WindowAttention(nn.Module):
    """Multi-head self-attention with a continuous relative position bias over a token grid.

    ``num_prefix`` leading tokens (a window's carrier tokens) take no position bias; ``prefix_bias``
    (a scalar tensor), when given, is added to every query's logits towards those tokens.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pos_emb_funct = RelativePositionBias(num_heads)

    def forward(self, x, grid_h, grid_w, num_prefix: int = 0, prefix_bias=None):
        batch, num_tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.pos_emb_funct(grid_h, grid_w)
        if num_prefix:
            bias = F.pad(bias, (num_prefix, 0, num_prefix, 0))
            if prefix_bias is not None:
                key_bias = torch.zeros_like(bias[:1, :1])
                key_bias[..., :num_prefix] = 1
                bias = bias + key_bias * prefix_bias
        bias = bias.to(q.dtype).unsqueeze(0)
        dropout = self.attn_drop if self.training else 0.
        if x.device.type == 'cpu' and num_tokens <= _SMALL_ATTENTION:
            # On CPUs the fused kernel is slower than plain matrix products for short sequences.
            logits = torch.matmul(q * q.shape[-1]**-0.5, k.transpose(-2, -1)) + bias
            x = torch.matmul(F.dropout(logits.softmax(-1), dropout, self.training), v)
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        x = self.proj(x.transpose(1, 2).reshape(batch, num_tokens, channels))
        return self.proj_drop(x)


def _layer_scale(dim: int, value: Optional[float]):
    return nn.Parameter(value * torch.ones(dim)) if value is not None else None


def _scaled(gamma: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return x if gamma is None else gamma * x


class HATBlock(nn.Module):
    """Transformer block over windows, with hierarchical attention through carrier tokens.

    ``forward(x, carrier)`` takes window tokens (B*n_h*n_w, w*w, C) and, in a HAT stage, carrier
    tokens (B, grid_h*grid_w, C) in row-major image order, ``grid = n * ct_size`` per axis.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, ct_size: int, hat: bool,
                 mlp_ratio: float = 4., qkv_bias: bool = True, drop: float = 0.,
                 attn_drop: float = 0., drop_path: float = 0., layer_scale: Optional[float] = None,
                 propagate: bool = False, pos_embed_coords: str = 'side'):
        super().__init__()
        self.window_size = window_size
        self.ct_size = ct_size
        self.hat = hat
        self.propagate = propagate
        hidden = int(dim * mlp_ratio)
        self.pos_embed = PositionEmbeddingMLP(dim, coords=pos_embed_coords)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden, act_layer=GELU, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.gamma3 = _layer_scale(dim, layer_scale)
        self.gamma4 = _layer_scale(dim, layer_scale)
        if hat:
            self.hat_pos_embed = PositionEmbeddingMLP(dim, coords=pos_embed_coords)
            self.hat_norm1 = nn.LayerNorm(dim)
            self.hat_attn = WindowAttention(dim, num_heads, qkv_bias, attn_drop, drop)
            self.hat_norm2 = nn.LayerNorm(dim)
            self.hat_mlp = Mlp(dim, hidden, act_layer=GELU, drop=drop)
            self.hat_drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
            self.gamma1 = _layer_scale(dim, layer_scale)
            self.gamma2 = _layer_scale(dim, layer_scale)

    def forward(self, x, carrier, grid_h, grid_w, carrier_gate=None):
        """``carrier_gate`` (traced exports only): 1 where carrier tokens are in use, else 0."""
        w = self.window_size
        x = x + self.pos_embed(w, w)
        num_prefix = 0
        if carrier is not None:
            carrier = carrier + self.hat_pos_embed(grid_h, grid_w)
            carrier = carrier + self.hat_drop_path(
                _scaled(self.gamma1, self.hat_attn(self.hat_norm1(carrier), grid_h, grid_w)))
            carrier = carrier + self.hat_drop_path(
                _scaled(self.gamma2, self.hat_mlp(self.hat_norm2(carrier))))
            carrier_windows = carrier_grid_to_windows(carrier, grid_h, grid_w, self.ct_size)
            num_prefix = self.ct_size * self.ct_size
            x = torch.cat([carrier_windows, x], dim=1)

        prefix_bias = None
        if carrier_gate is not None:
            # exp(-1e4) is exactly 0 in float32: a closed gate removes the carrier tokens.
            prefix_bias = (carrier_gate - 1) * 1e4
        x = x + self.drop_path(
            _scaled(self.gamma3, self.attn(self.norm1(x), w, w, num_prefix, prefix_bias)))
        x = x + self.drop_path(_scaled(self.gamma4, self.mlp(self.norm2(x))))

        if carrier is not None:
            carrier_windows, x = x[:, :num_prefix], x[:, num_prefix:]
            carrier = carrier_windows_to_grid(carrier_windows, grid_h, grid_w, self.ct_size)
            if self.propagate:
                # Each window's carrier tokens, upsampled (nearest) to the window, flow back into it.
                ct_map = carrier_windows.transpose(1, 2).reshape(
                    -1, x.shape[-1], self.ct_size, self.ct_size)
                spread = F.interpolate(ct_map.float(), size=(w, w), mode='nearest')
                spread = spread.flatten(2).transpose(1, 2).to(x.dtype)
                if carrier_gate is not None:
                    spread = spread * carrier_gate.to(spread.dtype)
                x = x + _scaled(self.gamma1, spread)
        return x, carrier


class CarrierTokenizer(nn.Module):
    """Makes the carrier tokens of a padded stage map: depthwise 3x3 conv, then average pooling into
    ``ct_size x ct_size`` cells per window (see :func:`carrier_pooling_matrix`)."""

    def __init__(self, dim: int, window_size: int, ct_size: int):
        super().__init__()
        self.window_size = window_size
        self.ct_size = ct_size
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x):
        """(B, C, n_h*w, n_w*w) -> carrier tokens (B, n_h*ct * n_w*ct, C), row-major."""
        x = self.pos_embed(x)
        n_h = x.shape[-2] // self.window_size
        n_w = x.shape[-1] // self.window_size
        pool_h = carrier_pooling_matrix(n_h, self.window_size, self.ct_size, dtype=x.dtype,
                                        device=x.device)
        pool_w = carrier_pooling_matrix(n_w, self.window_size, self.ct_size, dtype=x.dtype,
                                        device=x.device)
        # Pool in (B, H, W, C) order, a view of the channels-last map: two matrix products with
        # no layout copies, and the cells come out row-major with channels last, i.e. as tokens.
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(batch, height, width * channels)
        pooled = torch.matmul(pool_h, rows)
        pooled = torch.matmul(pool_w, pooled.reshape(-1, width, channels))
        return pooled.reshape(batch, -1, channels)


class FasterViTStage(nn.Module):
    """One stage: conv blocks (stages 1-2) or windowed HAT blocks (stages 3-4), then the downsample.

    ``forward`` returns the stage's feature map before the downsample; the caller applies
    ``self.downsample``.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, ct_size: int,
                 conv: bool, hat: bool, downsample: bool, mlp_ratio: float, drop_path: Sequence[float],
                 layer_scale: Optional[float], propagation: bool, with_cp: bool = False,
                 pos_embed_coords: str = 'side', pad_conv: bool = False):
        super().__init__()
        self.conv = conv
        self.pad_conv = pad_conv
        self.hat = hat and not conv
        self.window_size = window_size
        self.ct_size = ct_size
        self.with_cp = with_cp
        if conv:
            self.blocks = nn.ModuleList(
                [ConvBlock(dim, drop_path[i], layer_scale=None) for i in range(depth)])
        else:
            self.blocks = nn.ModuleList([
                HATBlock(dim, num_heads, window_size, ct_size, hat=self.hat, mlp_ratio=mlp_ratio,
                         drop_path=drop_path[i], layer_scale=layer_scale,
                         propagate=propagation and i == depth - 1,
                         pos_embed_coords=pos_embed_coords) for i in range(depth)
            ])
        if self.hat:
            self.global_tokenizer = CarrierTokenizer(dim, window_size, ct_size)
        self.downsample = Downsample(dim) if downsample else None

    def _run(self, block, *args):
        return run_checkpointed(block, *args, enabled=self.with_cp)

    def forward(self, x):
        if self.conv:
            height, width = x.shape[-2], x.shape[-1]
            if self.pad_conv:
                x = pad_to_window_multiple(x, self.window_size)
            for block in self.blocks:
                x = self._run(block, x)
            return x[:, :, :height, :width] if self.pad_conv else x

        height, width = x.shape[-2], x.shape[-1]
        w = self.window_size
        x = pad_to_window_multiple(x, w)
        padded_h, padded_w = x.shape[-2], x.shape[-1]
        grid_h = padded_h // w * self.ct_size
        grid_w = padded_w // w * self.ct_size

        carrier, gate = None, None
        if self.hat:
            tracing = torch.jit.is_tracing()
            if tracing:
                # One traced graph serves every size: carrier tokens always flow, and a gate removes
                # them where the input has a single window (as eager mode does by skipping them).
                num_windows = (padded_h // w) * (padded_w // w)
                gate = (torch.as_tensor(num_windows) > 1).to(x.dtype)
            if tracing or (padded_h // w) * (padded_w // w) > 1:
                carrier = self.global_tokenizer(x)

        x = window_partition(x, w)
        for block in self.blocks:
            x, carrier = self._run(block, x, carrier, grid_h, grid_w, gate)
        x = window_reverse(x, w, padded_h, padded_w)
        return x[:, :, :height, :width]


class FasterViT(DenseBackbone):
    """FasterViT backbone for dense prediction, at any input size.

    Args:
        arch (str | dict): ``'0'``..``'6'``, ``'4-21k-224'``, ``'4-21k-384'``, ``'4-21k-512'``,
            ``'4-21k-768'``, or a dict with the keys ``depths, num_heads, window_size, ct_size, dim,
            in_dim, mlp_ratio, hat, layer_scale, propagation, drop_path_rate``. Default: ``'0'``.
        in_channels (int): Input channels. Default: 3.
        window_size (Sequence[int], optional): Window side per stage (four ints; stages 1-2 are
            convolutional and ignore it). Default: the arch's.
        ct_size (int, optional): Carrier tokens per window side. Default: the arch's (2).
        hat (Sequence[bool], optional): Hierarchical attention per stage; only stages 3-4 can have it.
            Default: the arch's.
        drop_path_rate (float, optional): Stochastic depth, rising linearly over all blocks.
            Default: the arch's ImageNet value.
        layer_scale (float, optional): Initial layer scale of the transformer blocks; ``None`` for
            none. Default: the arch's.
        out_indices (Sequence[int]): Stages whose features are returned; output ``i`` has
            ``dim * 2**i`` channels at stride ``2**(i+2)``. Default: ``(0, 1, 2, 3)``.
        out_norm_cfg (dict, optional): Norm layer applied to each output (mmcv/mmengine norm config;
            ``'LN2d'`` is a channel LayerNorm). ``None`` returns the raw stage features.
            Default: ``dict(type='LN2d', eps=1e-6)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem and the first ``k``
            stages with their downsample layers. Re-applied by :meth:`train`. Default: -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training. Default: False.
        with_cp (bool): Gradient checkpointing of the stem, every block, the downsample layers and
            the output norms: only their inputs are kept for the backward pass, which recomputes
            the rest (about half the training memory, for about a third more compute).
            Default: False.
        pos_embed_coords (str): Coordinates of the window and carrier position embeddings:
            ``'side'``, each axis centred and scaled by half its side, as the ImageNet classifiers
            were trained, or ``'tokens'``, both axes by half the token count, as FasterViT's DINO
            detectors were trained (their published checkpoint needs it; see
            :class:`~fastervit_dense.models.position.PositionEmbeddingMLP`). No weight depends on
            it. Default: ``'side'``.
        pad_conv_stages (bool): Zero-pad the maps of the convolutional stages 1-2 on the bottom and
            right to a multiple of their window size before their blocks (and crop after), as
            FasterViT's DINO code does; the padding's values then reach the last rows and columns
            of real pixels from the second block on. Only inputs whose stage maps are not such
            multiples are affected. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=SOURCE)``, loaded by
            :meth:`init_weights` (as OpenMMLab does) or directly with :meth:`load_pretrained`.
            SOURCE (a local path, an ``http(s)://`` URL or an ``hf-hub:`` id) is a published
            FasterViT checkpoint as downloaded, a converted one, or a whole detector/segmentor
            checkpoint (with ``prefix='backbone.'``). Optional keys: ``prefix``, ``sha256``,
            ``map_location``, ``use_ema``.
    """

    def __init__(self, arch: Union[str, dict] = '0', in_channels: int = 3,
                 window_size: Optional[Sequence[int]] = None, ct_size: Optional[int] = None,
                 hat: Optional[Sequence[bool]] = None, drop_path_rate: Optional[float] = None,
                 layer_scale: Union[float, None, str] = 'arch',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 pos_embed_coords: str = 'side', pad_conv_stages: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if pos_embed_coords not in PositionEmbeddingMLP.COORDS:
            raise ValueError(f'pos_embed_coords must be one of {PositionEmbeddingMLP.COORDS}, got '
                             f'{pos_embed_coords!r}: "side" as the ImageNet classifiers were '
                             'trained, "tokens" as FasterViT\'s DINO detectors were')
        self.pos_embed_coords = pos_embed_coords
        self.pad_conv_stages = bool(pad_conv_stages)
        settings = self._resolve_arch(arch)
        self.arch = arch if isinstance(arch, str) else None
        overrides = dict(window_size=window_size, ct_size=ct_size, hat=hat,
                         drop_path_rate=drop_path_rate)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if layer_scale != 'arch':
            settings['layer_scale'] = layer_scale
        self._check_settings(settings)
        self.arch_settings = settings
        self.out_indices = check_out_indices(out_indices, _NUM_STAGES, 'FasterViT')
        self.frozen_stages = check_frozen_stages(frozen_stages, _NUM_STAGES)
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.in_channels = in_channels

        dim = settings['dim']
        depths = settings['depths']
        self.num_features = [dim * 2**i for i in range(_NUM_STAGES)]
        self.patch_embed = Stem(in_channels, settings['in_dim'], dim)
        # On the CPU even under a meta-device context: the rates are Python numbers, not weights.
        rates = torch.linspace(0, settings['drop_path_rate'], sum(depths), device='cpu').tolist()
        # Stages after the last output are not built: they would hold weights that never run
        # (which DistributedDataParallel refuses without find_unused_parameters).
        last = max(self.out_indices)
        self.levels = nn.ModuleList()
        for i in range(last + 1):
            self.levels.append(
                FasterViTStage(
                    dim=self.num_features[i], depth=depths[i], num_heads=settings['num_heads'][i],
                    window_size=settings['window_size'][i], ct_size=settings['ct_size'],
                    conv=i < 2, hat=settings['hat'][i], downsample=i < last,
                    mlp_ratio=settings['mlp_ratio'],
                    drop_path=rates[sum(depths[:i]):sum(depths[:i + 1])],
                    layer_scale=settings['layer_scale'], propagation=settings['propagation'],
                    with_cp=with_cp, pos_embed_coords=pos_embed_coords,
                    pad_conv=self.pad_conv_stages))
        for i in self.out_indices:
            norm = build_output_norm(out_norm_cfg, self.num_features[i])
            self.add_module(f'out_norm{i}', norm)
        self.apply(self._init_module)
        self._register_load_state_dict_pre_hook(_drop_recomputable_entries, with_module=True)
        self._register_load_state_dict_pre_hook(drop_unbuilt_entries, with_module=True)
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _resolve_arch(arch) -> dict:
        if isinstance(arch, str):
            if arch not in FASTERVIT_ARCHS:
                raise ValueError(f'Unknown FasterViT arch {arch!r}; valid names: '
                                 f'{", ".join(repr(k) for k in FASTERVIT_ARCHS)}, or a dict with '
                                 f'the keys {", ".join(_ARCH_KEYS)}')
            return copy.deepcopy(FASTERVIT_ARCHS[arch])
        if isinstance(arch, dict):
            settings = copy.deepcopy(arch)
            missing = [k for k in _ARCH_KEYS if k not in settings]
            unknown = [k for k in settings if k not in _ARCH_KEYS]
            if missing or unknown:
                raise ValueError(f'FasterViT arch dict: missing keys {missing}, unknown keys '
                                 f'{unknown}; expected exactly {list(_ARCH_KEYS)}')
            return settings
        raise TypeError(f'arch must be a preset name or a dict, got {type(arch).__name__}')

    @staticmethod
    def _check_settings(s: dict):
        for key in ('depths', 'num_heads', 'window_size', 'hat'):
            value = s[key]
            if not isinstance(value, (list, tuple)) or len(value) != _NUM_STAGES:
                raise ValueError(f'{key} must list {_NUM_STAGES} values (one per stage), got {value!r}')
        s['window_size'] = [int(w) for w in s['window_size']]
        s['hat'] = [bool(h) for h in s['hat']]
        if any(w < 1 for w in s['window_size']):
            raise ValueError(f'window_size values must be >= 1, got {s["window_size"]}')
        if s['hat'][0] or s['hat'][1]:
            raise ValueError(f'hat={s["hat"]}: stages 1-2 are convolutional and cannot use '
                             'hierarchical attention; set hat[0] and hat[1] to False')
        if not isinstance(s['ct_size'], int) or s['ct_size'] < 1:
            raise ValueError(f'ct_size must be a positive int, got {s["ct_size"]!r}')
        for i in range(2, _NUM_STAGES):
            if s['hat'][i] and s['ct_size'] > s['window_size'][i]:
                raise ValueError(f'ct_size {s["ct_size"]} exceeds window_size[{i}]='
                                 f'{s["window_size"][i]}: a window cannot hold more carrier cells '
                                 'per side than it has pixels')

    @staticmethod
    def _init_module(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, LayerNorm2d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def is_unbuilt_key(self, key: str) -> bool:
        """Whether ``key`` (of a checkpoint of the whole backbone) belongs to a stage, or the
        last stage's downsample, that this instance did not build."""
        match = re.match(r'levels\.(\d+)\.(downsample\.)?', key)
        if match is None:
            return False
        index = int(match.group(1))
        return index >= len(self.levels) or (
            match.group(2) is not None and self.levels[index].downsample is None)

    # ------------------------------------------------------------------ training behaviour
    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze([self.patch_embed, *self.levels[:self.frozen_stages]])

    # ------------------------------------------------------------------ forward
    def forward(self, x):
        self._check_input(x)
        return tuple(self._run_stages(x, self.out_indices, len(self.levels) - 1)[0])

    def _run_stages(self, x, take, last: int):
        """Runs the stem and the stages up to ``last``; returns the maps of the stages in ``take``
        (stage order, each through its output norm), and the map stage ``last`` ends with."""
        # The convolutional part runs in channels-last memory order, which oneDNN and cuDNN
        # convolve faster and from which the windows of stages 3-4 are gathered with fewer strides.
        # Outputs are returned in the usual contiguous order for necks and compiled ops.
        x = x.contiguous(memory_format=torch.channels_last)
        x = run_checkpointed(self.patch_embed, x, enabled=self.with_cp)
        outs = []
        for i, level in enumerate(self.levels[:last + 1]):
            x = level(x)
            if i in take:
                out = run_checkpointed(getattr(self, f'out_norm{i}'), x, enabled=self.with_cp)
                outs.append(out.contiguous())
            if i < last and level.downsample is not None:
                x = run_checkpointed(level.downsample, x, enabled=self.with_cp)
        return outs, x


#: Buffers and aliases found in published checkpoints that this implementation recomputes or does
#: not have; every way of loading (init_cfg, load_from, resume, load_state_dict) drops them.
RECOMPUTABLE_SUFFIXES = ('relative_bias', 'relative_coords_table', 'relative_position_index')
_ALIAS_INFIX = 'global_tokenizer.to_global_feature.pos.'


def is_recomputable_key(key: str) -> bool:
    return key.endswith(RECOMPUTABLE_SUFFIXES) or _ALIAS_INFIX in key


def _drop_recomputable_entries(module, state_dict, prefix, *args, **kwargs):
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if is_recomputable_key(key[len(prefix):]):
            del state_dict[key]


# ---------------------------------------------------------------------- published checkpoints
_CLASSIFIER = ('head.', 'norm.')
#: Layers of hierarchical attention, which the 21K models were trained without.
_CARRIER_LAYERS = re.compile(r'\.(hat_[a-z_]+\d?|gamma1|gamma2|global_tokenizer)(\.|$)')


class FasterViTCheckpoints(CheckpointAdapter):
    """The official FasterViT checkpoints (``fastervit_*_224_1k.pth.tar``, ``fastervit_4_21k_*``).

    The kit keeps the published parameter names, so conversion drops the classifier (``head``, the
    final ``norm``) and everything the kit recomputes from the input (position-bias caches,
    coordinate and index tables, an alias of the carrier tokenizer's conv).
    """

    kind = 'fastervit'

    def convert(self, state_dict):
        return OrderedDict((k, v) for k, v in state_dict.items()
                           if not k.startswith(_CLASSIFIER) and not is_recomputable_key(k))

    def may_be_missing(self, key: str) -> bool:
        return super().may_be_missing(key) or _CARRIER_LAYERS.search(key) is not None

    @staticmethod
    def _signature(state_dict) -> Optional[tuple]:
        stem = state_dict.get('patch_embed.conv_down.3.weight')
        if stem is None:
            return None
        depths = []
        for level in range(_NUM_STAGES):
            blocks = {int(m.group(1)) for k in state_dict
                      for m in [re.match(rf'levels\.{level}\.blocks\.(\d+)\.', k)] if m}
            depths.append(max(blocks) + 1 if blocks else 0)
        heads = state_dict.get('levels.2.blocks.0.attn.pos_emb_funct.cpb_mlp.2.weight')
        num_heads = heads.shape[0] if heads is not None else None
        has_hat = any(k.startswith('levels.2.global_tokenizer.') for k in state_dict)
        return tuple(stem.shape[:2]), tuple(depths), num_heads, has_hat

    def guess_arch(self, state_dict) -> Optional[str]:
        """``'4'`` and the 21K models differ only in carrier-token layers, which tells them apart."""
        signature = self._signature(state_dict)
        if signature is None:
            return None
        (dim, in_dim), depths, num_heads, has_hat = signature
        for name, arch in FASTERVIT_ARCHS.items():
            if (arch['dim'], arch['in_dim']) == (dim, in_dim) and tuple(arch['depths']) == depths \
                    and (num_heads is None or arch['num_heads'][2] == num_heads) \
                    and arch['hat'][2] == has_hat:
                return name
        return None

    def build(self, arch: str, state_dict) -> 'FasterViT':
        return FasterViT(arch)


FasterViT.checkpoint_adapter = register_adapter(FasterViTCheckpoints())
FasterViT.published = FASTERVIT_WEIGHTS
