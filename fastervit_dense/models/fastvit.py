"""FastViT (Vasu et al., "FastViT: A Fast Hybrid Vision Transformer using Structural
Reparameterization", arXiv 2303.14189) as a multi-scale backbone, built on timm's implementation.

The blocks are timm's (``timm.models.fastvit``); this module only selects the variant, runs the stem
and stages, returns each stage's output (for SA/MA variants the last output includes the stage-4
attention blocks) and adds the OpenMMLab backbone conventions. Module names follow timm (``stem.*``,
``stages.{i}.*``), so timm's ``fastvit_*`` weights load as they are.
"""
import functools
import re
from collections import OrderedDict
from types import SimpleNamespace
from typing import Dict, Optional, Sequence

import timm
import torch
from timm.models import get_arch_pretrained_cfgs
from timm.utils.model import reparameterize_model

from ..checkpoint import CheckpointAdapter, CheckpointError, register_adapter
from .base import (DenseBackbone, check_frozen_stages, check_out_indices, drop_unbuilt_entries,
                   freeze)
from .norms import build_output_norm

__all__ = ['FastViT', 'FASTVIT_ARCHS', 'FASTVIT_WEIGHTS']

#: The variants timm implements, with their settings (mci3 and mci4 add a stride-64 fifth stage).
FASTVIT_ARCHS: Dict[str, dict] = {
    **{arch: dict(num_stages=4) for arch in ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36',
                                              'mci0', 'mci1', 'mci2')},
    'mci3': dict(num_stages=5), 'mci4': dict(num_stages=5),
}


def _timm_published(arch: str) -> Dict[str, str]:
    """Tag -> hub id of ``fastvit_{arch}``'s weights, from timm's pretrained configurations."""
    cfgs = get_arch_pretrained_cfgs(f'fastvit_{arch}')
    return {name.split('.', 1)[1]: f'hf-hub:{cfg.hf_hub_id}' for name, cfg in cfgs.items()
            if cfg.hf_hub_id}


