"""The config's data preprocessing as part of the exported graph.

The exported model takes the image as mmcv loads it (float32 (1, 3, H, W), BGR, 0-255) and does
what mmdet's ``DetDataPreprocessor`` / mmseg's ``SegDataPreProcessor`` do at test time: channel
order, ``(x - mean) / std``, and padding (after normalisation, with the configured pad value) to
the size divisor. The padding is computed from the traced input size, so one graph serves every
size.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['InGraphPreprocessor']


class InGraphPreprocessor(nn.Module):
    """Test-time preprocessing of an mmdet/mmseg data preprocessor, traceable with dynamic sizes.

    ``forward(image)`` returns the batch the model's ``extract_feat`` expects; the image's own
    size (the ``img_shape`` of mmdet's and mmseg's metainfo) is ``image.shape[2:]``.
    """

    def __init__(self, data_preprocessor: nn.Module):
        super().__init__()
        # mmengine's ImgDataPreprocessor (mmdet) and mmseg's SegDataPreProcessor name these apart.
        self.bgr_to_rgb = bool(getattr(data_preprocessor, '_channel_conversion',
                                       getattr(data_preprocessor, 'channel_conversion', False)))
        normalize = bool(getattr(data_preprocessor, '_enable_normalize', False))
        mean = data_preprocessor.mean if normalize else torch.zeros(3, 1, 1)
        std = data_preprocessor.std if normalize else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().clone().float().view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', std.detach().clone().float().view(1, -1, 1, 1),
                             persistent=False)
        if hasattr(data_preprocessor, 'pad_size_divisor'):  # mmdet / mmengine
            self.size_divisor = int(data_preprocessor.pad_size_divisor or 1)
            self.pad_value = float(data_preprocessor.pad_value)
        else:  # mmseg pads at test time only when its test_cfg asks for it
            test_cfg = getattr(data_preprocessor, 'test_cfg', None) or {}
            if test_cfg.get('size') is not None:
                raise ValueError('exporting a segmentor whose data_preprocessor.test_cfg pads to a '
                                 'fixed size is not supported: the exported model follows the '
                                 'input size; drop test_cfg.size from the config')
            self.size_divisor = int(test_cfg.get('size_divisor') or 1)
            self.pad_value = float(getattr(data_preprocessor, 'pad_val', 0))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f'the exported model takes an image of shape (1, 3, H, W), got '
                             f'{tuple(image.shape)}')
        if self.bgr_to_rgb:
            image = image.flip(1)
        x = (image.float() - self.mean) / self.std
        if self.size_divisor > 1:
            height, width = x.shape[2], x.shape[3]
            divisor = self.size_divisor
            pad_h = (divisor - height % divisor) % divisor
            pad_w = (divisor - width % divisor) % divisor
            x = F.pad(x, [0, pad_w, 0, pad_h], value=self.pad_value)
        return x
