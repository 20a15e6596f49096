"""Two-stage detectors (Faster / Mask R-CNN, Cascade (Mask) R-CNN) as one ONNX graph.

:class:`TwoStageExport` runs the detector's own layers (``extract_feat``, the RPN head's forward,
the RoI heads' ``forward``) and rewrites, in standard ONNX operators with every size taken from the
traced input, what mmdet does around them at test time:

* RPN post-processing (``RPNHead._predict_by_feat_single`` / ``_bbox_post_process``): per-level
  sigmoid scores, the top ``nms_pre`` per level (``TopK`` with k from the level's size), anchors of
  ``AnchorGenerator.single_level_grid_priors`` built from ``arange`` over the traced feature size,
  ``delta2bbox`` decoding clipped to the image, the ``min_bbox_size`` filter and mmcv's
  ``batched_nms`` over the levels (ONNX ``NonMaxSuppression``, one class per level),
  ``max_per_img``;
* multi-level RoIAlign (``SingleRoIExtractor``): ``map_roi_levels``, then ONNX ``RoiAlign``
  (``half_pixel`` for mmcv's ``aligned=True``) on each level for the RoIs gathered there;
* box head post-processing (``BBoxHead._predict_by_feat_single`` + ``multiclass_nms``, NMS within
  each class as one batched ``NonMaxSuppression``) and
  Cascade R-CNN's ``CascadeRoIHead._refine_roi`` (stage logits averaged, RoIs refined with
  ``regress_by_class``);
* masks (``FCNMaskHead._predict_by_feat_single`` / ``_do_paste_mask`` with ``skip_empty=False``,
  the GPU path, as separable bilinear weights), Cascade's stage average (``merge_aug_masks``), the
  binary threshold.

The detector's modules are not changed: mmdet's training and inference never run this code.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .preprocess import InGraphPreprocessor

__all__ = ['TwoStageExport']


def _size(tensor: Tensor, dim: int) -> Tensor:
    """``tensor.shape[dim]`` as a 0-d int64 tensor (a traced value while exporting)."""
    size = tensor.shape[dim]
    return size if isinstance(size, Tensor) else torch.tensor(size)


def _top_k(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``scores.topk(min(k, len(scores)))`` with the minimum taken in the graph."""
    if torch.jit.is_tracing():
        count = torch.minimum(_size(scores, 0), torch.tensor(k)).reshape(1)
        return torch.topk(scores, count, sorted=True)
    return torch.topk(scores, min(k, scores.shape[0]), sorted=True)


