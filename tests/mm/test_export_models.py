"""Whole DINO detectors and mmseg segmentors exported to ONNX (``--what model``): one file with
standard operators that onnxruntime runs at sizes other than the traced one, agreeing with mmdet's
and mmseg's own inference of the same model on the same image."""
import os

import numpy as np
import onnx
import pytest
import torch

import fastervit_dense.mm  # noqa: F401
from fastervit_dense.mm.deploy import export_model, exportable
from fastervit_dense.mm.deploy.verify import (format_report, framework_detections,
                                              framework_seg_logits, match_detections,
                                              random_image, run_onnx, segmentation_agreement)
from fastervit_dense.mm.runner import build_model, load_config

pytestmark = pytest.mark.export

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'deployment', 'export_onnx.py')
DINO4 = os.path.join(ROOT, 'configs', 'fastervit', 'dino-4scale_fastervit-0_8xb2-12e_coco.py')
DINO5 = os.path.join(ROOT, 'configs', 'fastervit', 'dino-5scale_fastervit-4-21k-384_8xb2-12e_coco.py')
# Two non-square sizes that are not multiples of 32 (DINO's query selection needs >= 256 px).
SIZES = [(300, 417), (333, 517)]


def assert_standard_opset17(path):
    model = onnx.load(str(path))
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [17]


image = random_image


