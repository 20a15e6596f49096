"""What the kit's backbones share as OpenMMLab backbones: pretrained loading through ``init_cfg``,
``train()`` that keeps frozen stages and BatchNorm statistics as configured, input checks."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule


class DenseBackbone(BaseModule):
    """Subclasses set ``checkpoint_kind`` (a key of ``converters``), ``in_channels``,
    ``norm_eval`` and implement ``_freeze_stages``."""

    checkpoint_kind: str = ''

    def init_weights(self):
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained
            load_pretrained(self, self.init_cfg['checkpoint'], kind=self.checkpoint_kind,
                            prefix=self.init_cfg.get('prefix'),
                            map_location=self.init_cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def _freeze_stages(self):
        raise NotImplementedError

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _check_input(self, x):
        name = type(self).__name__
        expected = f'(B, {self.in_channels}, H, W)'
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{name} expects a torch.Tensor of shape {expected}, got '
                            f'{type(x).__name__}')
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'{name} expects input of shape {expected}, got {tuple(x.shape)}')
        if not x.is_floating_point():
            raise TypeError(f'{name} expects a floating-point input of shape {expected}, got dtype '
                            f'{x.dtype}; convert it with .float()')
