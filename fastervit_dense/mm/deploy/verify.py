"""Agreement of an exported model with mmdet's / mmseg's own inference on the same image.

The reference is the framework's ``test_step`` on the image as given (``img_shape == ori_shape``,
``scale_factor == 1``), the exported file's outputs are compared with it:

* **Detectors.** Detections are paired one to one: same label, box IoU >= :data:`BOX_IOU`, score
  within :data:`SCORE_TOLERANCE` (and, with masks, mask IoU >= :data:`MASK_IOU`). Two runtimes
  round differently, so a detection that sits at one of the detector's cut-offs can be kept by one
  and dropped by the other: a detection found on one side only is a *tie*, not a disagreement,
  when its score is within the tolerance of the score threshold or of the lowest score kept by the
  side that is full (the per-image limit), or when its overlap with a kept box of its class is
  within :data:`NMS_TOLERANCE` of the NMS threshold. Ties are counted and reported apart; any
  other detection on one side only is a disagreement.
* **Two-stage detectors** are compared stage by stage, so that a tie among the RPN's proposals
  cannot decide the detections: the exported detections are compared with mmdet's RoI head run on
  the proposals that the exported graph's RPN post-processing computes
  (:meth:`TwoStageExport.proposals`, run eagerly on mmdet's features), and those proposals with
  mmdet's own RPN (:func:`two_stage_references`: the features computed once for all three). A
  proposal on one side only is a tie when it sits at an RPN cut-off: a kept proposal of the other
  side overlaps it beyond the NMS threshold and scores within :data:`PROPOSAL_TIE` of it (mmdet
  ranks by float32 sigmoid scores, which saturate near 1, the file by logits), its overlap with a
  kept proposal is within :data:`NMS_TOLERANCE` of the threshold, it falls off the end of a full
  list, or it overlaps beyond the threshold a proposal on one side only for such a reason (what
  one kept, the other suppressed by another).
* **Segmentors.** The logits agree within :data:`LOGIT_TOLERANCE` of their scale, and the argmax
  on >= :data:`PIXEL_AGREEMENT` of the pixels; a pixel whose two candidate classes are within
  :data:`LOGIT_TIE` in the reference is a tie and counted apart.

A check that compared nothing proves nothing: :func:`summarize` fails a verification in which
fewer than :data:`MIN_COMPARED` detections were paired over all images and sizes (a trained
detector on an image without objects, or random weights under a score threshold).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ['random_image', 'BOX_IOU', 'SCORE_TOLERANCE', 'MASK_IOU', 'PIXEL_AGREEMENT',
           'NMS_TOLERANCE', 'PROPOSAL_TIE', 'LOGIT_TOLERANCE', 'LOGIT_TIE', 'MIN_COMPARED',
           'Cutoffs', 'detection_cutoffs', 'framework_detections', 'two_stage_references',
           'framework_seg_logits', 'match_detections', 'match_proposals',
           'segmentation_agreement', 'run_onnx', 'format_report', 'summarize',
           'first_test_images', 'verification_images', 'verify_export']

BOX_IOU = 0.98
SCORE_TOLERANCE = 2e-3
MASK_IOU = 0.9
PIXEL_AGREEMENT = 0.995
#: a one-sided detection whose IoU with a kept box of its class is this close to the NMS threshold
NMS_TOLERANCE = 0.01
#: RPN scores this close are interchangeable: near 1 the float32 sigmoid moves in steps of 6e-8
PROPOSAL_TIE = 1e-6
#: largest logit difference, as a share of the reference's largest absolute logit
LOGIT_TOLERANCE = 1e-4
#: a pixel whose reference logits of the two classes in question are this close is a tie
LOGIT_TIE = 1e-3
#: fewer detections paired than this over a whole verification: nothing was compared
MIN_COMPARED = 5


@dataclass
class Cutoffs:
    """Where a detector drops detections: its score threshold, its per-image limit and its NMS
    IoU threshold (None where it has none)."""
    score_thr: Optional[float] = None
    max_per_img: Optional[int] = None
    nms_iou: Optional[float] = None

    def describe(self) -> str:
        parts = [f'score threshold {self.score_thr:g}' if self.score_thr is not None else '',
                 f'{self.max_per_img} kept' if self.max_per_img is not None else '',
                 f'NMS IoU {self.nms_iou:g}' if self.nms_iou is not None else '']
        return ', '.join(p for p in parts if p) or 'none'


def detection_cutoffs(detector) -> Cutoffs:
    """The cut-offs of a built mmdet detector's test configuration: the R-CNN stage's for two-stage
    detectors, the head's per-image limit for DETR-like ones."""
    test_cfg = getattr(detector, 'test_cfg', None) or {}
    stage = test_cfg.get('rcnn', test_cfg)
    head = getattr(detector, 'bbox_head', None)
    if not stage and head is not None:
        stage = getattr(head, 'test_cfg', None) or {}
    nms = stage.get('nms') or {}
    score_thr = stage.get('score_thr')
    max_per_img = stage.get('max_per_img')
    return Cutoffs(score_thr=None if score_thr is None else float(score_thr),
                   max_per_img=None if max_per_img is None else int(max_per_img),
                   nms_iou=nms.get('iou_threshold') if hasattr(nms, 'get') else None)


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random BGR image (1, 3, H, W) of integer values 0-255 in float32, as mmcv would load
    one."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, height, width), generator=generator).float()


