"""What the kit's backbones share: argument checks, ``train()`` that keeps frozen stages and
BatchNorm statistics as configured, input checks, and pretrained loading.

The backbones are plain ``torch.nn.Module``s. They also follow the conventions OpenMMLab's
registries and runners expect of a backbone (``init_cfg``, ``init_weights()``, ``is_init``), so the
OpenMMLab layer (:mod:`fastervit_dense.mm`) registers these same classes without wrapping them.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..checkpoint import CheckpointAdapter, load_pretrained


def check_out_indices(out_indices, num_stages: int, name: str) -> tuple:
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    out_indices = tuple(out_indices)
    bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < num_stages]
    if not out_indices or bad or len(set(out_indices)) != len(out_indices):
        raise ValueError(f'out_indices must be distinct stage indices in 0..{num_stages - 1} for '
                         f'{name}, got {out_indices}')
    return out_indices


def check_frozen_stages(frozen_stages, num_stages: int) -> int:
    if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages must be an int in [-1, {num_stages}], got '
                         f'{frozen_stages!r}')
    return frozen_stages


def drop_unbuilt_entries(module, state_dict, prefix, *args, **kwargs):
    """``load_state_dict`` pre-hook: drops the weights of stages the backbone did not build
    (those after its last output), so that checkpoints of whole backbones, earlier versions'
    included, load strictly into one built with fewer stages."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if module.is_unbuilt_key(key[len(prefix):]):
            del state_dict[key]


def freeze(modules: Sequence[nn.Module]):
    for module in modules:
        module.eval()
        for p in module.parameters():
            p.requires_grad = False


class DenseBackbone(nn.Module):
    """Subclasses set ``checkpoint_adapter``, ``in_channels``, ``norm_eval`` and implement
    ``_freeze_stages``.

    ``init_cfg=dict(type='Pretrained', checkpoint=SOURCE, prefix=None, map_location='cpu',
    sha256=None)`` is read by :meth:`init_weights`, as in OpenMMLab; ``load_pretrained(SOURCE)`` does
    the same directly. SOURCE is a local path, an ``http(s)://`` URL or an ``hf-hub:`` id.
    """

    checkpoint_adapter: CheckpointAdapter = CheckpointAdapter()
    _INIT_KEYS = ('type', 'checkpoint', 'prefix', 'map_location', 'sha256', 'use_ema')

    def __init__(self, init_cfg: Optional[dict] = None):
        super().__init__()
        if init_cfg is not None:
            self._check_init_cfg(init_cfg)
        self.init_cfg = init_cfg
        self._is_init = False

    def _check_init_cfg(self, init_cfg):
        name = type(self).__name__
        if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
            raise ValueError(f'{name} init_cfg must be None or dict(type="Pretrained", '
                             f'checkpoint=...), got {init_cfg!r}: the backbone initialises its own '
                             'weights when built')
        unknown = sorted(set(init_cfg) - set(self._INIT_KEYS))
        if 'checkpoint' not in init_cfg or unknown:
            raise ValueError(f'{name} init_cfg={init_cfg!r}: needs "checkpoint"; accepted keys: '
                             f'{", ".join(self._INIT_KEYS)}' + (f' (unknown: {unknown})' if unknown
                                                               else ''))

    @property
    def is_init(self) -> bool:
        return self._is_init

    def init_weights(self):
        """Loads the ``Pretrained`` weights of ``init_cfg`` (weights are otherwise initialised when
        the backbone is built)."""
        if self.init_cfg is not None:
            cfg = {k: v for k, v in self.init_cfg.items() if k not in ('type', 'checkpoint')}
            self.load_pretrained(self.init_cfg['checkpoint'], **cfg)
        self._is_init = True

    #: Preset -> {tag: source} of its published weights (the first tag is the default).
    published: Dict[str, Dict[str, str]] = {}

    @classmethod
    def published_weights(cls, arch: str, tag: Optional[str] = None) -> str:
        """The source (URL or hub id) of preset ``arch``'s published weights: those of ``tag``
        (one of ``published[arch]``), by default the first."""
        name = cls.__name__
        if arch not in cls.published:
            raise ValueError(f'no published weights for {name} arch {arch!r}; published: '
                             f'{", ".join(cls.published)}')
        tags = cls.published[arch]
        tag = next(iter(tags)) if tag is None else tag
        if tag not in tags:
            raise ValueError(f'no published weights {tag!r} for {name}-{arch}; published: '
                             f'{", ".join(tags)}')
        return tags[tag]

    def load_pretrained(self, source=None, prefix: Optional[str] = None, map_location='cpu',
                        use_ema: bool = False, sha256: Optional[str] = None) -> dict:
        """Loads published or converted weights (see :func:`fastervit_dense.checkpoint.
        load_pretrained`) and returns the loading report: ``loaded`` (count), ``missing`` and
        ``unexpected`` (key lists), ``path`` (the local file read). Without ``source``, the
        published ImageNet weights of the backbone's preset (``published_weights(arch)``),
        downloaded once into their cache."""
        if source is None:
            if not isinstance(getattr(self, 'arch', None), str):
                raise ValueError(f'{type(self).__name__} built from a custom arch has no published '
                                 'weights: name a checkpoint source')
            source = self.published_weights(self.arch)
        return load_pretrained(self, source, prefix=prefix, map_location=map_location,
                               use_ema=use_ema, sha256=sha256)

    def is_unbuilt_key(self, key: str) -> bool:
        """Whether a weight of the whole backbone belongs to a stage this instance did not build
        (stages after the last of ``out_indices`` are not)."""
        return False

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
