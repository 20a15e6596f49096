"""Whole detectors and segmentors to ONNX: one file, standard operators, any input size.

:func:`exportable` wraps a built (eval-mode) mmdet detector or mmseg segmentor into a module that
takes the image as mmcv loads it (``image`` float32 (1, 3, H, W), BGR, 0-255), does the config's
preprocessing in the graph (:mod:`.preprocess`) and returns plain tensors:

* detectors: ``dets`` (1, N, 5) = x1, y1, x2, y2, score in input pixels sorted by score,
  ``labels`` int64 (1, N), and for instance segmentation ``masks`` uint8 (1, N, H, W) and
  ``mask_probs`` float32 (1, N, 28, 28) (the probabilities in each box, to paste at another size);
* segmentors: ``seg_logits`` (1, C, H, W) at the input's size.

What does not trace into standard ONNX operators with dynamic sizes (NMS, multi-level RoIAlign, mask
pasting, box decoding) is rewritten in :mod:`.ops`, which the wrappers build on; they are used only
while exporting: training and mmdet/mmseg inference never run this code.

The wrapper is chosen by the model's class (:data:`WRAPPERS`): the first class in its method
resolution order that has one, so subclasses export as their family does. Exporting a new family
(a RetinaNet, say) is one new wrapper and one entry there (or :func:`register_wrapper`).
"""
import copy
import importlib
from typing import Dict, List, Sequence, Union

import torch
import torch.nn as nn

__all__ = ['build_for_export', 'load_weights', 'exportable', 'export_model', 'register_wrapper',
           'WRAPPERS', 'OPSET']

OPSET = 17

#: mmdet/mmseg model class name -> its export wrapper: a class, or ``'module:Class'`` in this
#: package, imported when first used.
WRAPPERS: Dict[str, Union[type, str]] = {
    'EncoderDecoder': '.segmentors:SegmentorExport',  # mmseg, CascadeEncoderDecoder too
    'DINO': '.dino:DINOExport',
    'TwoStageDetector': '.two_stage:TwoStageExport',  # Faster/Mask R-CNN, Cascade (Mask) R-CNN
}


def register_wrapper(model_class: str, wrapper: type) -> type:
    """Makes ``wrapper`` (a module taking the built model, with ``output_names``) the export
    wrapper of ``model_class`` and its subclasses that have none of their own. Returns it."""
    WRAPPERS[model_class] = wrapper
    return wrapper


def _wrapper_for(model: nn.Module) -> type:
    for cls in type(model).__mro__:
        wrapper = WRAPPERS.get(cls.__name__)
        if wrapper is not None:
            if isinstance(wrapper, str):
                module, _, name = wrapper.partition(':')
                wrapper = getattr(importlib.import_module(module, __name__), name)
            return wrapper
    raise ValueError(f'exporting a whole {type(model).__name__} is not supported: the kit exports '
                     'DINO, Mask R-CNN, Cascade (Mask) R-CNN and mmseg encoder-decoder '
                     'segmentors; export the backbone alone with --what backbone')


def exportable(model: nn.Module) -> nn.Module:
    """The export wrapper for ``model`` (put in eval mode, SyncBN reverted). An unfused FastViT
    backbone is exported fused: the wrapper fuses a copy, ``model`` keeps its train-time branches
    (the outputs agree to float rounding)."""
    from mmengine.model import revert_sync_batchnorm
    _wrapper_for(model)  # an unsupported model fails before anything is copied or fused
    model = revert_sync_batchnorm(model).eval()
    if getattr(model.backbone, 'deploy', True) is False:
        model = copy.deepcopy(model)
        model.backbone.switch_to_deploy()
    return _wrapper_for(model)(model).eval()


def export_model(module: nn.Module, path, shape: Sequence[int] = (320, 480),
                 opset: int = OPSET) -> List[str]:
    """Traces ``module`` (an :func:`exportable` wrapper) on a random BGR image of ``shape`` and
    writes ``path`` with height, width and the number of detections dynamic."""
    from ...utils.export import torchscript_exporter
    names = list(module.output_names)
    axes = {'image': {2: 'height', 3: 'width'}}
    for name in names:
        axes[name] = {'seg_logits': {2: 'height', 3: 'width'},
                      'masks': {1: 'detections', 2: 'height', 3: 'width'},
                      'mask_probs': {1: 'detections'}}.get(
                          name, {1: 'detections'})
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        torch.onnx.export(module, image, str(path), input_names=['image'], output_names=names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
                          **torchscript_exporter())
    return names


def load_weights(model: nn.Module, checkpoint: str):
    """Loads a training checkpoint, or one whose FastViT backbone is already fused, strictly."""
    from ..checkpoint import load_config_checkpoint
    load_config_checkpoint(model, checkpoint)


def build_for_export(config, checkpoint=None) -> nn.Module:
    """The model of ``config`` (a path or a loaded Config) in eval mode, FastViT fused, with
    ``checkpoint``'s weights or, without one, random weights (the config's initialisation without
    the backbone's pretrained file)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm

    from ..runner import build_model, load_config
    cfg = copy.deepcopy(config) if isinstance(config, Config) else load_config(config)
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
