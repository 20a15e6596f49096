"""Drawn test predictions that keep the images' own subfolders and names.

mmdet's ``DetVisualizationHook`` saves each drawing under the image's base name (``a/img.jpg`` and
``b/img.jpg`` overwrite each other) and mmseg's names them ``test_<name>_<step>.png`` under
``vis_data/vis_image``. :class:`DrawPredictionsHook` writes the drawing of ``<image folder>/a/img.jpg``
to ``<out_dir>/a/img.jpg`` for either framework (the image's path relative to the dataset's image
folder, ``data_prefix['img']`` or ``data_prefix['img_path']``), with the visualizer of the config
and the dataset's class colours. The kit's ``tools/test.py --show-dir DIR`` uses it.

:func:`best_f1_threshold` chooses the score from which detections are worth drawing: the one that
maximises F1 (at IoU 0.5, per class) over a validation split, so that pictures show what a model
learnt rather than its doubts (the demo draws at it).
"""
import os.path as osp
from typing import Iterable, Optional, Tuple

import numpy as np

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['DrawPredictionsHook', 'relative_image_path', 'best_f1_threshold']


def _hits(boxes, scores, labels, gt_boxes, gt_labels, iou_thr: float) -> np.ndarray:
    """Whether each detection is a true positive, matched greedily in descending score to the
    unmatched ground-truth box of its class it overlaps most (IoU >= ``iou_thr``), as COCO does."""
    import torch
    from torchvision.ops import box_iou
    hits = np.zeros(len(scores), bool)
    if not len(scores) or not len(gt_boxes):
        return hits
    ious = box_iou(torch.as_tensor(boxes, dtype=torch.float32),
                   torch.as_tensor(gt_boxes, dtype=torch.float32)).numpy()
    ious[np.asarray(labels)[:, None] != np.asarray(gt_labels)[None, :]] = 0.0
    taken = np.zeros(len(gt_boxes), bool)
    for i in np.argsort(-np.asarray(scores), kind='stable'):
        options = np.where(~taken & (ious[i] >= iou_thr), ious[i], -1.0)
        j = int(options.argmax())
        if options[j] >= 0:
            taken[j] = hits[i] = True
    return hits


def best_f1_threshold(predictions: Iterable[Tuple], ground_truths: Iterable[Tuple],
                      iou_thr: float = 0.5) -> Optional[dict]:
    """The score threshold whose detections best match the ground truth: ``predictions`` are
    (boxes (N, 4), scores (N,), labels (N,)) per image, ``ground_truths`` (boxes (M, 4), labels
    (M,)) of the same images. Only thresholds between distinct scores are considered (equal scores
    are kept or dropped together); of equal F1 the highest threshold wins. Returns ``score_thr``,
    ``f1``, ``precision`` and ``recall``, or None without detections or ground truth."""
    scores, hits, total = [], [], 0
    for (boxes, score, labels), (gt_boxes, gt_labels) in zip(predictions, ground_truths):
        score = np.asarray(score, np.float64).reshape(-1)
        scores.append(score)
        hits.append(_hits(boxes, score, labels, gt_boxes, gt_labels, iou_thr))
        total += len(gt_boxes)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    if not len(scores) or not total:
        return None
    order = np.argsort(-scores, kind='stable')
    scores, hits = scores[order], np.concatenate(hits)[order]
    true = np.cumsum(hits)
    kept = np.arange(1, len(scores) + 1)
    last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # ends of equal-score runs
    f1 = 2 * true[last] / (kept[last] + total)
    best = last[int(np.argmax(f1))]  # the first maximum: the highest threshold
    return dict(score_thr=float(scores[best]), f1=float(2 * true[best] / (kept[best] + total)),
                precision=float(true[best] / kept[best]), recall=float(true[best] / total))


def relative_image_path(img_path: str, image_root: Optional[str]) -> str:
    """``img_path`` relative to ``image_root`` when it lies inside it, else its base name."""
    if image_root:
        relative = osp.relpath(osp.abspath(img_path), osp.abspath(image_root))
        if not relative.startswith(osp.pardir + osp.sep) and relative != osp.pardir:
            return relative
    return osp.basename(img_path)


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """Draws ground truth beside prediction for every test image into ``out_dir`` (relative to the
    run's work dir unless absolute), keeping each image's path below the dataset's image folder.

    Args:
        out_dir (str): where the drawings go.
        score_thr (float): detections drawn have at least this score (detectors only).
    """

    priority = 'NORMAL'

    def __init__(self, out_dir: str, score_thr: float = 0.3):
        self.out_dir = out_dir
        self.score_thr = score_thr
        self._root = None
        self._folder = None

    def before_test(self, runner) -> None:
        self._folder = osp.join(runner.work_dir, self.out_dir)
        prefix = getattr(runner.test_dataloader.dataset, 'data_prefix', None) or {}
        self._root = prefix.get('img') or prefix.get('img_path')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        import mmcv
        detection = 'pred_instances' in (outputs[0] if outputs else {})
        for sample in outputs or []:
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            relative = relative_image_path(sample.img_path, self._root)
            extra = dict(pred_score_thr=self.score_thr) if detection else {}
            runner.visualizer.add_datasample(relative, image, data_sample=sample, show=False,
                                             out_file=osp.join(self._folder, relative), **extra)