def _sample(data_sample_cls, image: torch.Tensor):
    height, width = image.shape[-2:]
    return data_sample_cls(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         pad_shape=(height, width), scale_factor=(1.0, 1.0)))


def _as_detections(instances) -> Dict[str, np.ndarray]:
    result = dict(dets=torch.cat([instances.bboxes, instances.scores[:, None]], 1).numpy(),
                  labels=instances.labels.numpy())
    if 'masks' in instances:
        result['masks'] = instances.masks.numpy().astype(bool)
    return result


@torch.no_grad()
def framework_detections(detector, image: torch.Tensor) -> Dict[str, np.ndarray]:
    """mmdet's inference on ``image`` (float (1, 3, H, W) or (3, H, W), BGR, 0-255): ``dets``
    (N, 5), ``labels`` (N,) and, for instance segmentation, ``masks`` (N, H, W) bool."""
    from mmdet.structures import DetDataSample
    image = image.reshape(3, *image.shape[-2:])
    data = dict(inputs=[image], data_samples=[_sample(DetDataSample, image)])
    return _as_detections(detector.test_step(data)[0].pred_instances)


@torch.no_grad()
def two_stage_references(detector, graph, image: torch.Tensor):
    """A two-stage detector's stages on ``image``, from mmdet's features computed once: the
    proposals of ``graph`` (the detector's :class:`TwoStageExport`, run eagerly) and mmdet's own
    RPN proposals, each as (boxes (n, 4), scores (n,)), and mmdet's RoI head run on the graph's
    proposals (as :func:`framework_detections` returns detections)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    image = image.reshape(3, *image.shape[-2:])
    data = detector.data_preprocessor(
        dict(inputs=[image], data_samples=[_sample(DetDataSample, image)]), False)
    feats, samples = detector.extract_feat(data['inputs']), data['data_samples']
    boxes, scores = graph.proposals(feats, *image.shape[-2:])
    theirs = detector.rpn_head.predict(feats, samples, rescale=False)[0]
    instances = detector.roi_head.predict(feats, [InstanceData(bboxes=boxes)], samples,
                                          rescale=True)[0]
    return ((boxes.numpy(), scores.numpy()), (theirs.bboxes.numpy(), theirs.scores.numpy()),
            _as_detections(instances))


@torch.no_grad()
def framework_seg_logits(segmentor, image: torch.Tensor) -> np.ndarray:
    """mmseg's logits (C, H, W) for ``image`` (BGR, 0-255)."""
    from mmseg.structures import SegDataSample
    image = image.reshape(3, *image.shape[-2:])
    data = dict(inputs=[image], data_samples=[_sample(SegDataSample, image)])
    return segmentor.test_step(data)[0].seg_logits.data.numpy()


