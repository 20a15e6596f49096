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
