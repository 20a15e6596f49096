"""An exported model measured as users judge it: the config's test dataloader through the file, and
the config's own evaluator (COCO box and mask mAP, mmseg's IoU metric) on what it returns, beside
mmdet's / mmseg's own inference of the trained model when it is given.

Each image reaches every runtime as the test pipeline gives it (resized, BGR, 0-255, unpadded: the
file pads and normalises in its graph), one image at a time, and so does the framework's model:
in a batch of several, mmdet's and mmseg's data preprocessors pad every image to the batch's
largest, and a detector's features near the padded border, hence its detections, change with
what the image was batched with (the demo's detector: box mAP 0.542 in batches of 2, 0.546 one by
one). The file's outputs are then brought back to the original image as the framework does with
``rescale=True``: boxes divided by the pipeline's scale factor,
masks pasted from ``mask_probs`` into the original image with those boxes (mmdet's pasting and
threshold), segmentation logits resized (bilinear, the decode head's ``align_corners``) before the
argmax.
"""
import copy
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['evaluate_exported', 'detections_to_sample', 'logits_to_sample']


def detections_to_sample(outputs: Dict[str, np.ndarray], sample, mask_thr: float = 0.5):
    """A copy of ``sample`` (a DetDataSample of the test pipeline) whose ``pred_instances`` are the
    exported file's detections, in the original image's pixels (masks: ``mask_probs`` pasted
    there and cut at ``mask_thr``)."""
    from mmengine.structures import InstanceData

    from .ops import paste_masks
    dets = torch.from_numpy(np.asarray(outputs['dets'], np.float32)).reshape(-1, 5)
    scale_w, scale_h = sample.metainfo.get('scale_factor', (1.0, 1.0))
    instances = InstanceData()
    instances.bboxes = dets[:, :4] / dets.new_tensor([scale_w, scale_h, scale_w, scale_h])
    instances.scores = dets[:, 4]
    instances.labels = torch.from_numpy(np.asarray(outputs['labels'], np.int64)).reshape(-1)
    if 'mask_probs' in outputs:
        probs = torch.from_numpy(np.asarray(outputs['mask_probs'], np.float32))
        height, width = sample.metainfo['ori_shape'][:2]
        masks = torch.zeros(len(probs), height, width, dtype=torch.bool)
        for start in range(0, len(probs), 16):  # float masks of the whole image, 16 at a time
            chunk = slice(start, start + 16)
            masks[chunk] = paste_masks(probs[chunk, None], instances.bboxes[chunk],
                                       torch.tensor(height), torch.tensor(width)) >= mask_thr
        instances.masks = masks
    result = sample.clone()
    result.pred_instances = instances
    return result


def logits_to_sample(outputs: Dict[str, np.ndarray], sample, align_corners: bool = False):
    """A copy of ``sample`` (a SegDataSample) whose ``pred_sem_seg`` is the argmax of the exported
    logits resized to the original image, as mmseg's ``postprocess_result`` does."""
    from mmengine.structures import PixelData
    logits = torch.from_numpy(np.asarray(outputs['seg_logits'], np.float32))[None]
    height, width = sample.metainfo['ori_shape'][:2]
    if tuple(logits.shape[-2:]) != (height, width):
        logits = F.interpolate(logits, size=(height, width), mode='bilinear',
                               align_corners=align_corners)
    result = sample.clone()
    result.seg_logits = PixelData(data=logits[0])
    result.pred_sem_seg = PixelData(data=logits[0].argmax(0, keepdim=True))
    return result


def evaluate_exported(cfg, runtimes: Dict[str, Callable], model=None,
                      max_images: Optional[int] = None, progress: bool = True) -> Dict[str, dict]:
    """Runs ``cfg``'s test dataloader through each of ``runtimes`` (name -> an opened exported
    file, see :func:`~fastervit_dense.mm.deploy.runtimes.open_runtime`) and, when ``model`` (the
    built framework model in eval mode) is given, through its own ``test_step`` as 'PyTorch'.
    Each gets its own instance of ``cfg``'s test evaluator. Returns, per name, ``metrics`` (the
    evaluator's) and ``ms_per_image`` (the model's or the runtime's time, without data loading).
    ``max_images``: evaluate on the first images only (the metric is then of those)."""
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    from tqdm import tqdm

    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    loader_cfg.batch_size = 1  # as the exported file sees them (see the module's description)
    if max_images is not None:
        loader_cfg.dataset.indices = max_images
    loader = Runner.build_dataloader(loader_cfg)
    dataset = loader.dataset
    segmentation = cfg.default_scope == 'mmseg'
    align_corners = bool(cfg.model.get('decode_head', {}).get('align_corners', False)) \
        if segmentation else False
    rcnn = (cfg.model.get('test_cfg') or {}).get('rcnn') or {}
    mask_thr = float(rcnn.get('mask_thr_binary', 0.5))
    names = (['PyTorch'] if model is not None else []) + list(runtimes)
    evaluators, seconds = {}, {name: 0.0 for name in names}
    for name in names:
        evaluators[name] = Evaluator(copy.deepcopy(cfg.test_evaluator))
        evaluators[name].dataset_meta = dataset.metainfo
    images = 0
    for batch in tqdm(loader, desc='evaluating', unit='batch', disable=not progress,
                      leave=False):
        images += len(batch['inputs'])
        if model is not None:
            start = time.perf_counter()
            with torch.no_grad():
                outputs = model.test_step(batch)
            seconds['PyTorch'] += time.perf_counter() - start
            evaluators['PyTorch'].process(data_samples=outputs, data_batch=batch)
        for name, runtime in runtimes.items():
            samples = []
            for image, sample in zip(batch['inputs'], batch['data_samples']):
                start = time.perf_counter()
                outputs = runtime(image[None].float())
                seconds[name] += time.perf_counter() - start
                samples.append(logits_to_sample(outputs, sample, align_corners) if segmentation
                               else detections_to_sample(outputs, sample, mask_thr))
            evaluators[name].process(data_samples=samples, data_batch=batch)
    return {name: dict(metrics={k: float(v) for k, v in
                                evaluators[name].evaluate(len(dataset)).items()
                                if isinstance(v, (int, float, np.number))},
                       ms_per_image=1000 * seconds[name] / max(images, 1), images=images)
            for name in names}
