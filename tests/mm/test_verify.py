"""The rules of export verification (fastervit_dense.mm.deploy.verify), on hand-made detections and
logits: pairs one to one, ties at the detector's cut-offs counted apart and never decisive, a
detection on one side only elsewhere a disagreement, nothing compared never a pass."""
import numpy as np
import pytest

from fastervit_dense.mm.deploy.verify import (MIN_COMPARED, PROPOSAL_TIE, SCORE_TOLERANCE,
                                              Cutoffs, detection_cutoffs, format_report,
                                              match_detections, match_proposals,
                                              segmentation_agreement, summarize)


def detections(*rows, labels=None):
    """``(x1, y1, x2, y2, score)`` rows, label 0 unless given."""
    dets = np.array(rows, np.float32).reshape(-1, 5)
    return dict(dets=dets, labels=np.array(labels if labels is not None else [0] * len(dets)))


def apart(count, score=0.9, step=0.05):
    """``count`` boxes that overlap nothing, scores descending from ``score``."""
    return [(40 * i, 0, 40 * i + 30, 30, score - step * i) for i in range(count)]


def test_identical_detections_pair_one_to_one():
    reference = detections(*apart(6))
    report = match_detections(detections(*apart(6)), reference)
    assert report['agree'] and report['matched'] == 6 and report['ties'] == 0


def test_a_detection_on_one_side_only_disagrees_whichever_side():
    reference = detections(*apart(6))
    report = match_detections(detections(*apart(5)), reference)
    assert not report['agree'] and report['disagreements'] == 1  # mmdet found one more
    report = match_detections(detections(*apart(6)), detections(*apart(5)))
    assert not report['agree'] and report['disagreements'] == 1  # the file found one more


def test_one_reference_detection_pairs_with_one_exported_only():
    """Two exported near-duplicates cannot both pair with mmdet's one detection."""
    box = (0, 0, 20, 20)
    report = match_detections(detections((*box, 0.9), (*box, 0.9)), detections((*box, 0.9)))
    assert report['matched'] == 1 and not report['agree']


def test_near_duplicates_pair_by_closest_score():
    ours = detections((0, 0, 20, 20.1, 0.901), (0, 0, 20, 20, 0.9), labels=[1, 1])
    theirs = detections((0, 0, 20, 20, 0.9), (0, 0, 20, 20.1, 0.901), labels=[1, 1])
    report = match_detections(ours, theirs)
    assert report['agree'] and report['matched'] == 2 and report['worst_score_difference'] < 1e-6


def test_a_detection_at_the_score_threshold_is_a_tie():
    cutoffs = Cutoffs(score_thr=0.05)
    reference = detections(*apart(5), (300, 0, 330, 30, 0.0505))
    report = match_detections(detections(*apart(5)), reference, cutoffs=cutoffs)
    assert report['agree'] and report['ties'] == 1 and report['tie_reasons'] == {
        'score threshold': 1}
    assert 'a tie, not counted' in format_report('x', report)
    # well above the threshold it is a real difference
    reference = detections(*apart(5), (300, 0, 330, 30, 0.06))
    assert not match_detections(detections(*apart(5)), reference, cutoffs=cutoffs)['agree']


def test_a_swap_at_the_per_image_limit_is_a_tie():
    """Both keep 6: the sixth is one box in the file and another in mmdet, their scores equal to
    rounding."""
    cutoffs = Cutoffs(max_per_img=6)
    ours = detections(*apart(5), (300, 0, 330, 30, 0.5000))
    theirs = detections(*apart(5), (400, 0, 430, 30, 0.5004))
    report = match_detections(ours, theirs, cutoffs=cutoffs)
    assert report['agree'] and report['tie_reasons'] == {'per-image limit': 2}
    # mmdet not full: nothing was cut at the limit
    assert not match_detections(ours, detections(*apart(5)), cutoffs=cutoffs)['agree']
    # a score far above the lowest kept is not at the limit
    ours = detections(*apart(5), (300, 0, 330, 30, 0.7))
    theirs = detections(*apart(5), (400, 0, 430, 30, 0.5))
    assert not match_detections(ours, theirs, cutoffs=cutoffs)['agree']