def random_dino(config, seed=0, **backbone):
    """DINO with random weights drawn so that which detections it keeps does not depend on float
    rounding, which differs between any two runtimes (and CPUs: oneDNN and MKL pick their kernels
    by instruction set). DINO keeps detections by ranking twice: the encoder's top 900 tokens
    become the queries, and the top 300 of the 900 x 80 query-class scores are returned.

    * mmdet initialises the classifiers for a 1% prior, so all 72,000 scores sit near 0.01 within
      about 1e-5 of each other. The decoder's are drawn N(0, 0.25) (logits of spread ~4) with a bias
      of -8 (the 300th score is about 0.98; closer to 1.0, float32 sigmoids of different logits
      tie), the encoder's N(0, 1).
    * The content queries (``query_embedding``) are zero. Query i takes the i-th ranked encoder
      token's box; among the 900 neighbouring ranks tie or nearly tie, while the runtimes' encoder
      scores differ by up to 8e-5: with distinct content queries a swap of two ranks pairs
      two boxes with each other's query and changes both detections (seen on CPUs without AMX).
      With equal content queries the decoder does not depend on the order of its queries, only on
      the set of boxes chosen.

    What is left are the two cut-offs, checked by :func:`assert_clear_cut_offs`."""
    cfg = load_config(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.update(backbone)
    if backbone.get('arch') == '0':
        cfg.model.neck.in_channels = [64, 128, 256, 512][-len(cfg.model.backbone.out_indices):]
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights()
    for index, branch in enumerate(model.bbox_head.cls_branches):
        encoder = index == model.decoder.num_layers
        torch.nn.init.normal_(branch.weight, 0, 1.0 if encoder else 0.25)
        torch.nn.init.constant_(branch.bias, 0.0 if encoder else -8.0)
    torch.nn.init.zeros_(model.query_embedding.weight)
    return model.eval()


# Largest differences between onnxruntime and PyTorch measured at the cut-offs (4-scale, the sizes
# below, this machine uncapped and with ATEN_CPU_CAPABILITY/ONEDNN_MAX_CPU_ISA/MKL_ENABLE_INSTRUCTIONS
# capped at AVX2): encoder scores 8.0e-5, kept scores 2.4e-7. A cut-off decides the same in both
# when the scores on either side of it are apart by more than about ten times that.
ENCODER_CUT_OFF_GAP = 1e-3
SCORE_CUT_OFF_GAP = 3e-6


def cut_off_gaps(model, image):
    """The framework's score gaps at DINO's two cut-offs for ``image``: between the encoder's
    ``num_queries``-th and next token (best class logit), and between the ``max_per_img``-th and
    next query-class score of the last decoder layer."""
    captured = {}
    encoder_classifier = model.bbox_head.cls_branches[model.decoder.num_layers]
    hooks = [encoder_classifier.register_forward_hook(
                 lambda m, a, out: captured.__setitem__('encoder', out[0].max(-1)[0])),
             model.bbox_head.register_forward_hook(
                 lambda m, a, out: captured.__setitem__('scores', out[0][-1, 0].sigmoid()))]
    try:
        framework_detections(model, image)
    finally:
        for hook in hooks:
            hook.remove()
    encoder = captured['encoder'].sort(descending=True)[0]
    scores = captured['scores'].reshape(-1).sort(descending=True)[0]
    queries, kept = model.num_queries, model.bbox_head.test_cfg.get('max_per_img', 300)
    return (float(encoder[queries - 1] - encoder[queries]),
            float(scores[kept - 1] - scores[kept]))


def assert_clear_cut_offs(model, sizes):
    for size in sizes:
        encoder_gap, score_gap = cut_off_gaps(model, image(*size))
        assert encoder_gap > ENCODER_CUT_OFF_GAP and score_gap > SCORE_CUT_OFF_GAP, (
            f'{size}: the random weights leave a near-tie at a cut-off (encoder gap '
            f'{encoder_gap:.1e}, score gap {score_gap:.1e}): float rounding would decide which '
            'detections are kept; draw them with another seed')


def test_dino_4scale_from_the_command_line(tmp_path, script_command):
    """The export tool run in this process (test_segmentor_from_the_command_line_prints_agreement
    starts it in a new interpreter)."""
    checkpoint, out = tmp_path / 'dino.pth', tmp_path / 'dino.onnx'
    model = random_dino(DINO4)
    assert_clear_cut_offs(model, SIZES)
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    result = script_command(TOOL, DINO4, out, '--checkpoint', checkpoint, '--shape', '256', '320',
                            '--verify', ','.join(f'{h}x{w}' for h, w in SIZES))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if 'exported detections match' in line]
    print(result.stdout)
    assert len(lines) == 2 and all('300/300' in line for line in lines), result.stdout
    assert_standard_opset17(out)
    outputs = run_onnx(out, image(*SIZES[0]))
    assert outputs['dets'].dtype == np.float32 and outputs['dets'].shape == (300, 5)
    assert outputs['labels'].dtype == np.int64 and outputs['labels'].shape == (300,)
    scores = outputs['dets'][:, 4]
    assert (np.diff(scores) <= 0).all()
    boxes = outputs['dets'][:, :4]
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= SIZES[0][1]).all() \
        and (boxes[:, [1, 3]] <= SIZES[0][0]).all()


def test_dino_5scale_agrees_with_mmdet(tmp_path):
    # The shipped 5-scale config with a FasterViT-0 backbone (its own is FasterViT-4).
    model = random_dino(DINO5, arch='0')
    assert_clear_cut_offs(model, SIZES)
    path = tmp_path / 'dino5.onnx'
    assert export_model(exportable(model), path, (256, 320)) == ['dets', 'labels']
    assert_standard_opset17(path)
    assert len(model.neck.convs) + len(model.neck.extra_convs) == 5
    for size in SIZES:
        report = match_detections(run_onnx(path, image(*size)),
                                  framework_detections(model, image(*size)))
        print(format_report(f'DINO-5scale {size[0]}x{size[1]}', report))
        assert report['agree'] and report['exported'] == 300, (size, report)


