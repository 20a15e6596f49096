"""NVlabs' FasterViT DINO detectors converted into the mmdet DINO of a config.

The key mapping is the ``'dino'`` layout's adapter (:mod:`fastervit_dense.models.dino`, pure
torch); what this module adds is the one part that needs mmdet: the detector the converted weights
must fill, built from a config. ``tools/model_converters/dino2mm.py`` is the command line.
"""
import copy
import os
from typing import Optional

import torch

from ..converters import check_fits, convert_file
from ..models.dino import COCO_CATEGORY_IDS, DINOCheckpoints, convert_dino, is_dino_layout

__all__ = ['COCO_CATEGORY_IDS', 'convert_dino', 'is_dino_layout', 'config_target',
           'check_against_config', 'convert_dino_file']


def config_target(config):
    """``(name, state dict)`` of the detector of ``config`` (a path or an mmengine Config, left
    unchanged), built on the meta device: nothing is allocated and no weights are downloaded."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(config) if isinstance(config, (str, os.PathLike)) else copy.deepcopy(config)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        own = MODELS.build(cfg.model).state_dict()
    name = os.fspath(config) if isinstance(config, (str, os.PathLike)) else 'the config'
    return f'the detector of {name}', own


def check_against_config(state_dict, config):
    """Raises :class:`~fastervit_dense.checkpoint.CheckpointError` unless ``state_dict`` fills the
    detector of ``config`` exactly, key by key and shape by shape. Returns the fit report."""
    return check_fits(state_dict, DINOCheckpoints(), target=config_target(config))


def convert_dino_file(src, dst, config, sha256: Optional[str] = None) -> dict:
    """Reads a DINO checkpoint (a path, URL or ``hf-hub:`` id) with the kit's safe reader, converts
    it, checks it against ``config``'s detector, and writes ``{'state_dict', 'meta'}`` atomically
    (mmdet's ``load_from`` and ``tools/test.py`` read it). A failure leaves no ``dst``."""
    path = os.fspath(config) if isinstance(config, (str, os.PathLike)) else None
    return convert_file(src, dst, 'dino', sha256=sha256, target=config_target(config),
                        meta=dict(config=path, classes='COCO (80)'))