def test_a_box_at_the_nms_threshold_is_a_tie():
    """The file keeps a box whose IoU with a kept box of its class is 0.5 to rounding; mmdet's NMS
    (IoU 0.5) dropped it."""
    cutoffs = Cutoffs(nms_iou=0.5)
    kept = (0, 0, 30, 30, 0.9)
    # IoU of (0, 0, 30, 30) and (10, 0, 40, 30): 600 / 1200 = 0.5
    ours = detections(kept, (10, 0, 40, 30, 0.8), *apart(4, score=0.7)[1:])
    theirs = detections(kept, *apart(4, score=0.7)[1:])
    report = match_detections(ours, theirs, cutoffs=cutoffs)
    assert report['agree'] and report['tie_reasons'] == {'NMS': 1}
    # of another class, NMS (per class) had nothing to suppress it with
    ours['labels'] = np.array([0, 1, 0, 0, 0])
    assert not match_detections(ours, theirs, cutoffs=cutoffs)['agree']
    # far from the threshold (IoU 0.25) it is a real difference
    ours = detections(kept, (18, 0, 48, 30, 0.8), *apart(4, score=0.7)[1:])
    assert not match_detections(ours, theirs, cutoffs=cutoffs)['agree']


def proposals(*rows):
    rows = np.array(rows, np.float32).reshape(-1, 5)
    return rows[:, :4], rows[:, 4]


def test_rpn_proposals_of_equal_score_and_what_they_suppress_are_ties():
    """The RPN's NMS (IoU 0.7) keeps a different one of two overlapping anchors of equal score
    (saturated sigmoids) on each side; what that anchor suppresses differs in turn."""
    common = [(200, 200, 230, 230, 0.6), (300, 300, 340, 340, 0.5)]
    # a and b: IoU 0.875, scores equal within PROPOSAL_TIE; c overlaps a by 0.74, b by 0.63
    a, b, c = (0, 0, 40, 40, 0.9999995), (0, 0, 35, 40, 0.9999998), (6, 0, 46, 40, 0.99)
    ours, theirs = proposals(a, *common), proposals(b, c, *common)
    report = match_proposals(*ours, *theirs, nms_iou=0.7, max_per_img=100)
    assert report == dict(proposal_ties=3, proposal_disagreements=0)
    # scores apart beyond the tie: the one kept by the higher score is a real difference
    a = (0, 0, 40, 40, 0.9999998 - 10 * PROPOSAL_TIE)
    report = match_proposals(*proposals(a, *common), *theirs, nms_iou=0.7, max_per_img=100)
    assert report['proposal_disagreements'] == 3
    # a proposal on one side only that overlaps nothing disagrees; at the end of a full list it
    # is a tie
    extra = (500, 500, 530, 530, 0.4)
    report = match_proposals(*proposals(*common, extra), *proposals(*common), nms_iou=0.7,
                             max_per_img=100)
    assert report == dict(proposal_ties=0, proposal_disagreements=1)
    report = match_proposals(*proposals(*common, extra), *proposals(*common), nms_iou=0.7,
                             max_per_img=2)
    assert report == dict(proposal_ties=1, proposal_disagreements=0)


def test_scores_beyond_the_tolerance_disagree_even_near_a_cut_off():
    cutoffs = Cutoffs(score_thr=0.05, max_per_img=6, nms_iou=0.5)
    ours = detections(*apart(6))
    theirs = detections(*apart(6))
    theirs['dets'][2, 4] += 3 * SCORE_TOLERANCE
    report = match_detections(ours, theirs, cutoffs=cutoffs)
    assert not report['agree'] and report['disagreements'] == 2  # one on each side


def test_nothing_compared_is_a_failure():
    empty = detections()
    reports = [match_detections(empty, empty), match_detections(empty, empty)]
    assert all(r['agree'] for r in reports)
    assert summarize(reports).startswith('nothing compared: 0 detections')
    few = detections(*apart(MIN_COMPARED - 1))
    assert summarize([match_detections(few, few)]).startswith('nothing compared')
    enough = detections(*apart(MIN_COMPARED))
    assert summarize([match_detections(enough, enough)]) is None
    # and ties do not count as compared
    ties = match_detections(detections(*apart(MIN_COMPARED, score=0.0505, step=0)), empty,
                            cutoffs=Cutoffs(score_thr=0.05))
    assert ties['agree'] and ties['ties'] == MIN_COMPARED
    assert summarize([ties]).startswith('nothing compared')
    assert summarize([]).startswith('nothing compared')


