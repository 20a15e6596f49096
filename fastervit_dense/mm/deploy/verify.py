"""Agreement of an exported model with mmdet's / mmseg's own inference on the same image.

The reference is the framework's ``test_step`` on the image as its test pipeline would give it
without the resize (``img_shape == ori_shape``, ``scale_factor == 1``). A detector agrees when every
exported detection has a framework detection with the same label, box IoU >= 0.98 and a score
within 2e-3 (and, with masks, mask IoU >= 0.9); a segmentor when the argmax of its logits agrees
on >= 99.5% of the pixels.
"""
from typing import Dict, Optional

import numpy as np
import torch

__all__ = ['random_image', 'BOX_IOU', 'SCORE_TOLERANCE', 'MASK_IOU', 'PIXEL_AGREEMENT', 'framework_detections',
           'framework_seg_logits', 'match_detections', 'segmentation_agreement', 'run_onnx']

BOX_IOU = 0.98
SCORE_TOLERANCE = 2e-3
MASK_IOU = 0.9
PIXEL_AGREEMENT = 0.995


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random BGR image (1, 3, H, W) of integer values 0-255 in float32, as mmcv would load
    one."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, height, width), generator=generator).float()


def _sample(data_sample_cls, image: torch.Tensor):
    height, width = image.shape[-2:]
    return data_sample_cls(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         pad_shape=(height, width), scale_factor=(1.0, 1.0)))


@torch.no_grad()
def framework_detections(detector, image: torch.Tensor) -> Dict[str, np.ndarray]:
    """mmdet's inference on ``image`` (float (1, 3, H, W) or (3, H, W), BGR, 0-255): ``dets``
    (N, 5), ``labels`` (N,) and, for instance segmentation, ``masks`` (N, H, W) bool."""
    from mmdet.structures import DetDataSample
    image = image.reshape(3, *image.shape[-2:])
    data = dict(inputs=[image], data_samples=[_sample(DetDataSample, image)])
    instances = detector.test_step(data)[0].pred_instances
    result = dict(dets=torch.cat([instances.bboxes, instances.scores[:, None]], 1).numpy(),
                  labels=instances.labels.numpy())
    if 'masks' in instances:
        result['masks'] = instances.masks.numpy().astype(bool)
    return result


@torch.no_grad()
def framework_seg_logits(segmentor, image: torch.Tensor) -> np.ndarray:
    """mmseg's logits (C, H, W) for ``image`` (BGR, 0-255)."""
    from mmseg.structures import SegDataSample
    image = image.reshape(3, *image.shape[-2:])
    data = dict(inputs=[image], data_samples=[_sample(SegDataSample, image)])
    return segmentor.test_step(data)[0].seg_logits.data.numpy()


def run_onnx(path, image: torch.Tensor, session=None) -> Dict[str, np.ndarray]:
    """The exported file's outputs (batch dimension dropped) for ``image`` (1, 3, H, W)."""
    import onnxruntime as ort
    session = session or ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    image = image.reshape(1, 3, *image.shape[-2:]).float().numpy()
    return {name: value[0] for name, value in zip(names, session.run(None, {'image': image}))}


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = (rb - lt).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), (inter == union).astype(float))


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def match_detections(exported: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
                     box_iou: float = BOX_IOU, score_tolerance: float = SCORE_TOLERANCE) -> dict:
    """Matches each exported detection to a reference one: among those with the same label, a
    score within ``score_tolerance`` (default :data:`SCORE_TOLERANCE`) and box IoU >= ``box_iou``
    (default :data:`BOX_IOU`), the closest in score (near-duplicate boxes of one class are
    common). Returns counts and the worst figures; ``agree``
    is True when every exported detection has a match (with mask IoU >= :data:`MASK_IOU` when
    there are masks)."""
    dets, labels = exported['dets'], exported['labels']
    ref_dets, ref_labels = reference['dets'], reference['labels']
    ious = _box_iou(dets[:, :4], ref_dets[:, :4]) if len(dets) and len(ref_dets) else \
        np.zeros((len(dets), len(ref_dets)))
    score_differences = np.abs(dets[:, 4:5] - ref_dets[None, :, 4])
    same = (labels[:, None] == ref_labels[None, :]) & (score_differences <= score_tolerance)
    matched, worst_iou, worst_score, worst_mask = 0, 1.0, 0.0, 1.0
    for i in range(len(dets)):
        candidates = np.flatnonzero(same[i] & (ious[i] >= box_iou))
        if not len(candidates):
            near = ious[i][same[i]]
            worst_iou = min(worst_iou, float(near.max()) if len(near) else 0.0)
            continue
        j = candidates[score_differences[i, candidates].argmin()]
        worst_iou = min(worst_iou, float(ious[i, j]))
        worst_score = max(worst_score, float(score_differences[i, j]))
        if 'masks' in exported:
            mask_iou = _mask_iou(exported['masks'][i].astype(bool), reference['masks'][j])
            worst_mask = min(worst_mask, mask_iou)
            if mask_iou < MASK_IOU:
                continue
        matched += 1
    report = dict(exported=len(dets), reference=len(ref_dets), matched=matched,
                  worst_box_iou=worst_iou, worst_score_difference=worst_score,
                  agree=matched == len(dets))
    if 'masks' in exported:
        report['worst_mask_iou'] = worst_mask
    return report


def segmentation_agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Share of pixels whose argmax class agrees, and the largest logit difference."""
    if logits.shape != reference.shape:
        return dict(agreement=0.0, shape=logits.shape, reference_shape=reference.shape,
                    agree=False)
    agreement = float((logits.argmax(0) == reference.argmax(0)).mean())
    return dict(agreement=agreement, max_logit_difference=float(np.abs(logits - reference).max()),
                agree=agreement >= PIXEL_AGREEMENT)


def format_report(size: str, report: dict, kind: Optional[str] = None) -> str:
    """One line of figures for the command line."""
    if 'agreement' in report:
        return (f'  {size}: argmax agrees on {100 * report["agreement"]:.3f}% of pixels '
                f'(needs >= {100 * PIXEL_AGREEMENT:.1f}%), max logit difference '
                f'{report.get("max_logit_difference", float("nan")):.2e}')
    text = (f'  {size}: {report["matched"]}/{report["exported"]} exported detections match '
            f'mmdet\'s {report["reference"]} (worst box IoU {report["worst_box_iou"]:.4f}, '
            f'worst score difference {report["worst_score_difference"]:.1e}')
    if 'worst_mask_iou' in report:
        text += f', worst mask IoU {report["worst_mask_iou"]:.4f}'
    return text + ')'