@pytest.mark.parametrize('config', [
    'fastervit/upernet_fastervit-0_8xb2-160k_ade20k-512x512.py',
    'fastvit/fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py',
])
def test_segmentors_agree_with_mmseg(config, tmp_path):
    cfg = load_config(os.path.join(ROOT, 'configs', config))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    model.eval()
    path = tmp_path / 'segmentor.onnx'
    wrapper = exportable(model)
    if hasattr(model.backbone, 'switch_to_deploy'):  # FastViT: exported fused, mmseg's model not
        assert wrapper.segmentor.backbone.deploy and not model.backbone.deploy
        assert not any(type(m).__name__ == 'MobileOneBlock' and m.reparam_conv is None
                       for m in wrapper.segmentor.modules())
    assert export_model(wrapper, path, (256, 256)) == ['seg_logits']
    # the export's rewrites live in the wrapper's copy: mmseg's model keeps its own modules
    assert not any('Matrix' in type(m).__name__ or 'Traced' in type(m).__name__
                   for m in model.modules())
    assert_standard_opset17(path)
    for size in [(250, 333), (97, 300)]:
        logits = run_onnx(path, image(*size))['seg_logits']
        assert logits.shape == (model.decode_head.num_classes, *size)
        report = segmentation_agreement(logits, framework_seg_logits(model, image(*size)))
        print(format_report(f'{config} {size[0]}x{size[1]}', report))
        assert report['agree'], (config, size, report)


def test_segmentor_from_the_command_line_prints_agreement(tmp_path, script_command):
    config = os.path.join(ROOT, 'configs', 'fastvit', 'upernet_fastvit-sa12_8xb2-160k_ade20k-512x512.py')
    result = script_command(TOOL, config, tmp_path / 'upernet.onnx', '--shape', '256', '256',
                            '--verify', '250x333,97x300', new_interpreter=True)
    assert result.returncode == 0, result.stderr[-3000:]
    shares = [float(line.split('agrees on ')[1].split('%')[0]) for line in result.stdout.splitlines()
              if 'argmax agrees' in line]
    assert len(shares) == 2 and min(shares) >= 99.5, result.stdout


def test_unsupported_model_and_bad_sizes_are_named(tmp_path, script_command):
    result = script_command(TOOL, DINO4, tmp_path / 'x.onnx', '--verify', '300by400')
    assert result.returncode != 0 and 'give sizes as HxW' in result.stderr
    assert not (tmp_path / 'x.onnx').exists()
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    from test_layer import retinanet  # a one-stage detector, which the kit does not export
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(retinanet(dict(type='FastViT', arch='t8', out_norm_cfg=None),
                                          [48, 96, 192, 384]))
    with pytest.raises(ValueError, match='export the backbone alone with --what backbone'):
        exportable(detector.eval())