def run_onnx(path, image: torch.Tensor, session=None) -> Dict[str, np.ndarray]:
    """The exported file's outputs (batch dimension dropped) for ``image`` (1, 3, H, W), on
    onnxruntime (``session``: an open ``InferenceSession`` or any runtime of
    :func:`~fastervit_dense.mm.deploy.runtimes.open_runtime`)."""
    if session is None:
        from .runtimes import open_runtime
        session = open_runtime(path)
    elif not callable(session):  # an onnxruntime InferenceSession
        from .runtimes import OnnxRuntime
        session = OnnxRuntime(session=session)
    return session(image)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
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


def _tie_reason(box: np.ndarray, score: float, label: int, own: Dict[str, np.ndarray],
                other: Dict[str, np.ndarray], cutoffs: Cutoffs, score_tolerance: float):
    """Why a detection found in ``own`` only may have been dropped by ``other`` through rounding
    (a cut-off it sits at), or None."""
    if cutoffs.score_thr is not None and score - cutoffs.score_thr <= score_tolerance:
        return 'score threshold'
    other_scores = other['dets'][:, 4]
    if (cutoffs.max_per_img is not None and len(other_scores) >= cutoffs.max_per_img
            and score - other_scores.min() <= score_tolerance):
        return 'per-image limit'
    if cutoffs.nms_iou is not None:
        for side in (own, other):
            same = side['labels'] == label
            ious = _box_iou(box[None], side['dets'][same, :4])[0]
            ious = ious[ious < 1.0 - 1e-6]  # not the detection itself
            if len(ious) and np.abs(ious - cutoffs.nms_iou).min() <= NMS_TOLERANCE:
                return 'NMS'
    return None


def match_detections(exported: Dict[str, np.ndarray], reference: Dict[str, np.ndarray],
                     box_iou: float = BOX_IOU, score_tolerance: float = SCORE_TOLERANCE,
                     cutoffs: Optional[Cutoffs] = None) -> dict:
    """Pairs the exported detections with the reference's, one to one: in descending score, each
    exported detection takes the unpaired reference detection of the same label with box IoU >=
    ``box_iou`` and a score within ``score_tolerance`` that is closest in score (near-duplicate
    boxes of one class are common). A detection left on one side only is a tie when it sits at
    one of ``cutoffs`` (see the module's description), else a disagreement.

    Returns the counts (``exported``, ``reference``, ``matched``, ``ties`` with their reasons,
    ``disagreements``), the worst figures of the pairs, and ``agree``: no disagreement."""
    cutoffs = cutoffs or Cutoffs()
    dets, labels = exported['dets'], exported['labels']
    ref_dets, ref_labels = reference['dets'], reference['labels']
    ious = _box_iou(dets[:, :4], ref_dets[:, :4])
    score_differences = np.abs(dets[:, 4:5] - ref_dets[None, :, 4])
    candidates = ((labels[:, None] == ref_labels[None, :]) & (score_differences <= score_tolerance)
                  & (ious >= box_iou))
    taken = np.zeros(len(ref_dets), bool)
    paired = np.zeros(len(dets), bool)
    matched, disagreements, worst_iou, worst_score, worst_mask = 0, 0, 1.0, 0.0, 1.0
    for i in np.argsort(-dets[:, 4], kind='stable'):
        options = np.flatnonzero(candidates[i] & ~taken)
        if not len(options):
            continue
        j = options[score_differences[i, options].argmin()]
        taken[j] = paired[i] = True
        worst_iou = min(worst_iou, float(ious[i, j]))
        worst_score = max(worst_score, float(score_differences[i, j]))
        if 'masks' in exported and 'masks' in reference:
            mask_iou = _mask_iou(exported['masks'][i].astype(bool), reference['masks'][j])
            worst_mask = min(worst_mask, mask_iou)
            if mask_iou < MASK_IOU:
                disagreements += 1
                continue
        matched += 1
    ties: Dict[str, int] = {}
    for own, other, alone in ((exported, reference, ~paired), (reference, exported, ~taken)):
        for k in np.flatnonzero(alone):
            box, score = own['dets'][k, :4], float(own['dets'][k, 4])
            reason = _tie_reason(box, score, int(own['labels'][k]), own, other, cutoffs,
                                 score_tolerance)
            if reason is None:
                disagreements += 1
                # the closest detection of the other side, for the report
                same = other['labels'] == own['labels'][k]
                near = _box_iou(box[None], other['dets'][same, :4])[0]
                worst_iou = min(worst_iou, float(near.max()) if len(near) else 0.0)
            else:
                ties[reason] = ties.get(reason, 0) + 1
    report = dict(exported=len(dets), reference=len(ref_dets), matched=matched,
                  ties=sum(ties.values()), tie_reasons=ties, disagreements=disagreements,
                  worst_box_iou=worst_iou, worst_score_difference=worst_score,
                  agree=disagreements == 0)
    if 'masks' in exported:
        report['worst_mask_iou'] = worst_mask
    return report


