"""DINO (4- or 5-scale): image -> ``dets`` (1, max_per_img, 5), ``labels`` (1, max_per_img)."""
import torch
import torch.nn as nn

from .preprocess import InGraphPreprocessor

__all__ = ['DINOExport']


class DINOExport(nn.Module):
    """mmdet's ``DINO.predict`` for one unpadded image, as plain tensors.

    The transformer runs through mmdet's own modules (mmdet builds no padding masks while
    exporting, as for one unpadded image at inference); the last decoder layer's scores are
    post-processed as ``DINOHead._predict_by_feat_single`` does (sigmoid, top ``max_per_img`` over
    all query-class pairs, boxes scaled to and clipped at the image)."""

    output_names = ('dets', 'labels')

    def __init__(self, detector: nn.Module):
        super().__init__()
        if not detector.bbox_head.loss_cls.use_sigmoid:
            raise ValueError('exporting a DINO with a softmax classifier is not supported')
        self.preprocess = InGraphPreprocessor(detector.data_preprocessor)
        self.detector = detector
        self.num_classes = detector.bbox_head.num_classes
        self.max_per_img = int(detector.bbox_head.test_cfg.get('max_per_img',
                                                               detector.num_queries))

    def forward(self, image):
        from mmdet.structures import DetDataSample
        x = self.preprocess(image)
        height, width = image.shape[2], image.shape[3]
        sample = DetDataSample(metainfo=dict(batch_input_shape=x.shape[2:],
                                             img_shape=(height, width)))
        detector = self.detector
        head_inputs = detector.forward_transformer(detector.extract_feat(x), [sample])
        cls_scores, bbox_preds = detector.bbox_head(head_inputs['hidden_states'],
                                                    head_inputs['references'])
        scores = cls_scores[-1, 0].sigmoid().reshape(-1)
        k = min(self.max_per_img, scores.shape[0])
        scores, indexes = scores.topk(k)
        labels = indexes % self.num_classes
        boxes = bbox_preds[-1, 0][indexes // self.num_classes]
        cx, cy, w, h = boxes.unbind(-1)
        size = torch.stack([width, height]).to(boxes) if torch.is_tensor(width) else \
            boxes.new_tensor([width, height])
        x1y1 = torch.stack([cx - 0.5 * w, cy - 0.5 * h], -1) * size
        x2y2 = torch.stack([cx + 0.5 * w, cy + 0.5 * h], -1) * size
        boxes = torch.cat([x1y1, x2y2], -1)
        boxes = torch.minimum(boxes.clamp(min=0), size.repeat(2))
        dets = torch.cat([boxes, scores[:, None]], -1)
        return dets[None], labels[None]
