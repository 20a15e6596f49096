"""Registers the kit's backbones in mmdetection's and mmsegmentation's MODELS registries.

Configs reach them with ``custom_imports=dict(imports=['fastervit_dense'], allow_failed_imports=False)``
and ``backbone=dict(type='FasterViT', ...)`` or ``dict(type='FastViT', ...)``.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

REGISTRIES = (MMDET_MODELS, MMSEG_MODELS)


def register_backbones(*classes):
    for registry in REGISTRIES:
        for cls in classes:
            if registry.module_dict.get(cls.__name__) is not cls:
                registry.register_module(module=cls, force=True)