def match_proposals(boxes: np.ndarray, scores: np.ndarray, ref_boxes: np.ndarray,
                    ref_scores: np.ndarray, nms_iou: float, max_per_img: int) -> dict:
    """Pairs two lists of RPN proposals (boxes and scores) one to one (box IoU >= 0.99, scores
    within :data:`PROPOSAL_TIE`) and sorts the rest into ties and disagreements (see the module's
    description). Returns ``proposal_ties`` and ``proposal_disagreements``."""
    ious = _box_iou(boxes, ref_boxes)
    close = np.abs(scores[:, None] - ref_scores[None, :]) <= PROPOSAL_TIE
    taken = np.zeros(len(ref_boxes), bool)
    paired = np.zeros(len(boxes), bool)
    for i in np.argsort(-scores, kind='stable'):
        options = np.flatnonzero((ious[i] >= 0.99) & close[i] & ~taken)
        if len(options):
            taken[options[np.argmax(ious[i, options])]] = paired[i] = True
    sides = ((boxes, scores, ref_boxes, ref_scores, ~paired, ious, close),
             (ref_boxes, ref_scores, boxes, scores, ~taken, ious.T, close.T))
    alone = [np.flatnonzero(side[4]) for side in sides]
    tie = [np.zeros(len(a), bool) for a in alone]
    for s, (_, own_scores, _, other_scores, _, iou, near) in enumerate(sides):
        for n, k in enumerate(alone[s]):
            suppressed = iou[k] > nms_iou - NMS_TOLERANCE
            tie[s][n] = bool(
                np.any(suppressed & near[k])  # an overlapping proposal of equal score won
                or np.any(np.abs(iou[k] - nms_iou) <= NMS_TOLERANCE)
                or (len(other_scores) >= max_per_img
                    and own_scores[k] <= other_scores.min() + PROPOSAL_TIE))
    one_sided = [sides[s][0][alone[s]] for s in range(2)]
    changed = True
    while changed:  # what a tie-decided proposal suppresses on one side and not on the other
        changed = False
        decided = np.concatenate([one_sided[s][tie[s]] for s in range(2)])
        for s in range(2):
            if not len(decided):
                break
            grow = ~tie[s] & (_box_iou(one_sided[s], decided).max(1, initial=0.0)
                              > nms_iou - NMS_TOLERANCE)
            if grow.any():
                tie[s] |= grow
                changed = True
    ties = int(sum(t.sum() for t in tie))
    return dict(proposal_ties=ties,
                proposal_disagreements=int(sum(len(t) for t in tie)) - ties)


