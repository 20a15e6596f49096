"""The ONNX rewrites of what mmdet does around a detector's layers at test time, in standard
operators with every size taken from the traced input: box decoding, NMS (ONNX
``NonMaxSuppression``), multi-level RoIAlign (ONNX ``RoiAlign``), mask pasting, top-k with a traced
k. The export wrappers (:mod:`.two_stage`, and any new one) build on these; mmdet's training and
inference never run them.

Equal scores: ONNX ``TopK`` and ``NonMaxSuppression`` (onnxruntime and OpenVINO alike) put the
lower index first, and run eagerly these ops do the same (torch's CPU sort, under mmcv's and
torchvision's nms, leaves the order of equal scores unspecified).
"""
import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['traced_size', 'top_k', 'delta2bbox', 'NonMaxSuppression', 'batched_nms', 'nms_iou',
           'check_roi_extractor', 'roi_extract', 'as_rois', 'paste_masks']


def traced_size(tensor: Tensor, dim: int) -> Tensor:
    """``tensor.shape[dim]`` as a 0-d int64 tensor (a traced value while exporting)."""
    size = tensor.shape[dim]
    return size if isinstance(size, Tensor) else torch.tensor(size)


def _descending(scores: Tensor) -> Tensor:
    """Indices of the 1-D ``scores`` by descending score, equal scores by ascending index."""
    return torch.sort(scores, descending=True, stable=True)[1]


def top_k(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``scores.topk(min(k, len(scores)))`` with the minimum taken in the graph; equal scores by
    ascending index, as ONNX ``TopK``."""
    if torch.jit.is_tracing():
        count = torch.minimum(traced_size(scores, 0), torch.tensor(k)).reshape(1)
        return torch.topk(scores, count, sorted=True)
    index = _descending(scores)[:k]
    return scores[index], index


def delta2bbox(coder, rois: Tensor, deltas: Tensor, max_xy: Tensor) -> Tensor:
    """mmdet's ``delta2bbox`` (DeltaXYWHBBoxCoder, 2-D inputs) for ``rois`` (n, 4) and ``deltas``
    (n, 4); ``max_xy`` = (W, H, W, H) float, the clipping bound of ``clip_border``."""
    means = deltas.new_tensor(coder.means).view(1, -1)
    stds = deltas.new_tensor(coder.stds).view(1, -1)
    denorm = deltas * stds + means
    dxy, dwh = denorm[:, :2], denorm[:, 2:]
    pxy = (rois[:, :2] + rois[:, 2:]) * 0.5
    pwh = rois[:, 2:] - rois[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = abs(math.log(16 / 1000))  # decode's default wh_ratio_clip, as mmdet calls it
    if coder.add_ctr_clamp:
        dxy_wh = torch.clamp(dxy_wh, max=coder.ctr_clamp, min=-coder.ctr_clamp)
        dwh = torch.clamp(dwh, max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    bboxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if coder.clip_border:
        bboxes = torch.minimum(bboxes.clamp(min=0), max_xy)
    return bboxes


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` in its own layout: ``boxes`` (B, N, 4), ``scores`` (B, C, N);
    each (batch, class) pair is suppressed on its own (IoU > ``iou_threshold``, as mmcv's and
    torchvision's nms) among the boxes scoring above ``score_threshold``, equal scores by
    ascending index. Returns the kept (batch, class, box) indices (K, 3). Per-class NMS keeps
    the work of each call small where mmcv's single-call offset trick over all classes would
    hand onnxruntime one quadratic problem."""

    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold: float, score_threshold: float):
        from torchvision.ops import nms
        kept = [boxes.new_zeros((0, 3), dtype=torch.long)]
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = (scores[b, c] > score_threshold).nonzero().reshape(-1)
                order = candidates[_descending(scores[b, c, candidates])]
                rank = torch.arange(len(order), 0, -1, dtype=boxes.dtype, device=boxes.device)
                keep = order[nms(boxes[b, order], rank, iou_threshold)]
                kept.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c),
                                         keep], 1))
        return torch.cat(kept)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold, score_threshold):
        return g.op('NonMaxSuppression', boxes, scores,
                    g.op('Constant', value_t=torch.tensor([2**62], dtype=torch.long)),
                    g.op('Constant', value_t=torch.tensor([iou_threshold], dtype=torch.float)),
                    g.op('Constant', value_t=torch.tensor([score_threshold], dtype=torch.float)),
                    center_point_box_i=0)