#: The published weights of each variant, by tag, as timm's pretrained configurations name them on
#: the Hugging Face hub; the first tag is the one ``FastViT(arch).load_pretrained()`` loads.
#: ImageNet for t8..ma36 (``apple_dist_in1k``: distilled); the mci variants are MobileCLIP image
#: towers, whose inputs are scaled to 0..1 without mean/std (mci3/mci4: OpenAI CLIP's mean and std).
FASTVIT_WEIGHTS: Dict[str, Dict[str, str]] = {arch: _timm_published(arch) for arch in FASTVIT_ARCHS}


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
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=SOURCE)``, loaded by
            :meth:`init_weights` (as OpenMMLab does) or directly with :meth:`load_pretrained`.
            SOURCE (a local path, an ``http(s)://`` URL or an ``hf-hub:`` id such as
            ``hf-hub:timm/fastvit_sa12.apple_in1k``) holds timm's ``fastvit_*`` weights, Apple's
            published files (fused or not) or converted ones. Optional keys: ``prefix``, ``sha256``,
            ``map_location``.
    """

    def __init__(self, arch: str = 'sa12', in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 drop_path_rate: float = 0.1, deploy: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch not in FASTVIT_ARCHS:
            raise ValueError(f'Unknown FastViT arch {arch!r}; valid names: '
                             f'{", ".join(repr(k) for k in FASTVIT_ARCHS)}')
        num_stages = FASTVIT_ARCHS[arch]['num_stages']
        self.arch = arch
        self.in_channels = in_channels
        self.out_indices = check_out_indices(out_indices, num_stages, f'FastViT-{arch}')
        self.frozen_stages = check_frozen_stages(frozen_stages, num_stages)
        self.norm_eval = norm_eval
        self.deploy = deploy

        # fork_feat builds the trunk without the classifier (final_conv, head); its per-output norms
        # are replaced by this module's own.
        trunk = timm.create_model(f'fastvit_{arch}', pretrained=False, in_chans=in_channels,
                                  fork_feat=True, drop_path_rate=drop_path_rate,
                                  inference_mode=deploy)
        self.stem = trunk.stem
        # Stages after the last output are not kept: they would hold weights that never run
        # (which DistributedDataParallel refuses without find_unused_parameters).
        self.stages = trunk.stages[:max(self.out_indices) + 1]
        self.num_features = [info['num_chs'] for info in trunk.feature_info]
        if with_cp:
            for stage in self.stages:
                stage.grad_checkpointing = True
        for i in self.out_indices:
            self.add_module(f'out_norm{i}', build_output_norm(out_norm_cfg, self.num_features[i]))
        self._register_load_state_dict_pre_hook(drop_unbuilt_entries, with_module=True)
        self._freeze_stages()

    def is_unbuilt_key(self, key: str) -> bool:
        """Whether ``key`` (of a checkpoint of the whole trunk) belongs to a stage this instance
        did not build."""
        match = re.match(r'stages\.(\d+)\.', key)
        return match is not None and int(match.group(1)) >= len(self.stages)

    def switch_to_deploy(self):
        """Fuses the train-time branches in place (outputs agree to float rounding)."""
        if not self.deploy:
            reparameterize_model(self, inplace=True)
            self.deploy = True
        return self

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            freeze([self.stem, *self.stages[:self.frozen_stages]])

    def forward(self, x):
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'out_norm{i}')(x))
        return tuple(outs)


# ---------------------------------------------------------------------- published checkpoints
_TRUNK = ('stem.', 'stages.')


@functools.lru_cache(maxsize=None)
def _trunk_shapes(arch: str, deploy: bool) -> Dict[str, tuple]:
    """Parameter shapes of a FastViT trunk, built without memory on the meta device where the
    installed timm allows it (timm 1.0.20 computes drop-path rates from a meta tensor there)."""
    def build():
        return timm.create_model(f'fastvit_{arch}', fork_feat=True, inference_mode=deploy)
    try:
        with torch.device('meta'):
            trunk = build()
    except NotImplementedError:
        trunk = build()
    return {k: tuple(v.shape) for k, v in trunk.state_dict().items() if k.startswith(_TRUNK)}


class FastViTCheckpoints(CheckpointAdapter):
    """timm's ``fastvit_*`` weights (``.pth``, ``.bin``, ``.safetensors``, hub ids), Apple's
    published files, fused (``_reparam``) or not, MobileCLIP image encoders, and converted files.

    The kit keeps timm's names. Apple's layout (``network.{k}``, ``patch_embed``, ...) goes through
    timm's own ``checkpoint_filter_fn``; fused Apple files need two renames it lacks. timm
    ``features_only`` names (``stem_0``, ``stages_3``) are unflattened.
    """

    kind = 'fastvit'

    def convert(self, state_dict):
        from timm.models.fastvit import checkpoint_filter_fn
        state_dict = OrderedDict(
            (re.sub(r'^(stem|stages)_(\d+)\.', r'\1.\2.', k), v) for k, v in state_dict.items())
        if not any(k.startswith(_TRUNK) for k in state_dict):
            # timm's filter reads ``model.head`` only for CLIP projections, which the backbone drops.
            state_dict = checkpoint_filter_fn(state_dict, SimpleNamespace(head=None))
            renamed = OrderedDict()
            for k, v in state_dict.items():
                k = k.replace('lkb_reparam', 'reparam_conv')
                # A fused positional conv sits directly under its ``network`` entry; timm's filter
                # files it with the stage's blocks.
                k = re.sub(r'^stages\.(\d+)\.blocks\.reparam_conv\.', r'stages.\1.pos_emb.reparam_conv.',
                           k)
                renamed[k] = v
            state_dict = renamed
        return OrderedDict((k, v) for k, v in state_dict.items() if k.startswith(_TRUNK))

    def is_fused(self, state_dict) -> bool:
        return any('reparam_conv' in k for k in state_dict)

    def prepare(self, model, state_dict, source: str) -> list:
        fused = self.is_fused(state_dict)
        if state_dict and fused != bool(model.deploy):
            raise CheckpointError(
                f'{source} holds {"fused" if fused else "unfused"} FastViT weights but the backbone '
                f'was built with deploy={model.deploy}: set deploy={fused} '
                '(fused weights are for inference only; train from unfused ones)')
        return []

    def guess_arch(self, state_dict) -> Optional[str]:
        ours = {k: tuple(v.shape) for k, v in state_dict.items()}
        for arch in FASTVIT_ARCHS:
            for deploy in (False, True):
                if _trunk_shapes(arch, deploy) == ours:
                    return arch + (' (fused)' if deploy else '')
        return None

    def build(self, arch: str, state_dict) -> 'FastViT':
        return FastViT(arch, deploy=self.is_fused(state_dict))


FastViT.checkpoint_adapter = register_adapter(FastViTCheckpoints())
FastViT.published = FASTVIT_WEIGHTS