def segmentation_agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Share of the pixels (ties left out) whose argmax class agrees, the pixels that disagree
    at a tie, and the largest logit difference against the reference's scale."""
    if logits.shape != reference.shape:
        return dict(agreement=0.0, ties=0, shape=logits.shape, reference_shape=reference.shape,
                    agree=False)
    ours, theirs = logits.argmax(0), reference.argmax(0)
    differ = ours != theirs
    gap = (np.take_along_axis(reference, theirs[None], 0)
           - np.take_along_axis(reference, ours[None], 0))[0]
    ties = differ & (gap <= LOGIT_TIE)
    counted = differ.size - int(ties.sum())
    agreement = 1.0 - float((differ & ~ties).sum()) / max(counted, 1)
    difference = float(np.abs(logits - reference).max())
    scale = float(np.abs(reference).max())
    return dict(agreement=agreement, ties=int(ties.sum()), max_logit_difference=difference,
                logit_scale=scale,
                agree=agreement >= PIXEL_AGREEMENT and difference <= LOGIT_TOLERANCE * scale + 1e-6)


def format_report(name: str, report: dict) -> str:
    """One line of figures for the command line."""
    if report.get('nonfinite'):
        return f'  {name}: the exported model returned NaN or infinite values  <- DISAGREES'
    if 'agreement' in report:
        text = (f'  {name}: argmax agrees on {100 * report["agreement"]:.3f}% of pixels '
                f'(needs >= {100 * PIXEL_AGREEMENT:.1f}%), max logit difference '
                f'{report.get("max_logit_difference", float("nan")):.2e} (allowed '
                f'{LOGIT_TOLERANCE * report.get("logit_scale", float("nan")):.1e})')
        if report.get('ties'):
            text += f'; {report["ties"]} pixels at a tie'
        return text + ('' if report['agree'] else '  <- DISAGREES')
    text = (f'  {name}: {report["matched"]}/{report["exported"]} exported detections match '
            f'mmdet\'s {report["reference"]} (worst box IoU {report["worst_box_iou"]:.4f}, '
            f'worst score difference {report["worst_score_difference"]:.1e}')
    if 'worst_mask_iou' in report:
        text += f', worst mask IoU {report["worst_mask_iou"]:.4f}'
    text += ')'
    if report.get('ties'):
        reasons = ', '.join(f'{n} at the {r}' for r, n in sorted(report['tie_reasons'].items()))
        text += f'; on one side only at a cut-off (a tie, not counted): {reasons}'
    if report.get('proposal_ties'):
        text += (f'; {report["proposal_ties"]} RPN proposals on one side only at a cut-off '
                 '(a tie, not counted)')
    if report['disagreements']:
        text += f'; {report["disagreements"]} disagree'
    if report.get('proposal_disagreements'):
        text += (f'; {report["proposal_disagreements"]} RPN proposals of mmdet\'s or the file\'s '
                 'only')
    return text + ('' if report['agree'] else '  <- DISAGREES')


def summarize(reports: List[dict]) -> Optional[str]:
    """None when a whole verification agrees, else the reason it does not: a comparison that
    disagrees, or (detectors) fewer than :data:`MIN_COMPARED` detections compared in all."""
    failed = [r for r in reports if not r['agree']]
    if failed:
        return f'{len(failed)} of {len(reports)} comparisons disagree'
    if reports and 'matched' in reports[0]:
        compared = sum(r['matched'] for r in reports)
        if compared < MIN_COMPARED:
            return (f'nothing compared: {compared} detections were found by both in '
                    f'{len(reports)} comparisons (at least {MIN_COMPARED} are needed to judge '
                    'an export); verify on images with objects the model finds (--image), '
                    'with the trained weights (--checkpoint)')
    if not reports:
        return 'nothing compared: no image to verify on'
    return None


def _load_image(path: str) -> torch.Tensor:
    """``path`` as mmcv's ``LoadImageFromFile`` gives it (BGR, 3 channels), (1, 3, H, W) float."""
    import mmcv
    image = mmcv.imread(path)
    if image is None:
        raise ValueError(f'{path} cannot be read as an image')
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().contiguous()


