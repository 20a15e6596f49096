"""Two-stage detectors (Mask R-CNN, Cascade Mask R-CNN and their box-only forms) exported whole to
ONNX: standard operators only, one file for every input size, and the same detections as mmdet's
own inference on the same image.

Random weights give near-equal scores everywhere (RPN and RoI classifiers start at ~0.5 and a
uniform softmax), so NMS and the top-k selections meet near-ties that float rounding decides
differently in any two implementations. The detectors here are therefore trained briefly on the
kit's synthetic shapes first (FastViT-T8, the demo recipe), with one thread: on a shared 2-core
machine two threads per process made training several times slower.
"""
import os

import numpy as np
import pytest
import torch
from demo_models import DEMO, ROOT, build, demo_config, drawn_image, fused, train

pytestmark = pytest.mark.export

CASCADE = os.path.join(ROOT, 'configs', 'fastervit',
                       'cascade-mask-rcnn_fastervit-2_fpn_4conv1fc-giou_ms-crop-3x_coco.py')
SIZES = ((250, 333), (301, 397))  # non-square, not multiples of 32; the export traces (256, 320)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cascade_config():
    """The FasterViT Cascade Mask R-CNN config with the demo's FastViT-T8 backbone, 64-channel
    neck and heads, 3 classes and the demo's test settings."""
    from fastervit_dense.mm.runner import load_config
    demo = load_config(DEMO)
    cfg = load_config(CASCADE)
    model = cfg.model
    model.backbone = demo.model.backbone
    model.neck = demo.model.neck
    model.rpn_head.update(in_channels=64, feat_channels=64)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 64
    for head in roi.bbox_head:  # the recipe's 4conv1fc heads, narrowed
        head.update(in_channels=64, conv_out_channels=64, fc_out_channels=256, num_classes=3)
    roi.mask_roi_extractor.out_channels = 64
    roi.mask_head.update(in_channels=64, conv_out_channels=64, num_classes=3)
    model.train_cfg.rpn.sampler.num = 128
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 128
    model.test_cfg.rpn.update(nms_pre=300, max_per_img=300)
    model.test_cfg.rcnn.max_per_img = 30
    return cfg


def session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def export(model, path):
    import onnx
    from fastervit_dense.mm.deploy import OPSET, export_model, exportable
    from fastervit_dense.mm.deploy.two_stage import TwoStageExport
    module = exportable(model)
    assert isinstance(module, TwoStageExport)
    names = export_model(module, path, (256, 320))
    graph = onnx.load(str(path))
    assert {node.domain for node in graph.graph.node} <= {'', 'ai.onnx'}
    assert {o.domain: o.version for o in graph.opset_import}.get('', None) == OPSET == 17
    assert {'NonMaxSuppression', 'RoiAlign'} <= {node.op_type for node in graph.graph.node}
    return names


def check_agreement(model, path, names, sizes=SIZES, min_detections=3):
    """ONNX Runtime's outputs at ``sizes`` against mmdet's ``test_step``; returns the reports."""
    from fastervit_dense.mm.deploy.verify import (format_report, framework_detections,
                                                  match_detections, run_onnx)
    runner = session(path)
    assert [o.name for o in runner.get_outputs()] == list(names)
    reports = []
    for height, width in sizes:
        image = drawn_image(height, width, seed=height)
        exported = run_onnx(path, image, session=runner)
        count = exported['dets'].shape[0]
        assert exported['dets'].dtype == np.float32 and exported['dets'].shape == (count, 5)
        assert exported['labels'].dtype == np.int64 and exported['labels'].shape == (count, )
        assert np.all(np.diff(exported['dets'][:, 4]) <= 0)  # sorted by descending score
        if 'masks' in names:
            assert exported['masks'].dtype == np.uint8
            assert exported['masks'].shape == (count, height, width)
            assert set(np.unique(exported['masks'])) <= {0, 1}
            assert exported['mask_probs'].dtype == np.float32
            assert exported['mask_probs'].shape == (count, 28, 28)
        report = match_detections(exported, framework_detections(model, image))
        reports.append(report)
        print(format_report(f'{path.name} {height}x{width}', report))
        assert count >= min_detections, report
        assert report['agree'], ((height, width), report)
    return reports


