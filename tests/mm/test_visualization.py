"""The score threshold the demo draws detections at (fastervit_dense.mm.visualization)."""
import numpy as np
import pytest

from fastervit_dense.mm.visualization import best_f1_threshold


def image(*rows):
    """Detections as (x1, y1, x2, y2, score, label) rows."""
    rows = np.array(rows, np.float32).reshape(-1, 6)
    return rows[:, :4], rows[:, 4], rows[:, 5].astype(int)


GT = (np.array([[0, 0, 20, 20], [40, 0, 60, 20]], np.float32), np.array([0, 1]))


def test_duplicates_below_the_true_detections_are_not_drawn():
    """Each object found at 0.9 and 0.8, with near-duplicates at 0.4 and 0.35: F1 is 1 from 0.8."""
    detections = image((0, 0, 20, 20, 0.9, 0), (40, 0, 60, 20, 0.8, 1),
                       (1, 1, 21, 21, 0.4, 0), (41, 0, 61, 21, 0.35, 1))
    best = best_f1_threshold([detections], [GT])
    assert best == dict(score_thr=pytest.approx(0.8), f1=1.0, precision=1.0, recall=1.0)


def test_a_wrong_class_or_a_missed_object_lowers_f1():
    # the second object found only as the wrong class, above the right one
    detections = image((0, 0, 20, 20, 0.9, 0), (40, 0, 60, 20, 0.7, 0), (40, 0, 60, 20, 0.5, 1))
    best = best_f1_threshold([detections], [GT])
    # at 0.9: P 1, R 1/2, F1 2/3; at 0.7: P 1/2, R 1/2; at 0.5: P 2/3, R 1, F1 0.8
    assert best['score_thr'] == pytest.approx(0.5) and best['f1'] == pytest.approx(0.8)


def test_equal_scores_are_kept_or_dropped_together():
    """A true and a false detection of equal score: no threshold keeps one without the other."""
    detections = image((0, 0, 20, 20, 0.9, 0), (40, 0, 60, 20, 0.6, 1), (80, 0, 99, 20, 0.6, 1))
    best = best_f1_threshold([detections], [GT])
    # at 0.9: F1 2/3; at 0.6 (both): P 2/3, R 1, F1 0.8 -- never P 1, R 1
    assert best['score_thr'] == pytest.approx(0.6) and best['f1'] == pytest.approx(0.8)


def test_nothing_to_choose_from():
    assert best_f1_threshold([image()], [GT]) is None
    assert best_f1_threshold([image((0, 0, 20, 20, 0.9, 0))],
                             [(np.zeros((0, 4), np.float32), np.zeros(0, int))]) is None


def drawn_labels(visualizer_type, boxes, name):
    """The label extents of ground-truth ``boxes`` drawn by a visualizer of ``visualizer_type``."""
    import torch
    from mmengine.structures import InstanceData

    import fastervit_dense.mm  # noqa: F401  (registers LegibleDetVisualizer)
    from fastervit_dense.mm.det_visualizer import label_extents
    from mmdet.registry import VISUALIZERS
    visualizer = VISUALIZERS.build(dict(type=visualizer_type, name=name))
    visualizer.dataset_meta = dict(classes=('rectangle', 'ellipse', 'triangle'),
                                   palette=[(220, 60, 60), (60, 120, 220), (60, 200, 80)])
    instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                             labels=torch.arange(len(boxes)) % 3)
    # what add_datasample draws for the ground truth (it then flattens the labels into pixels)
    visualizer._draw_instances(np.zeros((120, 160, 3), np.uint8), instances,
                               visualizer.dataset_meta['classes'],
                               visualizer.dataset_meta['palette'])
    return label_extents(visualizer), visualizer.height


def overlapping(extents) -> int:
    return sum(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
               for i, a in enumerate(extents) for b in extents[i + 1:])


def test_labels_of_overlapping_boxes_are_kept_apart():
    """Three objects whose top-left corners nearly meet: mmdet's labels cover one another, the
    kit's visualizer moves them apart and keeps them inside the image and in drawing order."""
    boxes = [[20, 30, 100, 90], [24, 33, 90, 100], [27, 29, 110, 80]]
    plain, _ = drawn_labels('DetLocalVisualizer', boxes, 'plain_labels')
    legible, height = drawn_labels('LegibleDetVisualizer', boxes, 'legible_labels')
    assert len(plain) == len(legible) == 3
    assert overlapping(plain) == 3 and overlapping(legible) == 0
    assert legible[0] == pytest.approx(plain[0])  # the first label stays at its box's corner
    assert all(0 <= e[1] and e[3] <= height for e in legible)
    # boxes apart: labels where mmdet puts them
    apart = [[5, 5, 40, 40], [80, 60, 150, 110]]
    assert np.allclose(drawn_labels('LegibleDetVisualizer', apart, 'apart_legible')[0],
                       drawn_labels('DetLocalVisualizer', apart, 'apart_plain')[0])