def first_test_images(cfg, count: int) -> List[str]:
    """The paths of the first ``count`` images of ``cfg``'s test dataset (the validation set
    when it has none). Raises what building the dataset raises (a missing annotation file, say)."""
    import contextlib
    import copy
    import io

    from mmengine.registry import DATASETS
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader or not loader.get('dataset'):
        raise ValueError('the config has no test_dataloader.dataset')
    dataset_cfg = copy.deepcopy(loader['dataset'])
    dataset_cfg['pipeline'] = []
    dataset_cfg['lazy_init'] = True
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it reads the JSON
        dataset = DATASETS.build(dataset_cfg)
        dataset.full_init()
    paths = []
    for index in range(min(count, len(dataset))):
        path = dataset.get_data_info(index).get('img_path')
        if path:
            paths.append(path)
    if not paths:
        raise ValueError('the test dataset lists no image')
    return paths


def _resized(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    import mmcv
    array = mmcv.imresize(image[0].permute(1, 2, 0).numpy(), (width, height))
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def verification_images(cfg, image_paths=None, count: int = 3, sizes=()):
    """What to verify on: ``image_paths`` when given, else the first ``count`` images of the
    config's test set, each at its own size and resized to each of ``sizes`` (H, W). Where the
    config's test images cannot be read, one random image at each of ``sizes`` stands in (a
    trained detector finds nothing on those). Returns ``(images, note)``: ``images`` a list of
    (label, (1, 3, H, W) float BGR tensor), ``note`` where they came from."""
    import os.path as osp
    if image_paths:
        loaded, note = [(p, _load_image(p)) for p in image_paths], \
            f'{len(image_paths)} given image(s)'
    else:
        try:
            paths = first_test_images(cfg, count)
        except Exception as error:  # a dataset that cannot be built: no data on this machine
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            images = [(f'random image at {h}x{w}', random_image(h, w))
                      for h, w in (sizes or [(320, 480)])]
            return images, (f'random images: the config\'s test images could not be read '
                            f'({reason}); a trained detector finds nothing on random images, give '
                            'your own with --image')
        loaded = [(osp.basename(p), _load_image(p)) for p in paths]
        note = f'the first {len(paths)} image(s) of the config\'s test set'
    images = []
    for name, image in loaded:
        images.append((f'{name} at {image.shape[-2]}x{image.shape[-1]}', image))
        images += [(f'{name} at {h}x{w}', _resized(image, h, w)) for h, w in sizes]
    return images, note


def verify_export(model, runtime, images):
    """Compares ``runtime`` (an opened exported file, see
    :func:`~fastervit_dense.mm.deploy.runtimes.open_runtime`) with ``model``'s own inference on
    each of ``images`` ((label, image) pairs, see :func:`verification_images`); a two-stage
    detector stage by stage (see the module's description). Yields ``(label, report)`` for each
    comparison as it is made; pass the reports to :func:`summarize`."""
    cutoffs = None if hasattr(model, 'decode_head') else detection_cutoffs(model)
    graph = None
    if cutoffs is not None:
        from . import exportable
        graph = exportable(model)
        if not hasattr(graph, 'proposals'):
            graph = None
    for label, image in images:
        outputs = runtime(image)
        if not all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == 'f'):
            yield label, dict(agree=False, nonfinite=True, matched=0)
            continue
        if cutoffs is None:
            report = segmentation_agreement(outputs['seg_logits'],
                                            framework_seg_logits(model, image))
        elif graph is None:
            report = match_detections(outputs, framework_detections(model, image),
                                      cutoffs=cutoffs)
        else:
            ours, theirs, reference = two_stage_references(model, graph, image)
            report = match_detections(outputs, reference, cutoffs=cutoffs)
            report.update(match_proposals(*ours, *theirs, graph.rpn_iou,
                                          graph.rpn_cfg.max_per_img))
            report['agree'] = report['agree'] and not report['proposal_disagreements']
        yield label, report
