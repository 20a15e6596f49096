"""The kit's backbones with a feature pyramid, in the form torchvision's detection models take.

``torchvision.models.detection`` (``MaskRCNN``, ``FasterRCNN``, ``KeypointRCNN``, ``RetinaNet``,
``FCOS``) takes any module with an ``out_channels`` attribute whose forward returns an ordered dict
of maps. :func:`fpn_backbone` builds one from FasterViT or FastViT::

    from torchvision.models.detection import MaskRCNN
    from fastervit_dense.detection import fpn_backbone

    model = MaskRCNN(fpn_backbone('fastervit-2', pretrained=True), num_classes=91)

The maps are named ``'0'``, ``'1'``, ... in stage order, plus what ``extra_blocks`` adds (``'pool'``
for the default max-pool level): the names torchvision's RoI poolers and anchor generators expect.
Both backbones run at any input size; torchvision's own transform pads each batch to a multiple of
32.
"""
from collections import OrderedDict
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
from torchvision.ops.feature_pyramid_network import (ExtraFPNBlock, FeaturePyramidNetwork,
                                                     LastLevelMaxPool)

from .models import backbone_class

__all__ = ['FPNBackbone', 'fpn_backbone']


class FPNBackbone(nn.Module):
    """``body`` (a kit backbone) followed by torchvision's :class:`FeaturePyramidNetwork`, with
    ``out_channels``, as :class:`torchvision.models.detection.backbone_utils.BackboneWithFPN`."""

    def __init__(self, body: nn.Module, out_channels: int = 256,
                 extra_blocks: Optional[ExtraFPNBlock] = None,
                 norm_layer: Optional[Callable[..., nn.Module]] = None):
        super().__init__()
        if not hasattr(body, 'out_indices') or not hasattr(body, 'num_features'):
            raise TypeError(f'FPNBackbone needs one of the kit\'s backbones (FasterViT or FastViT), '
                            f'got {type(body).__name__}')
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            [body.num_features[i] for i in sorted(body.out_indices)], out_channels,
            extra_blocks=LastLevelMaxPool() if extra_blocks is None else extra_blocks,
            norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> 'OrderedDict[str, torch.Tensor]':
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def fpn_backbone(backbone: Union[str, nn.Module] = 'fastervit-0', out_channels: int = 256,
                 extra_blocks: Optional[ExtraFPNBlock] = None,
                 norm_layer: Optional[Callable[..., nn.Module]] = None, pretrained=False,
                 **backbone_kwargs) -> FPNBackbone:
    """A kit backbone with an FPN for torchvision's detection models.

    Args:
        backbone: A built :class:`~fastervit_dense.FasterViT` / :class:`~fastervit_dense.FastViT`,
            or a name: ``'fastervit-ARCH'`` (``'fastervit-2'``, ``'fastervit-4-21k-224'``) or
            ``'fastvit-ARCH'`` (``'fastvit-sa12'``).
        out_channels: Channels of every pyramid level.
        extra_blocks: torchvision's extra levels; default :class:`LastLevelMaxPool` (the
            ``'pool'`` level of the R-CNN models). RetinaNet and FCOS use
            ``LastLevelP6P7(out_channels, out_channels)`` over ``out_indices=(1, 2, 3)``.
        norm_layer: Norm inside the FPN's convolutions (torchvision's argument).
        pretrained: With a name: ``True`` loads the preset's published ImageNet weights, a string
            loads that source (a path, an ``http(s)://`` URL, an ``hf-hub:`` id).
        **backbone_kwargs: The backbone's own options (``out_indices``, ``frozen_stages``,
            ``norm_eval``, ``with_cp``, ``drop_path_rate``, ...), with a name.
    """
    if isinstance(backbone, str):
        cls, arch = backbone_class(backbone)
        backbone = cls(arch, **backbone_kwargs)
        if pretrained:
            backbone.load_pretrained(None if pretrained is True else pretrained)
    elif backbone_kwargs or pretrained:
        raise TypeError('backbone options and pretrained apply to a backbone given by name; a '
                        'built backbone is used as it is')
    return FPNBackbone(backbone, out_channels, extra_blocks, norm_layer)