def test_multi_level_roi_align_matches_the_roi_extractor(tmp_path):
    """The per-level RoIAlign with selection reproduces mmdet's SingleRoIExtractor (mmcv
    RoIAlign, aligned) for RoIs of every level, including empty ones, in PyTorch and, exported
    with a dynamic number of RoIs and feature size, in ONNX Runtime."""
    from fastervit_dense.mm.deploy.ops import roi_extract
    from fastervit_dense.utils.export import torchscript_exporter
    model = build(demo_config()).eval()
    extractor = model.roi_head.bbox_roi_extractor

    def inputs(height, width, count, seed):
        generator = torch.Generator().manual_seed(seed)
        feats = tuple(torch.randn(1, 64, -(-height // 2 ** (i + 2)), -(-width // 2 ** (i + 2)),
                                  generator=generator) for i in range(4))
        xy = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.9
        wh = torch.rand(count, 2, generator=generator) ** 2 * max(height, width)
        boxes = torch.cat([xy, xy + wh], 1)
        boxes[:3, 2:] = boxes[:3, :2]  # empty boxes
        return feats, torch.cat([torch.zeros(count, 1), boxes], 1)

    class Extract(torch.nn.Module):
        def forward(self, f0, f1, f2, f3, rois):
            return roi_extract(extractor, (f0, f1, f2, f3), rois)

    feats, rois = inputs(256, 320, 200, seed=0)
    with torch.no_grad():
        assert torch.allclose(Extract()(*feats, rois), extractor(feats, rois), atol=1e-5)
        names = [f'f{i}' for i in range(4)] + ['rois']
        axes = {f'f{i}': {2: f'h{i}', 3: f'w{i}'} for i in range(4)}
        axes.update(rois={0: 'n'}, out={0: 'n'})
        torch.onnx.export(Extract(), (*feats, rois), str(tmp_path / 'roi.onnx'), input_names=names,
                          output_names=['out'], dynamic_axes=axes, opset_version=17,
                          **torchscript_exporter())
        runner = session(tmp_path / 'roi.onnx')
        feats, rois = inputs(250, 333, 150, seed=1)
        (out, ) = runner.run(None, {n: t.numpy() for n, t in zip(names, (*feats, rois))})
        assert np.allclose(out, extractor(feats, rois).numpy(), atol=1e-4)


def test_mask_rcnn_exports_and_agrees_with_mmdet(mask_rcnn_weights, tmp_path):
    model = fused(build(demo_config(), mask_rcnn_weights))
    path = tmp_path / 'mask_rcnn.onnx'
    names = export(model, path)
    assert names == ['dets', 'labels', 'masks', 'mask_probs']
    for report in check_agreement(model, path, names):
        assert report['worst_mask_iou'] >= 0.9


def test_faster_rcnn_and_empty_results(mask_rcnn_weights, tmp_path):
    """Without a mask head the file has two outputs and agrees; with no box above the score
    threshold every output is empty (N = 0), masks included."""
    from fastervit_dense.mm.deploy.verify import run_onnx
    cfg = demo_config()
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    boxes_only = {k: v for k, v in mask_rcnn_weights.items() if not k.startswith('roi_head.mask')}
    model = fused(build(cfg, boxes_only))
    path = tmp_path / 'faster_rcnn.onnx'
    names = export(model, path)
    assert names == ['dets', 'labels']
    check_agreement(model, path, names, sizes=SIZES[:1])

    cfg = demo_config()
    cfg.model.test_cfg.rcnn.score_thr = 1.0  # a softmax score never exceeds 1
    model = fused(build(cfg, mask_rcnn_weights))
    path = tmp_path / 'empty.onnx'
    names = export(model, path)
    outputs = run_onnx(path, drawn_image(*SIZES[1], seed=7), session=session(path))
    assert outputs['dets'].shape == (0, 5) and outputs['labels'].shape == (0, )
    assert outputs['masks'].shape == (0, *SIZES[1]) and outputs['masks'].dtype == np.uint8
    assert outputs['mask_probs'].shape == (0, 28, 28)


def test_cascade_mask_rcnn_exports_and_agrees_with_mmdet(mask_rcnn_weights, tiny_data, tmp_path):
    """Cascade Mask R-CNN as the shipped recipe builds it (3 stages of 4conv1fc box heads with
    BatchNorm and class-specific regression of decoded boxes, stage-averaged scores and masks):
    backbone, neck, RPN and the mask heads start from the trained Mask R-CNN, then the whole
    cascade trains a few steps so that its stages differ."""
    cfg = cascade_config()
    model = build(cfg)
    state = model.state_dict()
    for key, value in mask_rcnn_weights.items():
        if key.startswith(('backbone.', 'neck.', 'rpn_head.')):
            state[key] = value
        elif key.startswith('roi_head.mask_head.'):
            for stage in range(3):
                name = key.replace('bbox_head.', f'bbox_head.{stage}.').replace(
                    'mask_head.', f'mask_head.{stage}.')
                assert state[name].shape == value.shape, name
                state[name] = value
    model.load_state_dict(state)
    model = train(model, tiny_data, iters=12, seed=1, lr=2e-4)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model = fused(model)
    assert model.roi_head.num_stages == 3
    assert not any(head.reg_class_agnostic for head in model.roi_head.bbox_head)
    assert all(head.num_shared_convs == 4 for head in model.roi_head.bbox_head)
    path = tmp_path / 'cascade_mask_rcnn.onnx'
    names = export(model, path)
    assert names == ['dets', 'labels', 'masks', 'mask_probs']
    check_agreement(model, path, names)

    # Cascade R-CNN: the same without the mask branch
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    model = fused(build(cfg, {k: v for k, v in trained.items()
                              if not k.startswith('roi_head.mask')}))
    path = tmp_path / 'cascade_rcnn.onnx'
    names = export(model, path)
    assert names == ['dets', 'labels']
    check_agreement(model, path, names, sizes=SIZES[1:])


def test_mask_rcnn_from_the_command_line(mask_rcnn_weights, tmp_path, script_command):
    """``export_onnx.py CONFIG OUT --checkpoint CKPT --image IMG --verify ...`` with the training
    checkpoint (unfused): exports fused and prints the agreement with mmdet at the image's own size
    and at each size asked (run in this process; test_export_models.py starts the tool in a new
    interpreter)."""
    import mmcv
    checkpoint, image_path = tmp_path / 'mask_rcnn.pth', tmp_path / 'shapes.png'
    torch.save({'state_dict': mask_rcnn_weights, 'meta': {}}, checkpoint)
    image = drawn_image(320, 480, seed=3)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    mmcv.imwrite(image, str(image_path))
    result = script_command(
        os.path.join(ROOT, 'tools', 'deployment', 'export_onnx.py'), DEMO,
        tmp_path / 'mask_rcnn.onnx', '--checkpoint', checkpoint, '--shape', '256', '320',
        '--image', image_path, '--verify', ','.join(f'{h}x{w}' for h, w in SIZES))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if 'exported detections match' in line]
    assert len(lines) == 3, result.stdout  # the image at its own size and at the two asked
    for line in lines:
        matched, exported = line.split(': ')[1].split(' ')[0].split('/')
        assert matched == exported and int(exported) >= 3, line
        assert 'worst mask IoU' in line


def test_mask_pasting_matches_mmdets_grid_sample():
    """The separable pasting gives ``_do_paste_mask(skip_empty=False)``'s values, boxes partly
    outside the image and a zero-width box included."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

    from fastervit_dense.mm.deploy.ops import paste_masks
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(50, 1, 28, 28, generator=generator)
    xy = torch.rand(50, 2, generator=generator) * 300
    wh = torch.rand(50, 2, generator=generator) * 200
    boxes = torch.cat([xy - 20, xy + wh], 1)
    boxes[0, 2] = boxes[0, 0]
    expected, _ = _do_paste_mask(masks, boxes, 333, 517, skip_empty=False)
    pasted = paste_masks(masks, boxes, torch.tensor(333), torch.tensor(517))
    assert pasted.shape == (50, 333, 517)
    assert torch.allclose(pasted, expected, atol=1e-5)
