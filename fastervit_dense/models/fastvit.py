"""FastViT (Vasu et al., "FastViT: A Fast Hybrid Vision Transformer using Structural
Reparameterization", arXiv 2303.14189) as a multi-scale backbone, built on timm's implementation.

The blocks are timm's (``timm.models.fastvit``); this module only selects the variant, runs the stem
and stages, returns each stage's output (for SA/MA variants the last output includes the stage-4
attention blocks) and adds the OpenMMLab backbone conventions. Module names follow timm (``stem.*``,
``stages.{i}.*``), so timm's ``fastvit_*`` weights load as they are.
"""
from typing import Optional, Sequence

import timm
from timm.utils.model import reparameterize_model

from .base import DenseBackbone
from .norms import build_output_norm

__all__ = ['FastViT', 'FASTVIT_ARCHS']

#: Variant -> number of stages (mci3 and mci4 add a stride-64 fifth stage).
FASTVIT_ARCHS = {
    't8': 4, 't12': 4, 's12': 4, 'sa12': 4, 'sa24': 4, 'sa36': 4, 'ma36': 4, 'mci0': 4, 'mci1': 4,
    'mci2': 4, 'mci3': 5, 'mci4': 5
}


class FastViT(DenseBackbone):
    """FastViT backbone on timm, at any input size.

    Args:
        arch (str): ``'t8'``, ``'t12'``, ``'s12'``, ``'sa12'``, ``'sa24'``, ``'sa36'``, ``'ma36'``,
            ``'mci0'``..``'mci4'``. Default: ``'sa12'``.
        in_channels (int): Input channels. Default: 3.
        out_indices (Sequence[int]): Stages to return, strides 4/8/16/32 (and 64 for index 4 of
            mci3/mci4). Default: ``(0, 1, 2, 3)``.
        out_norm_cfg (dict, optional): Norm on each output; ``None`` returns raw stage features.
            Default: ``dict(type='LN2d', eps=1e-6)``.
        frozen_stages (int): -1 nothing, 0 the stem, ``k`` the stem and the first ``k`` stages.
            Re-applied by :meth:`train`. Default: -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training. Default: False.
        with_cp (bool): Gradient checkpointing inside each stage. Default: False.
        drop_path_rate (float): Stochastic depth rate. Default: 0.1.
        deploy (bool): Build the fused (reparameterized) structure for inference; it loads fused
            weights. Default: False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` accepts timm's
            ``fastvit_*`` weights, Apple's published files (fused or not) and converted ones.
    """

    checkpoint_kind = 'fastvit'

    def __init__(self, arch: str = 'sa12', in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 drop_path_rate: float = 0.1, deploy: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch not in FASTVIT_ARCHS:
            raise ValueError(f'Unknown FastViT arch {arch!r}; valid names: '
                             f'{", ".join(repr(k) for k in FASTVIT_ARCHS)}')
        num_stages = FASTVIT_ARCHS[arch]
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < num_stages]
        if not out_indices or bad or len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices must be distinct stage indices in 0..{num_stages - 1} for '
                             f'FastViT-{arch}, got {out_indices}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {num_stages}], got '
                             f'{frozen_stages!r}')
        self.arch = arch
        self.in_channels = in_channels
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = deploy

        # fork_feat builds the trunk without the classifier (final_conv, head); its per-output norms
        # are replaced by this module's own.
        trunk = timm.create_model(f'fastvit_{arch}', pretrained=False, in_chans=in_channels,
                                  fork_feat=True, drop_path_rate=drop_path_rate,
                                  inference_mode=deploy)
        self.stem = trunk.stem
        self.stages = trunk.stages
        self.num_features = [info['num_chs'] for info in trunk.feature_info]
        if with_cp:
            for stage in self.stages:
                stage.grad_checkpointing = True
        for i in out_indices:
            self.add_module(f'out_norm{i}', build_output_norm(out_norm_cfg, self.num_features[i]))
        self._freeze_stages()

    def switch_to_deploy(self):
        """Fuses the train-time branches in place (outputs agree to float rounding)."""
        if not self.deploy:
            reparameterize_model(self, inplace=True)
            self.deploy = True
        return self

    def _freeze_stages(self):
        modules = []
        if self.frozen_stages >= 0:
            modules.append(self.stem)
        modules.extend(self.stages[:max(self.frozen_stages, 0)])
        for module in modules:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def forward(self, x):
        self._check_input(x)
        x = self.stem(x)
        outs = []
        last = max(self.out_indices)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'out_norm{i}')(x))
            if i == last:
                break
        return tuple(outs)