def test_one_disagreeing_comparison_fails_the_verification():
    good = detections(*apart(6))
    reports = [match_detections(good, good), match_detections(detections(*apart(5)), good)]
    assert summarize(reports) == '1 of 2 comparisons disagree'


def test_segmentation_ties_are_counted_apart():
    reference = np.zeros((3, 20, 20), np.float32)
    reference[1] = 1.0
    reference[2, :5, :] = 1.0 - 2e-5  # 100 pixels where classes 1 and 2 tie to rounding
    ours = reference.copy()
    ours[2, :5, :] = 1.0 + 2e-5
    report = segmentation_agreement(ours, reference)
    assert report['agree'] and report['ties'] == 100 and report['agreement'] == 1.0
    # the same flip where the reference is decided is a disagreement
    ours = reference.copy()
    ours[2, 10:15, :] = 1.0 + 2e-5  # the reference has 1.0 against 0.0 there
    report = segmentation_agreement(ours, reference)
    assert not report['agree'] and report['agreement'] < 0.995


def test_segmentation_logits_must_agree_with_the_same_argmax():
    """A wrong export can keep most argmaxes of an easy image: its logits still tell."""
    reference = np.random.default_rng(0).normal(0, 5, (4, 30, 40)).astype(np.float32)
    assert segmentation_agreement(reference + 1e-5, reference)['agree']
    report = segmentation_agreement(reference * 1.01, reference)
    assert (reference * 1.01).argmax(0).tolist() == reference.argmax(0).tolist()
    assert not report['agree'] and 'allowed' in format_report('x', report)


def test_detection_cutoffs_come_from_the_configs():
    import os

    from fastervit_dense.mm.runner import build_model, load_config
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = load_config(os.path.join(root, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py'))
    cutoffs = detection_cutoffs(build_model(cfg))
    assert cutoffs == Cutoffs(score_thr=0.05, max_per_img=30, nms_iou=0.5)
    cfg = load_config(os.path.join(root, 'configs', 'fastervit',
                                   'dino-4scale_fastervit-0_8xb2-12e_coco.py'))
    assert detection_cutoffs(build_model(cfg)) == Cutoffs(max_per_img=300)


@pytest.mark.parametrize('wrong', ['label', 'box'])
def test_label_and_box_mismatches_disagree(wrong):
    ours, theirs = detections(*apart(6)), detections(*apart(6))
    if wrong == 'label':
        ours['labels'][3] = 2
    else:
        ours['dets'][3, 2] += 1.0  # IoU 30/31 < 0.98
    report = match_detections(ours, theirs, cutoffs=Cutoffs(score_thr=0.05, max_per_img=30,
                                                           nms_iou=0.5))
    assert not report['agree'] and report['matched'] == 5


def test_openvino_runs_a_file_in_float32_whatever_the_cpu(tmp_path):
    """OpenVINO's CPU plugin computes in bfloat16 by default where the CPU has bfloat16
    instructions (AVX512-BF16, AMX), which rounds 1 + 2**-10 to 1; the kit's runtime asks for
    float32, so a matrix product returns it exactly on every CPU."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    from fastervit_dense.mm.deploy.runtimes import open_runtime
    weight = numpy_helper.from_array(np.eye(8, dtype=np.float32), 'weight')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['image', 'weight'], ['out'])], 'matmul',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 3, 8, 8])], [weight])
    path = tmp_path / 'matmul.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    image = np.full((1, 3, 8, 8), 1 + 2.0**-10, np.float32)
    runtime = open_runtime(path, 'openvino', threads=1)
    assert runtime.compiled.get_property('INFERENCE_PRECISION_HINT') == ov.Type.f32
    np.testing.assert_array_equal(runtime(image)['out'], image[0])
