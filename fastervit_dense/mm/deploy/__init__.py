"""Whole detectors and segmentors to ONNX: one file, standard operators, any input size.

:func:`exportable` wraps a built (eval-mode) mmdet detector or mmseg segmentor into a module that
takes the image as mmcv loads it (``image`` float32 (1, 3, H, W), BGR, 0-255), does the config's
preprocessing in the graph (:mod:`.preprocess`) and returns plain tensors:

* detectors: ``dets`` (1, N, 5) = x1, y1, x2, y2, score in input pixels sorted by score,
  ``labels`` int64 (1, N), and for instance segmentation ``masks`` uint8 (1, N, H, W);
* segmentors: ``seg_logits`` (1, C, H, W) at the input's size.

What does not trace into standard ONNX operators with dynamic sizes (NMS, multi-level RoIAlign, mask
pasting, deformable attention, adaptive pooling) is rewritten in the wrappers of this package and
used only while exporting: training and mmdet/mmseg inference never run this code.
"""
import copy
from typing import List, Sequence

import torch
import torch.nn as nn

__all__ = ['build_for_export', 'load_weights', 'exportable', 'export_model', 'OPSET']

OPSET = 17


def exportable(model: nn.Module) -> nn.Module:
    """The export wrapper for ``model`` (put in eval mode, SyncBN reverted). An unfused FastViT
    backbone is exported fused: the wrapper fuses a copy, ``model`` keeps its train-time branches
    (the outputs agree to float rounding)."""
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model).eval()
    if getattr(model.backbone, 'deploy', True) is False:
        model = copy.deepcopy(model)
        model.backbone.switch_to_deploy()
    name = type(model).__name__
    if hasattr(model, 'decode_head'):
        from .segmentors import SegmentorExport
        return SegmentorExport(model).eval()
    if name == 'DINO' or hasattr(model, 'dn_query_generator'):
        from .dino import DINOExport
        return DINOExport(model).eval()
    if hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
        from .two_stage import TwoStageExport
        return TwoStageExport(model).eval()
    raise ValueError(f'exporting a whole {name} is not supported: the kit exports DINO, '
                     'Mask R-CNN, Cascade (Mask) R-CNN and mmseg encoder-decoder segmentors; '
                     'export the backbone alone with --what backbone')


def export_model(module: nn.Module, path, shape: Sequence[int] = (320, 480),
                 opset: int = OPSET) -> List[str]:
    """Traces ``module`` (an :func:`exportable` wrapper) on a random BGR image of ``shape`` and
    writes ``path`` with height, width and the number of detections dynamic."""
    from ...utils.export import torchscript_exporter
    names = list(module.output_names)
    axes = {'image': {2: 'height', 3: 'width'}}
    for name in names:
        axes[name] = {'seg_logits': {2: 'height', 3: 'width'},
                      'masks': {1: 'detections', 2: 'height', 3: 'width'}}.get(
                          name, {1: 'detections'})
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        torch.onnx.export(module, image, str(path), input_names=['image'], output_names=names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                          **torchscript_exporter())
    return names


def load_weights(model: nn.Module, checkpoint: str):
    """Loads a training checkpoint, or one whose FastViT backbone is already fused."""
    from ...checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file
    state = extract_state_dict(load_checkpoint_file(checkpoint))
    if set(state) != set(model.state_dict()) and hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()  # a fused checkpoint (reparameterize.py)
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f'{checkpoint} does not fit the model of the config: '
                              f'{len(missing)} missing keys (e.g. {missing[:3]}), '
                              f'{len(unexpected)} unexpected (e.g. {unexpected[:3]}); give the '
                              'checkpoint trained with this config')
    model.load_state_dict(state, strict=True)


def build_for_export(config: str, checkpoint=None) -> nn.Module:
    """The config's model in eval mode, FastViT fused, with ``checkpoint``'s weights or, without
    one, random weights (the config's initialisation without the backbone's pretrained file)."""
    from mmengine.model import revert_sync_batchnorm

    from ..runner import build_model, load_config
    cfg = load_config(config)
    if not checkpoint:  # random weights: nothing to download
        cfg.model.backbone.init_cfg = None
    model = revert_sync_batchnorm(build_model(cfg))
    if checkpoint:
        load_weights(model, checkpoint)
    else:
        model.init_weights()
    model.eval()
    if hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return model