def batched_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
         max_num: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmcv's ``batched_nms`` (as mmdet's RPN and ``multiclass_nms`` call it) in ONNX's layout:
    ``boxes`` (B, N, 4), ``scores`` (B, C, N); NMS within each (batch, class) among the scores
    above ``score_threshold``, then every kept box by descending score, at most ``max_num`` (all
    when <= 0). Returns the kept (batch, class, box) indices and scores."""
    kept = NonMaxSuppression.apply(boxes, scores, float(iou_threshold), float(score_threshold))
    batch, cls, index = kept[:, 0], kept[:, 1], kept[:, 2]
    kept_scores = scores[batch, cls, index]
    order = top_k(kept_scores, max_num if max_num > 0 else 2**31 - 1)[1]
    return batch[order], cls[order], index[order], kept_scores[order]


def nms_iou(cfg) -> float:
    nms_cfg = cfg.get('nms', None)
    if nms_cfg is None or nms_cfg.get('type', 'nms') != 'nms' or \
            float(nms_cfg.get('offset', 0)) != 0:
        raise ValueError(f'exporting needs plain nms (offset 0) in the test_cfg, got {nms_cfg}')
    return float(nms_cfg['iou_threshold'])


def check_roi_extractor(extractor):
    name = type(extractor).__name__
    if name != 'SingleRoIExtractor':
        raise ValueError(f'exporting supports SingleRoIExtractor, got {name}')
    layer = extractor.roi_layers[0]
    if type(layer).__name__ != 'RoIAlign' or getattr(layer, 'pool_mode', 'avg') != 'avg':
        raise ValueError(f'exporting supports mmcv RoIAlign (avg) layers, got {layer}')


def roi_extract(extractor, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """``SingleRoIExtractor.forward`` (``roi_scale_factor=None``): each RoI pooled by mmcv's
    ``RoIAlign`` on the level of ``map_roi_levels``. ONNX ``RoiAlign`` pools one feature map, so
    each level pools its own RoIs (gathered) and the results are put back in the RoIs' order."""
    from torchvision.ops import roi_align
    layers = extractor.roi_layers
    num_levels = len(layers)

    def pool(i, level_rois):
        layer = layers[i]
        return roi_align(feats[i], level_rois, layer.output_size, layer.spatial_scale,
                         layer.sampling_ratio, layer.aligned)

    if num_levels == 1:
        return pool(0, rois)
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
    levels = levels.clamp(min=0, max=num_levels - 1).long()
    pooled, order = [], []
    for i in range(num_levels):
        index = (levels == i).nonzero().reshape(-1)
        pooled.append(pool(i, rois[index]))
        order.append(index)
    # the RoIs of level 0, then 1, ...: sorting their positions gives the inverse permutation
    inverse = top_k(-torch.cat(order).to(torch.float32), 2**31 - 1)[1]
    return torch.cat(pooled)[inverse]


def as_rois(boxes: Tensor) -> Tensor:
    return torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)



def paste_masks(masks: Tensor, boxes: Tensor, height: Tensor, width: Tensor) -> Tensor:
    """``_do_paste_mask(..., skip_empty=False)``: (N, 1, h, w) masks into (N, H, W).

    mmdet samples the masks with ``grid_sample`` (bilinear, zero padding) on a grid whose x
    depends on the column only and y on the row only, so the same values come from two small
    matrix products, ``Wy @ mask @ Wx^T``, with bilinear weights ``max(0, 1 - |pos - i|)``:
    no (N, H, W, 2) grid, a fraction of the memory and time at full image sizes."""
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    img_y = torch.arange(height, device=boxes.device).to(torch.float32) + 0.5
    img_x = torch.arange(width, device=boxes.device).to(torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
    img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)

    def weights(grid, size):  # (N, L) normalised positions -> (N, L, size) bilinear weights
        position = ((grid + 1) * size - 1) / 2  # grid_sample's unnormalisation
        index = torch.arange(size, device=grid.device).to(torch.float32)
        return (1 - (position[:, :, None] - index).abs()).clamp(min=0)

    masks = masks[:, 0].to(torch.float32)
    rows = weights(img_y, masks.shape[1])
    cols = weights(img_x, masks.shape[2])
    return torch.matmul(torch.matmul(rows, masks), cols.transpose(1, 2))
