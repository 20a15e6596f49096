"""FasterViT as a timm model: ``timm.create_model('fastervit_dense_2', pretrained=True)``.

timm has no FasterViT of its own, so every library that takes a timm backbone by name
(segmentation_models_pytorch's ``tu-`` encoders, Hugging Face transformers' ``TimmBackbone``, ...)
cannot use it. Importing :mod:`fastervit_dense` registers the kit's FasterViT with timm under names
that start with ``fastervit_dense_`` (neither timm's own names nor the official package's
``faster_vit_*`` can clash with them):

==============================  ==========  ======================================================
timm name                       preset      published weights (pretrained tag)
==============================  ==========  ======================================================
``fastervit_dense_0`` .. ``_6``  ``'0'``..``'6'``  ``fastervit_{i}_224_1k.pth.tar`` (``in1k``)
``fastervit_dense_4_21k_224``   ``'4-21k-224'``  ``fastervit_4_21k_224_w14.pth.tar`` (``in21k_ft_in1k``)
``fastervit_dense_4_21k_384``   ``'4-21k-384'``  ``fastervit_4_21k_384_w24.pth.tar`` (``in21k_ft_in1k``)
``fastervit_dense_4_21k_512``   ``'4-21k-512'``  ``fastervit_4_21k_512_w32.pth.tar`` (``in21k_ft_in1k``)
``fastervit_dense_4_21k_768``   ``'4-21k-768'``  ``fastervit_4_21k_768_w48.pth.tar`` (``in21k_ft_in1k``)
==============================  ==========  ======================================================

The classifier follows timm's conventions (``num_classes``, ``global_pool``, ``drop_rate``,
``reset_classifier``, ``forward_features``, ``forward_head``, ``forward_intermediates``,
``set_grad_checkpointing``); ``features_only=True`` gives the stage maps (strides 4/8/16/32) at any
input size, the same maps as :class:`~fastervit_dense.FasterViT` with ``out_norm_cfg=None``, and
builds only the stages up to the last one requested. Published weights are downloaded by the kit
(:mod:`fastervit_dense.hub`: one cached copy, checked) and read without unpickling code
(:func:`fastervit_dense.checkpoint.load_checkpoint_file`), whatever source the pretrained
configuration names (``url``, ``file``, ``hf_hub_id``); mean, std, input size and crop are those
the official models were evaluated with.
"""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d
from timm.models import (adapt_input_conv, build_model_with_cfg, generate_default_cfgs, is_model,
                         model_entrypoint, register_model, resolve_pretrained_cfg)
# the one helper timm exports under no public name; timm's own models import it from here
from timm.models._features import feature_take_indices

from ..checkpoint import register_adapter
from .fastervit import FasterViT, FasterViTCheckpoints, _NUM_STAGES, is_recomputable_key

__all__ = ['FasterViTClassifier', 'TIMM_NAMES', 'TIMM_PREFIX', 'register_timm_models']

logger = logging.getLogger('fastervit_dense')

TIMM_PREFIX = 'fastervit_dense_'
#: timm model name -> the kit's FasterViT preset.
TIMM_NAMES: Dict[str, str] = {
    **{f'{TIMM_PREFIX}{i}': str(i) for i in range(7)},
    **{f'{TIMM_PREFIX}4_21k_{size}': f'4-21k-{size}' for size in (224, 384, 512, 768)},
}
_FIRST_CONV = 'patch_embed.conv_down.0'
_CLASSIFIER = 'head'


class FasterViTClassifierCheckpoints(FasterViTCheckpoints):
    """The official checkpoints as they are, classifier included: only what the kit recomputes
    (position-bias caches, coordinate tables, an alias) is dropped. They load as timm loads
    pretrained weights: the head only where its class count matches (otherwise left as
    initialised), the first convolution adapted when ``in_chans`` is not 3, and every other tensor
    strictly."""

    kind = 'fastervit_classifier'
    unexpected_ok = False

    def convert(self, state_dict):
        return type(state_dict)((k, v) for k, v in state_dict.items()
                                if not is_recomputable_key(k))

    def may_be_missing(self, key: str) -> bool:
        """The head too: without it (or with another class count) it stays as initialised."""
        return super().may_be_missing(key) or key.startswith(f'{_CLASSIFIER}.')

    def may_skip(self, model, key: str) -> bool:
        """Weights of what a features-only model pruned, and BatchNorm counters where a library
        swapped in frozen BatchNorms."""
        return key.endswith('num_batches_tracked') or model._pruned(key)

    def prepare(self, model, state_dict, source: str) -> list:
        own = model.state_dict()
        weight = f'{_FIRST_CONV}.weight'
        if weight in state_dict and weight in own and state_dict[weight].shape[1] != model.in_chans:
            state_dict[weight] = adapt_input_conv(model.in_chans, state_dict[weight])
        head = [k for k in (f'{_CLASSIFIER}.weight', f'{_CLASSIFIER}.bias') if k in state_dict
                and (k not in own or own[k].shape != state_dict[k].shape)]
        for key in head:
            del state_dict[key]
        return head


