"""Two-stage detectors (Faster / Mask R-CNN, Cascade (Mask) R-CNN) as one ONNX graph.

:class:`TwoStageExport` runs the detector's own layers (``extract_feat``, the RPN head's forward,
the RoI heads' ``forward``) and rewrites, in standard ONNX operators with every size taken from the
traced input, what mmdet does around them at test time:

* RPN post-processing (``RPNHead._predict_by_feat_single`` / ``_bbox_post_process``): per-level
  scores (ranked by their logits, see ``_proposals``), the top ``nms_pre`` per level (``TopK``
  with k from the level's size), anchors of
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
  binary threshold; and the mask probabilities before pasting (``mask_probs``), which a caller
  pastes into an image of another size (the original image, with the boxes scaled) as mmdet does
  with ``rescale=True``.

The detector's modules are not changed: mmdet's training and inference never run this code.
"""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .ops import (as_rois, batched_nms, check_roi_extractor, delta2bbox, nms_iou, paste_masks,
                  roi_extract, top_k, traced_size)
from .preprocess import InGraphPreprocessor

__all__ = ['TwoStageExport']

_UNRANKED = 1e30  # below any logit


class TwoStageExport(nn.Module):
    """A built (eval-mode) mmdet 3.x two-stage detector as ``image -> dets, labels[, masks]``.

    ``image`` float32 (1, 3, H, W), BGR 0-255; ``dets`` (1, N, 5) x1, y1, x2, y2, score sorted by
    descending score; ``labels`` int64 (1, N); with a mask head ``masks`` uint8 (1, N, H, W) and
    ``mask_probs`` float32 (1, N, M, M), each detection's mask probabilities in its box (M = 28
    for mmdet's FCN mask head).
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
        self.output_names = ('dets', 'labels', 'masks', 'mask_probs') if self.with_mask else (
            'dets', 'labels')
        self.rpn_cfg = rpn_head.test_cfg
        self.rcnn_cfg = roi_head.test_cfg
        self.rpn_iou = nms_iou(self.rpn_cfg)
        self.rcnn_iou = nms_iou(self.rcnn_cfg)
        coders = [rpn_head.bbox_coder] + [h.bbox_coder for h in self._stages(roi_head.bbox_head)]
        for coder in coders:
            if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
                raise ValueError(f'exporting supports DeltaXYWHBBoxCoder, got {coder}')
        for head in self._stages(roi_head.bbox_head):
            if head.custom_cls_channels or not head.with_cls or not head.with_reg:
                raise ValueError('exporting supports box heads with softmax classification and '
                                 'regression')
        for extractor in self._stages(roi_head.bbox_roi_extractor):
            check_roi_extractor(extractor)
        if self.with_mask:
            for extractor in self._stages(roi_head.mask_roi_extractor):
                check_roi_extractor(extractor)
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

    def _proposals(self, feats: Tuple[Tensor], max_xy: Tensor) -> Tuple[Tensor, Tensor]:
        """``RPNHead.predict`` for one image: proposals (n, 4) and the logits that ranked them.

        The top-k and NMS rank the anchors by logit, which orders them as the sigmoid does but
        without its saturation: a trained RPN scores the anchors of a large object 0.9999971,
        0.9999970, ... apart by less than the runtimes' sigmoids round (about 1e-6), so ranked by
        score the proposals kept would be the rounding's choice."""
        head, cfg = self.detector.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = head(feats)
        nms_pre = cfg.get('nms_pre', -1)
        boxes, ranks, level_ids = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            feat_h, feat_w = traced_size(cls_score, 2), traced_size(cls_score, 3)
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            logits = cls_score[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
            # sigmoid: the logit; softmax over (object, background): the logits' difference
            rank = logits if head.use_sigmoid_cls else logits[:, :1] - logits[:, 1:]
            rank = rank.reshape(-1)
            anchors = self._anchors(level, feat_h, feat_w, deltas)
            if nms_pre > 0:
                rank, keep = top_k(rank, nms_pre)
                deltas, anchors = deltas[keep], anchors[keep]
            boxes.append(delta2bbox(head.bbox_coder, anchors, deltas, max_xy))
            ranks.append(rank)
            level_ids.append(torch.zeros_like(rank, dtype=torch.long) + level)
        boxes, ranks, level_ids = torch.cat(boxes), torch.cat(ranks), torch.cat(level_ids)
        if cfg.get('min_bbox_size', -1) >= 0:
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            valid = ((w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)).nonzero().reshape(-1)
            boxes, ranks, level_ids = boxes[valid], ranks[valid], level_ids[valid]
        # one NMS class per level (mmdet passes the level ids to batched_nms); the other levels'
        # anchors rank below the score threshold
        levels = torch.arange(len(cls_scores), device=ranks.device)
        per_level = torch.where(level_ids[None, :] == levels[:, None], ranks[None, :],
                                torch.full_like(ranks, -_UNRANKED)[None, :])
        _, _, keep, _ = batched_nms(boxes[None], per_level[None], self.rpn_iou, -_UNRANKED / 2,
                                    cfg.max_per_img)
        return boxes[keep], ranks[keep]

    @torch.no_grad()
    def proposals(self, feats: Tuple[Tensor], height: int, width: int) -> Tuple[Tensor, Tensor]:
        """The RPN's proposals, run eagerly on the detector's features ``feats`` of an image of
        ``height`` x ``width``: boxes (n, 4) and their scores as mmdet computes them (the
        sigmoid, or softmax, of the logits that ranked them)."""
        max_xy = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes, ranks = self._proposals(feats, max_xy)
        return boxes, ranks.sigmoid()  # softmax of two logits = sigmoid of their difference

    # -- box head ---------------------------------------------------------------------------------
    def _bbox_forward(self, stage: int, feats, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        roi_head = self.detector.roi_head
        extractor = self._stages(roi_head.bbox_roi_extractor)[stage]
        head = self._stages(roi_head.bbox_head)[stage]
        cls_score, bbox_pred = head(roi_extract(extractor, feats, as_rois(boxes)))
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
            decoded = delta2bbox(head.bbox_coder, boxes, bbox_pred.reshape(-1, 4), max_xy)
            decoded = decoded[:, None, :].expand(num_rois, num_classes, 4)
        else:
            decoded = delta2bbox(head.bbox_coder, boxes.repeat_interleave(num_classes, dim=0),
                              bbox_pred.reshape(-1, 4), max_xy)
        # multiclass_nms: NMS within each class, one ONNX batch per class (its own boxes)
        decoded = decoded.reshape(num_rois, num_classes, 4).transpose(0, 1)
        fg_scores = scores[:, :-1].transpose(0, 1)[:, None, :]
        labels, _, index, kept_scores = batched_nms(decoded, fg_scores, self.rcnn_iou,
                                             self.rcnn_cfg.score_thr, self.rcnn_cfg.max_per_img)
        return decoded[labels, index], kept_scores, labels

    @staticmethod
    def _regress_by_class(head, boxes, label, bbox_pred, max_xy):
        """``BBoxHead.regress_by_class``."""
        if not head.reg_class_agnostic:
            label = label * 4
            inds = torch.stack([label + i for i in range(4)], 1)
            bbox_pred = torch.gather(bbox_pred, 1, inds)
        return delta2bbox(head.bbox_coder, boxes, bbox_pred, max_xy)

    # -- masks ------------------------------------------------------------------------------------
    def _masks(self, feats, boxes: Tensor, labels: Tensor, height: Tensor, width: Tensor):
        roi_head = self.detector.roi_head
        rois = as_rois(boxes)
        probs = []
        for extractor, head in zip(self._stages(roi_head.mask_roi_extractor),
                                   self._stages(roi_head.mask_head)):
            probs.append(head(roi_extract(extractor, feats, rois)).sigmoid())
        # merge_aug_masks: the mean of the stages' sigmoid masks
        prob = probs[0] if len(probs) == 1 else torch.stack(probs, 0).mean(dim=0)
        head = self._stages(roi_head.mask_head)[-1]
        if not head.class_agnostic:
            index = labels.reshape(-1, 1, 1, 1).expand(-1, 1, prob.shape[2], prob.shape[3])
            prob = torch.gather(prob, 1, index)
        pasted = paste_masks(prob, boxes, height, width)
        return (pasted >= self.rcnn_cfg.mask_thr_binary).to(torch.uint8), prob[:, 0]

    def forward(self, image: Tensor):
        x = self.preprocess(image)
        height, width = traced_size(image, 2), traced_size(image, 3)
        max_xy = torch.stack([width, height, width, height]).to(torch.float32)
        feats = self.detector.extract_feat(x)
        proposals, _ = self._proposals(feats, max_xy)
        boxes, scores, labels = self._detections(feats, proposals, max_xy)
        dets = torch.cat([boxes, scores[:, None]], dim=1)[None]
        if not self.with_mask:
            return dets, labels[None]
        masks, probs = self._masks(feats, boxes, labels, height, width)
        return dets, labels[None], masks[None], probs[None]
