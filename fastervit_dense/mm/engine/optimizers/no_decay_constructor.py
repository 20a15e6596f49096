"""An optimizer-wrapper constructor whose no-weight-decay rules survive ``custom_keys``.

mmengine's ``DefaultOptimWrapperConstructor`` applies the first (longest) matching ``custom_keys``
entry and then ignores every other rule: with DINO's ``custom_keys={'backbone': dict(lr_mult=0.1)}``
the backbone's norms, position MLPs and layer scales silently get weight decay again. This
constructor runs the default one, then sets weight decay to zero for

* every parameter of a norm layer (BatchNorm, LayerNorm and its channel variant, GroupNorm), and
* every parameter whose name contains one of ``paramwise_cfg['no_decay_names']``,

keeping the learning rates the default rules chose.
"""
from typing import List

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

#: Position terms, carrier-token tokenizer and layer scales of the kit's backbones.
DEFAULT_NO_DECAY_NAMES = ('pos_embed', 'pos_emb_funct', 'pos_emb', 'global_tokenizer', 'gamma',
                          'layer_scale')
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
          nn.modules.instancenorm._InstanceNorm)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class NoDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg`` accepts the default keys plus ``no_decay_names`` (substrings of parameter
    names; default :data:`DEFAULT_NO_DECAY_NAMES`) and ``no_decay_norms`` (default True)."""

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.no_decay_names = tuple(paramwise_cfg.pop('no_decay_names', DEFAULT_NO_DECAY_NAMES))
        self.no_decay_norms = paramwise_cfg.pop('no_decay_norms', True)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def _no_decay_ids(self, module: nn.Module) -> set:
        ids = set()
        for module_name, child in module.named_modules():
            for name, param in child.named_parameters(recurse=False):
                full = f'{module_name}.{name}' if module_name else name
                if (self.no_decay_norms and isinstance(child, _NORMS)) or any(
                        key in full for key in self.no_decay_names):
                    ids.add(id(param))
        return ids

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs):
        super().add_params(params, module, prefix=prefix, **kwargs)
        if prefix == '' and self.base_wd is not None:  # once, after the whole model was walked
            no_decay = self._no_decay_ids(module)
            for group in params:
                if id(group['params'][0]) in no_decay:
                    group['weight_decay'] = 0.