class FasterViTClassifier(FasterViT):
    """The ImageNet classifier of FasterViT, with timm's model interface, at any input size.

    The stages are :class:`~fastervit_dense.FasterViT`'s; the classifier is the published one (a
    BatchNorm over the last stage, ``norm``, global pooling, a linear ``head``), so the official
    checkpoints load key for key.

    Two names follow timm's classifier convention, which libraries that take a timm model read:
    ``num_features`` is the width of the pooled features (an int, the last stage's), where the
    backbone's lists every stage's width (here in ``feature_info``); and the input channels are
    ``in_chans``, the backbone's (and OpenMMLab's) ``in_channels``.

    Args:
        arch (str | dict): A preset of :data:`~fastervit_dense.FASTERVIT_ARCHS` or a settings dict.
        num_classes (int): Classes of the head; 0 for none (``forward`` returns pooled features).
        in_chans (int): Input channels (the backbone's ``in_channels``).
        global_pool (str): timm's pooling type (``'avg'``, ``'max'``, ``'avgmax'``, ``'catavgmax'``)
            or ``''`` for none.
        drop_rate (float): Dropout before the head.
        output_stride (int): Only 32, the stride the architecture has; accepted so that libraries
            that pass it (``TimmBackbone``) can.
        **kwargs: :class:`~fastervit_dense.FasterViT`'s own options (``drop_path_rate``,
            ``window_size``, ``hat``, ``with_cp``, ...).
    """

    checkpoint_adapter = register_adapter(FasterViTClassifierCheckpoints())

    def __init__(self, arch: Union[str, dict] = '0', num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = 'avg', drop_rate: float = 0., output_stride: int = 32,
                 **kwargs):
        if output_stride != 32:
            raise ValueError(f'FasterViT has output stride 32 only, got output_stride='
                             f'{output_stride!r}: its stages downsample with strided convolutions '
                             'and have no dilated form; leave output_stride unset (or 32)')
        for key in ('out_indices', 'out_norm_cfg', 'in_channels'):
            if key in kwargs:
                raise TypeError(f'FasterViTClassifier got {key}={kwargs[key]!r}: the classifier '
                                "returns logits; for stage maps use timm's features_only=True "
                                "with out_indices (or fastervit_dense.FasterViT), and in_chans "
                                'for the input channels')
        super().__init__(arch, in_channels=in_chans, out_indices=tuple(range(_NUM_STAGES)),
                         out_norm_cfg=None, **kwargs)
        channels = list(self.num_features)
        self.feature_info = [dict(num_chs=c, reduction=2**(i + 2), module=f'levels.{i}')
                             for i, c in enumerate(channels)]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = channels[-1]
        self.norm = nn.BatchNorm2d(self.num_features)
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._new_head(num_classes)

    def _new_head(self, num_classes: int) -> nn.Module:
        features = self.num_features * self.global_pool.feat_mult()
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(features, num_classes)
        self._init_module(head)
        return head

    # ------------------------------------------------------------------ timm's classifier API
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head = self._new_head(num_classes)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.with_cp = enable
        for level in self.levels:
            level.with_cp = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r'^patch_embed', blocks=r'^levels\.(\d+)')

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set:
        return {'rpb'}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map after the classifier's BatchNorm, (B, C, H/32, W/32)."""
        self._check_input(x)
        return self.norm(self._run_stages(x, (), len(self.levels) - 1)[1])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = 'NCHW', intermediates_only: bool = False):
        """timm's feature API: the maps of the stages ``indices`` names (an int: the last n), in
        stage order; with ``norm`` the last stage's map passes the classifier's BatchNorm. Returns
        them alone (``intermediates_only``) or ``(final features, maps)``."""
        if output_fmt != 'NCHW':
            raise ValueError(f"FasterViT gives NCHW maps only, got output_fmt={output_fmt!r}")
        self._check_input(x)
        take, max_index = feature_take_indices(len(self.levels), indices)
        last = max_index if (stop_early or intermediates_only) else len(self.levels) - 1
        maps, x = self._run_stages(x, take, last)
        if norm and len(self.levels) - 1 in take:
            maps[-1] = self.norm(maps[-1])
        if intermediates_only:
            return maps
        return self.norm(x), maps

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Removes the stages after the last of ``indices`` (and the head, the norm), so a
        features-only model holds no weight it does not run. Returns the absolute indices."""
        take, max_index = feature_take_indices(len(self.levels), indices)
        self.levels = self.levels[:max_index + 1]
        self.levels[-1].downsample = None
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take

    def _pruned(self, key: str) -> bool:
        """Whether ``key`` belongs to a part :meth:`prune_intermediate_layers` removed."""
        return self.is_unbuilt_key(key) or (key.startswith('norm.')
                                            and isinstance(self.norm, nn.Identity))


# ---------------------------------------------------------------------- registration with timm
def _cfg(url: str, **kwargs) -> dict:
    # custom_load: timm hands the file to FasterViTClassifier.load_pretrained (the kit's reader).
    return dict(dict(url=url, custom_load=True, num_classes=1000, input_size=(3, 224, 224),
                     pool_size=(7, 7), crop_pct=1.0, crop_mode='center', interpolation='bicubic',
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     first_conv=_FIRST_CONV, classifier=_CLASSIFIER,
                     license='nvidia-source-code-license-nc',
                     origin_url='https://github.com/NVlabs/FasterViT',
                     paper_ids='arXiv:2306.06189'), **kwargs)


def _default_cfgs():
    # Input size, crop and interpolation as the official package evaluates each published model.
    cfgs = {f'{TIMM_PREFIX}{i}.in1k': _cfg(FasterViT.published_weights(str(i)),
                                            crop_pct=0.875 if i == 0 else 1.0) for i in range(7)}
    for size, crop in ((224, 0.95), (384, 1.0), (512, 1.0), (768, 0.93)):
        cfgs[f'{TIMM_PREFIX}4_21k_{size}.in21k_ft_in1k'] = _cfg(
            FasterViT.published_weights(f'4-21k-{size}'), input_size=(3, size, size),
            pool_size=(size // 32, size // 32), crop_pct=crop, crop_mode='squash')
    return generate_default_cfgs(cfgs)


#: Read by timm's ``register_model`` from this module: the pretrained configurations by name.tag.
default_cfgs = _default_cfgs()


def _pretrained_source(cfg: dict) -> Optional[str]:
    """The source the kit reads for a resolved pretrained configuration, in timm's order of
    precedence (``file``, then ``hf_hub_id``, then ``url``)."""
    if cfg.get('file'):
        return cfg['file']
    if cfg.get('hf_hub_id') and (cfg.get('source') == 'hf-hub' or not cfg.get('url')):
        filename = cfg.get('hf_hub_filename')
        return f'hf-hub:{cfg["hf_hub_id"]}' + (f'/{filename}' if filename else '')
    return cfg.get('url') or None


def _create(variant: str, pretrained: bool = False, **kwargs) -> FasterViTClassifier:
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                     pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
        cfg = cfg.to_dict()
        if cfg.get('state_dict') is None:
            source = _pretrained_source(cfg)
            if source is None:
                raise RuntimeError(f'{variant}: its pretrained configuration names no weights '
                                   '(url, file or hf_hub_id)')
            # timm's loading hands a 'file' with custom_load to FasterViTClassifier.load_pretrained
            # as it is: the kit resolves the source there (downloaded once into its cache, checked)
            # and reads it without unpickling code, whatever the configuration names.
            overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
            overlay.update(file=source, custom_load=True)
            kwargs['pretrained_cfg_overlay'] = overlay
    return build_model_with_cfg(
        FasterViTClassifier, variant, pretrained, arch=TIMM_NAMES[variant],
        feature_cfg=dict(feature_cls='getter', out_indices=tuple(range(_NUM_STAGES))), **kwargs)


def _entrypoint(variant: str):
    def create(pretrained: bool = False, **kwargs) -> FasterViTClassifier:
        return _create(variant, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = variant
    create.__module__ = __name__
    create.__doc__ = (f'FasterViT preset {TIMM_NAMES[variant]!r} as a timm model (see '
                      f':mod:`{__name__}`).')
    return create


def register_timm_models() -> List[str]:
    """Registers every name of :data:`TIMM_NAMES` with timm, once; refuses to replace a model of
    another origin registered under one of these names. Returns the names."""
    for variant in TIMM_NAMES:
        if is_model(variant):
            if getattr(model_entrypoint(variant), '__module__', None) != __name__:
                raise RuntimeError(f'timm already has a model named {variant!r} that is not the '
                                   "kit's; the kit will not replace it")
            continue
        register_model(_entrypoint(variant))
    return list(TIMM_NAMES)