def test_export_loads_training_and_fused_checkpoints(tmp_path):
    """``--checkpoint`` takes a training checkpoint (fused after loading) or one fused by
    reparameterize.py; a checkpoint of another model is refused with the keys that differ."""
    from fastervit_dense.checkpoint import CheckpointError
    from fastervit_dense.mm.deploy import build_for_export
    demo = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_fastvit-t8_fpn_synthetic.py')
    cfg = load_config(demo)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'train.pth')
    model.backbone.switch_to_deploy()
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'fused.pth')
    for name in ('train.pth', 'fused.pth'):
        loaded = build_for_export(demo, str(tmp_path / name))
        assert loaded.backbone.deploy  # exported fused
        state = loaded.state_dict()
        assert set(state) == set(model.state_dict())
        assert all(torch.allclose(state[k].float(), v.float(), atol=1e-5)
                   for k, v in model.state_dict().items())
    # reparameterize.py's loading takes only the checkpoint as trained
    from fastervit_dense.checkpoint import ADAPTERS
    from fastervit_dense.mm.checkpoint import load_config_checkpoint
    assert 'mmengine' in ADAPTERS
    with pytest.raises(CheckpointError, match='fused.pth holds a fused FastViT backbone: give the '
                       'checkpoint as trained'):
        load_config_checkpoint(build_model(cfg), str(tmp_path / 'fused.pth'), fused=False)
    torch.save({'state_dict': {'backbone.x': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=r'no tensor in the checkpoint matches the model of '
                       r'the config \(checkpoint keys start backbone.x\); give the checkpoint '
                       'trained with this config'):
        build_for_export(demo, str(tmp_path / 'other.pth'))
    # a whole model loads strictly: one tensor missing, or of another shape, is refused by name
    state = model.state_dict()
    state.pop('rpn_head.rpn_conv.bias')
    state['rpn_head.rpn_cls.weight'] = state['rpn_head.rpn_cls.weight'][:1]
    torch.save({'state_dict': state}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match=r'partial.pth does not fit the model of the config: '
                       r'1 tensors with other shapes \(rpn_head.rpn_cls.weight: checkpoint \(1, .*'
                       r'1 missing \(rpn_head.rpn_conv.bias\)'):
        build_for_export(demo, str(tmp_path / 'partial.pth'))


def test_agreement_checks_fail_on_what_they_check():
    """The criteria of --verify: label, box IoU >= 0.98, score within 2e-3, mask IoU >= 0.9, and
    a segmentor's argmax on >= 99.5% of pixels."""
    masks = np.zeros((2, 40, 40), bool)
    masks[0, :20, :20] = masks[1, 10:30, 10:30] = True
    reference = dict(dets=np.array([[0, 0, 20, 20, 0.9], [10, 10, 30, 30, 0.5]], np.float32),
                     labels=np.array([1, 2]), masks=masks)
    same = {k: v.copy() for k, v in reference.items()}
    assert match_detections(same, reference)['agree']

    def changed(key, index, value):
        result = {k: v.copy() for k, v in reference.items()}
        result[key][index] = value
        return match_detections(result, reference)

    assert not changed('labels', 1, 0)['agree']
    assert not changed('dets', (0, 4), 0.9 + 3e-3)['agree']
    assert changed('dets', (0, 4), 0.9 + 1e-3)['worst_score_difference'] == pytest.approx(1e-3,
                                                                                           abs=1e-6)
    report = changed('dets', (0, 2), 21.0)  # IoU 20/21 < 0.98
    assert not report['agree'] and report['worst_box_iou'] == pytest.approx(20 / 21)
    mask = np.zeros((40, 40), bool)
    mask[:20, :17] = True  # mask IoU 0.85
    assert not changed('masks', 0, mask)['agree']
    # a near-duplicate of the same class: matched to the closest score, not the first in IoU;
    # the reference's other detection, paired with nothing, is a disagreement
    duplicate = dict(dets=np.array([[0, 0, 20, 20, 0.9], [0, 0, 20, 20.1, 0.901]], np.float32),
                     labels=np.array([1, 1]))
    report = match_detections(dict(dets=duplicate['dets'][1:], labels=np.array([1])), duplicate)
    assert report['matched'] == 1 and report['worst_score_difference'] < 1e-6
    assert not report['agree'] and report['disagreements'] == 1

    logits = np.zeros((3, 20, 20), np.float32)
    logits[1] = 1.0
    flipped = logits.copy()
    flipped[2, :1, :3] = 2.0  # 3 of 400 pixels: 99.25%
    assert segmentation_agreement(logits, logits)['agree']
    assert not segmentation_agreement(flipped, logits)['agree']
    assert not segmentation_agreement(logits[:, :10], logits)['agree']


def test_backbone_from_the_command_line(tmp_path, script_command):
    """``--what backbone``: the config's backbone alone (FastViT fused), compared with PyTorch at
    sizes other than the traced one."""
    config = os.path.join(ROOT, 'configs', 'fastvit', 'fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py')
    result = script_command(TOOL, config, tmp_path / 'backbone.onnx', '--what', 'backbone',
                            '--shape', '128', '128', '--verify', '97x300,160x224',
                            new_interpreter=True)
    assert result.returncode == 0, result.stderr[-3000:]
    differences = [float(line.rsplit(' ', 1)[1]) for line in result.stdout.splitlines()
                   if 'max relative difference' in line]
    assert len(differences) == 2 and max(differences) < 1e-3, result.stdout
