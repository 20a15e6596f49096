"""mmseg encoder-decoder segmentors: image -> ``seg_logits`` (1, C, H, W) at the image's size."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.export import make_exportable
from .preprocess import InGraphPreprocessor

__all__ = ['SegmentorExport']


class SegmentorExport(nn.Module):
    """What mmseg's ``EncoderDecoder`` computes in ``mode='whole'`` inference: decode head logits
    resized (bilinear, the head's ``align_corners``) to the padded input, the padding cut off.
    The wrapper works on its own copy of the segmentor, in which UperNet's adaptive pooling is
    swapped for the exact matrix form (:class:`~fastervit_dense.utils.export.MatrixAdaptiveAvgPool2d`)
    and mmseg's ``Upsample`` by a scale factor (Semantic FPN's head) for one whose output size is
    traced from the input instead of frozen as Python integers."""

    output_names = ('seg_logits',)

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        mode = (segmentor.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ValueError(f"exporting a segmentor with test_cfg.mode={mode!r} is not "
                             "supported: the exported model runs on the whole image; set "
                             "model.test_cfg=dict(mode='whole')")
        self.preprocess = InGraphPreprocessor(segmentor.data_preprocessor)
        self.segmentor = _trace_upsampling(make_exportable(copy.deepcopy(segmentor)))
        self.align_corners = bool(segmentor.decode_head.align_corners)

    def forward(self, image):
        x = self.preprocess(image)
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear',
                               align_corners=self.align_corners)
        return logits[:, :, :image.shape[2], :image.shape[3]]


class _TracedUpsample(nn.Module):
    """mmseg's ``Upsample`` (``size = int(side * scale_factor)``) with the size kept in the graph."""

    def __init__(self, upsample: nn.Module):
        super().__init__()
        self.scale_factor = float(upsample.scale_factor)
        self.mode = upsample.mode
        self.align_corners = upsample.align_corners

    def forward(self, x):
        size = [(side * self.scale_factor).floor().long() if torch.is_tensor(side)
                else int(side * self.scale_factor)
                for side in x.shape[-2:]]
        return F.interpolate(x, size=size, mode=self.mode, align_corners=self.align_corners)


def _trace_upsampling(module: nn.Module) -> nn.Module:
    from mmseg.models.utils import Upsample
    for name, child in list(module.named_children()):
        if isinstance(child, Upsample) and not child.size and child.scale_factor:
            setattr(module, name, _TracedUpsample(child))
        else:
            _trace_upsampling(child)
    return module