def _decode(coder, rois: Tensor, deltas: Tensor, max_xy: Tensor) -> Tensor:
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


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` in its own layout: ``boxes`` (B, N, 4), ``scores`` (B, C, N);
    each (batch, class) pair is suppressed on its own (IoU > ``iou_threshold``, as mmcv's and
    torchvision's nms) among the boxes scoring above ``score_threshold``. Returns the kept
    (batch, class, box) indices (K, 3). Per-class NMS keeps the work of each call small where
    mmcv's single-call offset trick over all classes would hand onnxruntime one quadratic
    problem."""

    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold: float, score_threshold: float):
        from torchvision.ops import nms
        kept = [boxes.new_zeros((0, 3), dtype=torch.long)]
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = (scores[b, c] > score_threshold).nonzero().reshape(-1)
                keep = candidates[nms(boxes[b, candidates], scores[b, c, candidates],
                                      iou_threshold)]
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


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
         max_num: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmcv's ``batched_nms`` (as mmdet's RPN and ``multiclass_nms`` call it) in ONNX's layout:
    ``boxes`` (B, N, 4), ``scores`` (B, C, N); NMS within each (batch, class) among the scores
    above ``score_threshold``, then every kept box by descending score, at most ``max_num`` (all
    when <= 0). Returns the kept (batch, class, box) indices and scores."""
    kept = _NonMaxSuppression.apply(boxes, scores, float(iou_threshold), float(score_threshold))
    batch, cls, index = kept[:, 0], kept[:, 1], kept[:, 2]
    kept_scores = scores[batch, cls, index]
    order = _top_k(kept_scores, max_num if max_num > 0 else 2**31 - 1)[1]
    return batch[order], cls[order], index[order], kept_scores[order]


def _nms_iou(cfg) -> float:
    nms_cfg = cfg.get('nms', None)
    if nms_cfg is None or nms_cfg.get('type', 'nms') != 'nms' or \
            float(nms_cfg.get('offset', 0)) != 0:
        raise ValueError(f'exporting needs plain nms (offset 0) in the test_cfg, got {nms_cfg}')
    return float(nms_cfg['iou_threshold'])


def _check_extractor(extractor):
    name = type(extractor).__name__
    if name != 'SingleRoIExtractor':
        raise ValueError(f'exporting supports SingleRoIExtractor, got {name}')
    layer = extractor.roi_layers[0]
    if type(layer).__name__ != 'RoIAlign' or getattr(layer, 'pool_mode', 'avg') != 'avg':
        raise ValueError(f'exporting supports mmcv RoIAlign (avg) layers, got {layer}')


def _roi_extract(extractor, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
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
    inverse = _top_k(-torch.cat(order).to(torch.float32), 2**31 - 1)[1]
    return torch.cat(pooled)[inverse]


def _as_rois(boxes: Tensor) -> Tensor:
    return torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)


class TwoStageExport(nn.Module):
    """A built (eval-mode) mmdet 3.x two-stage detector as ``image -> dets, labels[, masks]``.

    ``image`` float32 (1, 3, H, W), BGR 0-255; ``dets`` (1, N, 5) x1, y1, x2, y2, score sorted by
    descending score; ``labels`` int64 (1, N); ``masks`` uint8 (1, N, H, W) with a mask head.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        self.preprocess = InGraphPreprocessor(detector.data_preprocessor)
        rpn_head, roi_head = detector.rpn_head, detector.roi_head
        if type(rpn_head).__name__ != 'RPNHead':
            raise ValueError(f'exporting supports RPNHead, got {type(rpn_head).__name__}')
        self.cascade = isinstance(roi_head.bbox_head, nn.ModuleList)
        self.num_stages = len(roi_head.bbox_head) if self.cascade else 1
        self.with_mask = bool(getattr(roi_head, 'with_mask', False))
        self.output_names = ('dets', 'labels', 'masks') if self.with_mask else ('dets', 'labels')
        self.rpn_cfg = rpn_head.test_cfg
        self.rcnn_cfg = roi_head.test_cfg
        self.rpn_iou = _nms_iou(self.rpn_cfg)
        self.rcnn_iou = _nms_iou(self.rcnn_cfg)
        coders = [rpn_head.bbox_coder] + [h.bbox_coder for h in self._stages(roi_head.bbox_head)]
        for coder in coders:
            if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
                raise ValueError(f'exporting supports DeltaXYWHBBoxCoder, got {coder}')
        for head in self._stages(roi_head.bbox_head):
            if head.custom_cls_channels or not head.with_cls or not head.with_reg:
                raise ValueError('exporting supports box heads with softmax classification and '
                                 'regression')
        for extractor in self._stages(roi_head.bbox_roi_extractor):
            _check_extractor(extractor)
        if self.with_mask:
            for extractor in self._stages(roi_head.mask_roi_extractor):
                _check_extractor(extractor)
            for head in self._stages(roi_head.mask_head):
                if type(head).__name__ != 'FCNMaskHead':
                    raise ValueError(f'exporting supports FCNMaskHead, got {type(head).__name__}')

    def _stages(self, modules) -> List[nn.Module]:
        return list(modules) if self.cascade else [modules]

    # -- RPN -------------------------------------------------------------------------------------
    def _anchors(self, level: int, feat_h: Tensor, feat_w: Tensor, ref: Tensor) -> Tensor:
        """``AnchorGenerator.single_level_grid_priors`` for a traced feature size."""
        generator = self.detector.rpn_head.prior_generator
        base = generator.base_anchors[level].to(ref)
        stride_w, stride_h = generator.strides[level]
        shift_x = torch.arange(feat_w, device=ref.device).to(ref.dtype) * stride_w
        shift_y = torch.arange(feat_h, device=ref.device).to(ref.dtype) * stride_h
        xx = shift_x[None, :].expand(shift_y.shape[0], shift_x.shape[0]).reshape(-1)
        yy = shift_y[:, None].expand(shift_y.shape[0], shift_x.shape[0]).reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)

    def _proposals(self, feats: Tuple[Tensor], max_xy: Tensor) -> Tensor:
        """``RPNHead.predict`` for one image: proposals (n, 4)."""
        head, cfg = self.detector.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = head(feats)
        nms_pre = cfg.get('nms_pre', -1)
        boxes, scores, level_ids = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            feat_h, feat_w = _size(cls_score, 2), _size(cls_score, 3)
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            logits = cls_score[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
            score = logits.sigmoid() if head.use_sigmoid_cls else logits.softmax(-1)[:, :-1]
            score = score.reshape(-1)
            anchors = self._anchors(level, feat_h, feat_w, deltas)
            if nms_pre > 0:
                score, keep = _top_k(score, nms_pre)
                deltas, anchors = deltas[keep], anchors[keep]
            boxes.append(_decode(head.bbox_coder, anchors, deltas, max_xy))
            scores.append(score)
            level_ids.append(torch.zeros_like(score, dtype=torch.long) + level)
        boxes, scores, level_ids = torch.cat(boxes), torch.cat(scores), torch.cat(level_ids)
        if cfg.get('min_bbox_size', -1) >= 0:
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            valid = ((w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)).nonzero().reshape(-1)
            boxes, scores, level_ids = boxes[valid], scores[valid], level_ids[valid]
        # one NMS class per level (mmdet passes the level ids to batched_nms); RPN scores are >= 0
        levels = torch.arange(len(cls_scores), device=scores.device)
        per_level = torch.where(level_ids[None, :] == levels[:, None], scores[None, :],
                                torch.full_like(scores, -1.0)[None, :])
        _, _, keep, _ = _nms(boxes[None], per_level[None], self.rpn_iou, -0.5, cfg.max_per_img)
        return boxes[keep]

    # -- box head ---------------------------------------------------------------------------------
    def _bbox_forward(self, stage: int, feats, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        roi_head = self.detector.roi_head
        extractor = self._stages(roi_head.bbox_roi_extractor)[stage]
        head = self._stages(roi_head.bbox_head)[stage]
        cls_score, bbox_pred = head(_roi_extract(extractor, feats, _as_rois(boxes)))
        return cls_score, bbox_pred

    def _detections(self, feats, proposals: Tensor, max_xy: Tensor):
        """``predict_bbox`` of the RoI head: boxes (N, 4), scores (N,), labels (N,)."""
        heads = self._stages(self.detector.roi_head.bbox_head)
        boxes, logits = proposals, []
        for stage, head in enumerate(heads):  # CascadeRoIHead._refine_roi
            cls_score, bbox_pred = self._bbox_forward(stage, feats, boxes)
            logits.append(cls_score)
            if stage < len(heads) - 1:
                label = cls_score[:, :-1].argmax(dim=1)
                boxes = self._regress_by_class(head, boxes, label, bbox_pred, max_xy)
        cls_score = logits[0] if len(logits) == 1 else sum(logits) / float(len(logits))
        head = heads[-1]
        num_rois = boxes.shape[0]
        scores = F.softmax(cls_score, dim=-1)
        num_classes = head.num_classes
        if head.reg_class_agnostic:
            decoded = _decode(head.bbox_coder, boxes, bbox_pred.reshape(-1, 4), max_xy)
            decoded = decoded[:, None, :].expand(num_rois, num_classes, 4)
        else:
            decoded = _decode(head.bbox_coder, boxes.repeat_interleave(num_classes, dim=0),
                              bbox_pred.reshape(-1, 4), max_xy)
        # multiclass_nms: NMS within each class, one ONNX batch per class (its own boxes)
        decoded = decoded.reshape(num_rois, num_classes, 4).transpose(0, 1)
        fg_scores = scores[:, :-1].transpose(0, 1)[:, None, :]
        labels, _, index, kept_scores = _nms(decoded, fg_scores, self.rcnn_iou,
                                             self.rcnn_cfg.score_thr, self.rcnn_cfg.max_per_img)
        return decoded[labels, index], kept_scores, labels

    @staticmethod
    def _regress_by_class(head, boxes, label, bbox_pred, max_xy):
        """``BBoxHead.regress_by_class``."""
        if not head.reg_class_agnostic:
            label = label * 4
            inds = torch.stack([label + i for i in range(4)], 1)
            bbox_pred = torch.gather(bbox_pred, 1, inds)
        return _decode(head.bbox_coder, boxes, bbox_pred, max_xy)

    # -- masks ------------------------------------------------------------------------------------
    def _masks(self, feats, boxes: Tensor, labels: Tensor, height: Tensor, width: Tensor):
        roi_head = self.detector.roi_head
        rois = _as_rois(boxes)
        probs = []
        for extractor, head in zip(self._stages(roi_head.mask_roi_extractor),
                                   self._stages(roi_head.mask_head)):
            probs.append(head(_roi_extract(extractor, feats, rois)).sigmoid())
        # merge_aug_masks: the mean of the stages' sigmoid masks
        prob = probs[0] if len(probs) == 1 else torch.stack(probs, 0).mean(dim=0)
        head = self._stages(roi_head.mask_head)[-1]
        if not head.class_agnostic:
            index = labels.reshape(-1, 1, 1, 1).expand(-1, 1, prob.shape[2], prob.shape[3])
            prob = torch.gather(prob, 1, index)
        pasted = self._paste(prob, boxes, height, width)
        return (pasted >= self.rcnn_cfg.mask_thr_binary).to(torch.uint8)

    @staticmethod
    def _paste(masks: Tensor, boxes: Tensor, height: Tensor, width: Tensor) -> Tensor:
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

    def forward(self, image: Tensor):
        x = self.preprocess(image)
        height, width = _size(image, 2), _size(image, 3)
        max_xy = torch.stack([width, height, width, height]).to(torch.float32)
        feats = self.detector.extract_feat(x)
        proposals = self._proposals(feats, max_xy)
        boxes, scores, labels = self._detections(feats, proposals, max_xy)
        dets = torch.cat([boxes, scores[:, None]], dim=1)[None]
        if not self.with_mask:
            return dets, labels[None]
        masks = self._masks(feats, boxes, labels, height, width)
        return dets, labels[None], masks[None]
