"""Two-stage detectors (Faster / Mask R-CNN, Cascade (Mask) R-CNN) as one ONNX graph.

:class:`TwoStageExport` runs the detector's own layers (``extract_feat``, the RPN head's forward,
the RoI heads' ``forward``) and rewrites, in standard ONNX operators with every size taken from the
traced input, what mmdet does around them at test time:

* RPN post-processing (``RPNHead._predict_by_feat_single`` / ``_bbox_post_process``): per-level
  sigmoid scores, the top ``nms_pre`` per level (``TopK`` with k from the level's size), anchors of
  ``AnchorGenerator.single_level_grid_priors`` built from ``arange`` over the traced feature size,
  ``delta2bbox`` decoding clipped to the image, the ``min_bbox_size`` filter and mmcv's
  ``batched_nms`` (the same coordinate-offset trick, ONNX ``NonMaxSuppression``), ``max_per_img``;
* multi-level RoIAlign (``SingleRoIExtractor``): ``map_roi_levels`` and ONNX ``RoiAlign``
  (``half_pixel`` for mmcv's ``aligned=True``) run on every level and selected per RoI;
* box head post-processing (``BBoxHead._predict_by_feat_single`` + ``multiclass_nms``) and
  Cascade R-CNN's ``CascadeRoIHead._refine_roi`` (stage logits averaged, RoIs refined with
  ``regress_by_class``);
* masks (``FCNMaskHead._predict_by_feat_single`` / ``_do_paste_mask`` with ``skip_empty=False``,
  the GPU path), Cascade's stage average (``merge_aug_masks``), the binary threshold.

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


def _batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Indices kept by mmcv's ``batched_nms`` (offset 0), sorted by descending score: boxes of
    different ``idxs`` are moved apart by ``idx * (max coordinate + 1)`` as mmcv does, then one
    ``NonMaxSuppression`` (suppresses IoU > threshold, as mmcv's nms)."""
    from torchvision.ops import nms
    # max over the boxes; the appended 0 keeps it defined for no boxes (boxes are clipped to >= 0)
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, float(iou_threshold))


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
    every level pools every RoI and each RoI keeps its level's result."""
    from torchvision.ops import roi_align
    layers = extractor.roi_layers
    num_levels = len(layers)
    feats = feats[:num_levels]

    def pool(i):
        layer = layers[i]
        return roi_align(feats[i], rois, layer.output_size, layer.spatial_scale,
                         layer.sampling_ratio, layer.aligned)

    if num_levels == 1:
        return pool(0)
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
    levels = levels.clamp(min=0, max=num_levels - 1).long()
    out = pool(0)
    for i in range(1, num_levels):
        out = torch.where((levels == i)[:, None, None, None], pool(i), out)
    return out


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
        keep = _batched_nms(boxes, scores, level_ids, self.rpn_iou)[:cfg.max_per_img]
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
        # multiclass_nms
        decoded = decoded.reshape(-1, 4)
        fg_scores = scores[:, :-1]
        labels = torch.arange(num_classes, dtype=torch.long, device=scores.device)
        labels = labels.view(1, -1).expand_as(fg_scores).reshape(-1)
        fg_scores = fg_scores.reshape(-1)
        inds = (fg_scores > self.rcnn_cfg.score_thr).nonzero().reshape(-1)
        decoded, fg_scores, labels = decoded[inds], fg_scores[inds], labels[inds]
        keep = _batched_nms(decoded, fg_scores, labels, self.rcnn_iou)
        if self.rcnn_cfg.max_per_img > 0:
            keep = keep[:self.rcnn_cfg.max_per_img]
        return decoded[keep], fg_scores[keep], labels[keep]

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
        """``_do_paste_mask(..., skip_empty=False)``: (N, 1, h, w) masks into (N, H, W)."""
        x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
        img_y = torch.arange(height, device=boxes.device).to(torch.float32) + 0.5
        img_x = torch.arange(width, device=boxes.device).to(torch.float32) + 0.5
        img_y = (img_y - y0) / (y1 - y0) * 2 - 1
        img_x = (img_x - x0) / (x1 - x0) * 2 - 1
        img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
        img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
        num = masks.shape[0]
        gx = img_x[:, None, :].expand(num, img_y.shape[1], img_x.shape[1])
        gy = img_y[:, :, None].expand(num, img_y.shape[1], img_x.shape[1])
        grid = torch.stack([gx, gy], dim=3)
        return F.grid_sample(masks.to(torch.float32), grid, align_corners=False)[:, 0]

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
